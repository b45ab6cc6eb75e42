"""SimVP (Gao et al. 2022; OpenSTL layout), SimVP+SVQ (arXiv 2312.03406), SimVP+hard VQ and SimVP+MLP.

SimVP = encoder (ConvSC stack, stride 2 on every second layer) -> translator over the
``T * hid_S`` channels of the stacked latent frames -> decoder (skip from the first encoder
layer) -> 1x1 readout. SimVP+SVQ quantizes every latent vector (dim ``hid_S``) of every frame
after the encoder (``post_vq=False``) or after the translator (``post_vq=True``); SimVP+MLP puts the
bottleneck MLP that SVQ folds into (svqbench.models.bottleneck) in the same place.

Shapes: inputs (B, T, C, H, W) -> latent (B*T, hid_S, H/s, W/s), s = 2**(N_S // 2)
-> translator (B, T*hid_S, H/s, W/s) -> frames (B, T, C, H, W).
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import nn

from svqbench.errors import SvqbenchError
from svqbench.models import translators_metavp  # noqa: F401  (registers the MetaVP translators)
from svqbench.models.base import MODELS, Forecast
from svqbench.models.bottleneck import BottleneckMLP
from svqbench.models.quantizers import build_quantizer
from svqbench.models.shape import ClipShape
from svqbench.models.svq import SVQ
from svqbench.models.translators import TRANSLATORS


class ConvSC(nn.Module):
    """3x3 conv (stride 2 to downsample, or conv + PixelShuffle to upsample) + GroupNorm + SiLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, downsample: bool = False, upsample: bool = False):
        super().__init__()
        stride = 2 if downsample else 1
        padding = (kernel - stride + 1) // 2
        if upsample:
            self.conv = nn.Sequential(nn.Conv2d(c_in, c_out * 4, kernel, 1, padding), nn.PixelShuffle(2))
        else:
            self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding)
        self.norm = nn.GroupNorm(2, c_out)
        self.act = nn.SiLU(inplace=True)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


def _resampling(n_layers: int) -> list[bool]:
    """Which encoder layers stride by 2: every second one, starting with the second."""
    return [i % 2 == 1 for i in range(n_layers)]


class Encoder(nn.Module):
    def __init__(self, c_in: int, c_hid: int, n_layers: int, kernel: int):
        super().__init__()
        strides = _resampling(n_layers)
        self.layers = nn.ModuleList(
            ConvSC(c_in if i == 0 else c_hid, c_hid, kernel, downsample=s) for i, s in enumerate(strides)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, C, H, W) -> (latent (N, c_hid, H/s, W/s), skip (N, c_hid, H, W))."""
        skip = latent = self.layers[0](x)
        for layer in self.layers[1:]:
            latent = layer(latent)
        return latent, skip


class Decoder(nn.Module):
    def __init__(self, c_hid: int, c_out: int, n_layers: int, kernel: int):
        super().__init__()
        strides = list(reversed(_resampling(n_layers)))
        self.layers = nn.ModuleList(ConvSC(c_hid, c_hid, kernel, upsample=s) for s in strides)
        self.readout = nn.Conv2d(c_hid, c_out, 1)

    def forward(self, hid: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """hid (N, c_hid, H/s, W/s), skip (N, c_hid, H, W) -> (N, c_out, H, W)."""
        for layer in self.layers[:-1]:
            hid = layer(hid)
        return self.readout(self.layers[-1](hid + skip))


class SimVP(nn.Module):
    def __init__(
        self,
        shape: ClipShape,
        hid_S: int,
        hid_T: int,
        N_S: int,
        N_T: int,
        translator: str,
        mlp_ratio: float,
        drop: float,
        drop_path: float,
        spatio_kernel_enc: int,
        spatio_kernel_dec: int,
    ):
        super().__init__()
        stride = 2 ** (N_S // 2)
        if N_S < 1:
            raise SvqbenchError(f"model.N_S={N_S}: need at least one encoder layer")
        if hid_S < 2 or hid_S % 2:
            raise SvqbenchError(
                f"model.hid_S={hid_S}: the encoder's GroupNorm splits hid_S into 2 groups; valid: an even integer >= 2"
            )
        if hid_T < 2:
            raise SvqbenchError(f"model.hid_T={hid_T}: valid: an integer >= 2")
        if shape.height % stride or shape.width % stride:
            raise SvqbenchError(
                f"model.N_S={N_S}: frames of {shape.height}x{shape.width} are not divisible by the encoder "
                f"stride {stride}; use an N_S with 2**(N_S//2) dividing both"
            )
        T = shape.frames_in
        self.encoder = Encoder(shape.channels, hid_S, N_S, spatio_kernel_enc)
        self.translator = TRANSLATORS.get(translator)(
            T * hid_S,
            hid_T,
            N_T,
            input_resolution=(shape.height // stride, shape.width // stride),
            mlp_ratio=mlp_ratio,
            drop=drop,
            drop_path=drop_path,
        )
        self.decoder = Decoder(hid_S, shape.out_channels, N_S, spatio_kernel_dec)  # the target channels only
        self.latent_dim = hid_S
        self.quantizer: nn.Module | None = None
        self.post_vq = False

    def with_quantizer(self, quantizer: nn.Module, post_vq: bool = False) -> "SimVP":
        """Quantize every latent vector before the translator (or after it with ``post_vq``)."""
        self.quantizer = quantizer
        self.post_vq = post_vq
        return self

    def _quantize(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantizers return the quantized latent, or (quantized, auxiliary loss) for hard VQ."""
        if self.quantizer is None:
            return latent, latent.new_zeros(())
        out = self.quantizer(latent)
        return out if isinstance(out, tuple) else (out, latent.new_zeros(()))

    def forward(self, inputs: torch.Tensor) -> Forecast:
        """inputs (B, T, C, H, W) -> Forecast(frames (B, T, C_out, H, W), aux_loss); C_out: the target channels."""
        B, T, C, H, W = inputs.shape
        latent, skip = self.encoder(inputs.reshape(B * T, C, H, W))
        _, c, h, w = latent.shape
        aux = inputs.new_zeros(())
        if not self.post_vq:
            latent, aux = self._quantize(latent)
        hid = self.translator(latent.reshape(B, T * c, h, w)).reshape(B * T, c, h, w)
        if self.post_vq:
            hid, aux = self._quantize(hid)
        frames = self.decoder(hid, skip).reshape(B, T, -1, H, W)
        return Forecast(frames, aux)


@MODELS.register("simvp")
def simvp(
    shape: ClipShape,
    hid_S: int = 64,
    hid_T: int = 256,
    N_S: int = 4,
    N_T: int = 4,
    translator: str = "gsta",
    mlp_ratio: float = 8.0,
    drop: float = 0.0,
    drop_path: float = 0.0,
    spatio_kernel_enc: int = 3,
    spatio_kernel_dec: int = 3,
) -> SimVP:
    """SimVP with the given translator (defaults as OpenSTL's SimVP)."""
    return SimVP(
        shape, hid_S, hid_T, N_S, N_T, translator, mlp_ratio, drop, drop_path, spatio_kernel_enc, spatio_kernel_dec
    )


def with_simvp_arguments(factory: Callable[..., SimVP]) -> Callable[..., SimVP]:
    """Give a quantized variant ``factory(shape, *, own options, **backbone)`` the explicit signature
    of :func:`simvp` followed by its own options, so recipes are validated against every name while
    the backbone's defaults stay stated once, in :func:`simvp`."""
    backbone = list(inspect.signature(simvp).parameters.values())
    own = [p for p in inspect.signature(factory).parameters.values() if p.kind is p.KEYWORD_ONLY]
    factory.__signature__ = inspect.Signature(backbone + own, return_annotation=SimVP)
    return factory


@MODELS.register("simvp_svq")
@with_simvp_arguments
def simvp_svq(
    shape: ClipShape,
    *,
    codebook_size: int = 10000,
    svq_hidden: int = 128,
    nonlinear: bool = True,
    hid_relu: bool = True,
    out_relu: bool = False,
    freeze_codebook: bool = False,
    init: str = "kaiming",
    post_vq: bool = False,
    **backbone,
) -> SimVP:
    """SimVP with SVQ on every latent vector (before the translator, or after it with ``post_vq``)."""
    model = simvp(shape, **backbone)
    quantizer = SVQ(
        model.latent_dim,
        codebook_size,
        hidden_dim=svq_hidden,
        nonlinear=nonlinear,
        hid_relu=hid_relu,
        out_relu=out_relu,
        freeze_codebook=freeze_codebook,
        init=init,
    )
    return model.with_quantizer(quantizer, post_vq)


# Options of simvp_svq that only exist because of the codebook; simvp_mlp shares every other one.
CODEBOOK_ONLY_OPTIONS = ("codebook_size", "freeze_codebook", "init", "out_relu")


@MODELS.register("simvp_mlp")
@with_simvp_arguments
def simvp_mlp(
    shape: ClipShape,
    *,
    svq_hidden: int = 128,
    nonlinear: bool = True,
    hid_relu: bool = True,
    post_vq: bool = False,
    **backbone,
) -> SimVP:
    """SimVP with the bottleneck MLP C -> svq_hidden -> C in SVQ's place: the function SVQ's linear-output
    forms compute, trained directly (``svqbench fold`` turns a trained simvp_svq run into one of these).
    The options keep simvp_svq's names and meaning, so the two recipes differ only in the codebook."""
    model = simvp(shape, **backbone)
    mlp = BottleneckMLP(model.latent_dim, hidden_dim=svq_hidden, nonlinear=nonlinear, hid_relu=hid_relu)
    return model.with_quantizer(mlp, post_vq)


@MODELS.register("simvp_vq")
@with_simvp_arguments
def simvp_vq(
    shape: ClipShape,
    *,
    quantizer: str = "vq",
    codebook_size: int | None = None,
    commitment_weight: float | None = None,
    decay: float | None = None,
    num_quantizers: int | None = None,
    levels: list[int] | None = None,
    entropy_loss_weight: float | None = None,
    diversity_gamma: float | None = None,
    post_vq: bool = False,
    **backbone,
) -> SimVP:
    """SimVP with a hard quantizer (vq, rvq, fsq, lfq) in SVQ's place: the paper's "does VQ fail" baseline.

    Options left at None keep the quantizer's own default (see svqbench.models.quantizers); an option
    the chosen quantizer does not take is a one-line error. Its auxiliary loss joins the training loss.
    """
    if codebook_size is not None and codebook_size < 1:
        raise SvqbenchError(f"model.codebook_size={codebook_size!r}; valid: an integer >= 1")
    options = {
        "codebook_size": codebook_size,
        "commitment_weight": commitment_weight,
        "decay": decay,
        "num_quantizers": num_quantizers,
        "levels": tuple(levels) if levels is not None else None,
        "entropy_loss_weight": entropy_loss_weight,
        "diversity_gamma": diversity_gamma,
    }
    model = simvp(shape, **backbone)
    hard = build_quantizer(quantizer, model.latent_dim, **{k: v for k, v in options.items() if v is not None})
    return model.with_quantizer(hard, post_vq)
