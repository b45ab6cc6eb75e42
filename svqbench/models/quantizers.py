"""Quantizers for SimVP latents behind one interface: (B, C, H, W) -> (quantized (B, C, H, W), aux loss).

`svq` is svqbench's SVQ (10000 codes unless `codebook_size` is given; no auxiliary loss: a zero
scalar), taking SVQ's keyword arguments. The hard-VQ baselines of the SVQ paper's
"does VQ fail" ablation come from vector-quantize-pytorch, the library the paper used, with the
paper's settings as defaults (WeatherBench t2m ablation configs):
    vq   VectorQuantize: EMA codebook (decay 0.8) of 1024 codes, commitment loss weight 1
    rvq  ResidualVQ: 8 quantizers sharing one codebook of 1024 codes
    fsq  FSQ with levels (8, 5, 5, 3) and projections from/to C (no auxiliary loss)
    lfq  LFQ with 8192 codes, entropy loss weight 0.1, diversity gamma 1
Every latent vector (one per position of every frame) is quantized independently. Any keyword the
library class accepts can be passed to override these settings.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import Tensor, nn

from svqbench.errors import SvqbenchError
from svqbench.models.svq import SVQ
from svqbench.registry import Registry

QUANTIZERS: Registry[Callable[..., nn.Module]] = Registry("quantizer")

# Set by the adapters below (layout, width): not the user's to choose.
_MANAGED = {"self", "dim", "accept_image_fmap", "accept_3d_fmap", "channel_last", "channel_first", "return_indices"}


def build_quantizer(name: str, dim: int, **kwargs: Any) -> nn.Module:
    """The quantizer `name` for latent vectors of width `dim`; unknown names and options are user errors."""
    return QUANTIZERS.get(name)(dim, **kwargs)


def _check_options(name: str, options: dict[str, Any], *accepting: Callable) -> None:
    valid = set()
    for target in accepting:
        valid |= {
            key
            for key, parameter in inspect.signature(target).parameters.items()
            if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        }
    valid -= _MANAGED
    unknown = sorted(set(options) - valid)
    if unknown:
        raise SvqbenchError(
            f"quantizer {name!r}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )


def _construct(name: str, factory: Callable[..., nn.Module], **arguments: Any) -> nn.Module:
    """Build a library quantizer, turning its argument checks into one-line user errors."""
    try:
        return factory(**arguments)
    except (AssertionError, ValueError, TypeError, IndexError, KeyError) as error:
        shown = {key: value for key, value in arguments.items() if key not in _MANAGED}
        raise SvqbenchError(f"quantizer {name!r} rejects options {shown}: {error or 'invalid combination'}") from None


class SVQQuantizer(nn.Module):
    """SVQ behind the quantizer interface; its auxiliary loss is always zero."""

    def __init__(self, svq: SVQ):
        super().__init__()
        self.svq = svq

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, H, W) -> (quantized (B, C, H, W), zero scalar)."""
        return self.svq(z), z.new_zeros(())


class TokenQuantizer(nn.Module):
    """Runs a vector-quantize-pytorch module on the (B, H*W, C) tokens of a (B, C, H, W) map.

    The library returns (quantized, indices[, loss]); a loss with one entry per quantizer (ResidualVQ)
    is averaged, as the SVQ paper's code does.
    """

    def __init__(self, quantizer: nn.Module):
        super().__init__()
        self.quantizer = quantizer

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, H, W) -> (quantized (B, C, H, W), aux loss scalar)."""
        batch, channels, height, width = z.shape
        outputs = self.quantizer(z.flatten(2).transpose(1, 2))
        quantized = outputs[0].transpose(1, 2).reshape(batch, channels, height, width)
        loss = outputs[2].mean() if len(outputs) > 2 else z.new_zeros(())
        return quantized, loss


@QUANTIZERS.register("svq")
def svq(dim: int, **options: Any) -> nn.Module:
    _check_options("svq", options, SVQ.__init__)
    return SVQQuantizer(SVQ(dim, **{"codebook_size": 10000, **options}))


@QUANTIZERS.register("vq")
def vq(dim: int, **options: Any) -> nn.Module:
    from vector_quantize_pytorch import VectorQuantize

    _check_options("vq", options, VectorQuantize.__init__)
    settings = {"codebook_size": 1024, "decay": 0.8, "commitment_weight": 1.0, **options}
    return TokenQuantizer(_construct("vq", VectorQuantize, dim=dim, **settings))


@QUANTIZERS.register("rvq")
def rvq(dim: int, **options: Any) -> nn.Module:
    from vector_quantize_pytorch import ResidualVQ, VectorQuantize

    # ResidualVQ passes options it does not know on to each VectorQuantize.
    _check_options("rvq", options, ResidualVQ.__init__, VectorQuantize.__init__)
    settings = {"num_quantizers": 8, "codebook_size": 1024, "shared_codebook": True, **options}
    return TokenQuantizer(_construct("rvq", ResidualVQ, dim=dim, **settings))


@QUANTIZERS.register("fsq")
def fsq(dim: int, **options: Any) -> nn.Module:
    from vector_quantize_pytorch import FSQ

    _check_options("fsq", options, FSQ.__init__)
    settings = {"levels": (8, 5, 5, 3), **options}
    return TokenQuantizer(_construct("fsq", FSQ, dim=dim, **settings))


@QUANTIZERS.register("lfq")
def lfq(dim: int, **options: Any) -> nn.Module:
    from vector_quantize_pytorch import LFQ

    _check_options("lfq", options, LFQ.__init__)
    settings = {"codebook_size": 8192, "entropy_loss_weight": 0.1, "diversity_gamma": 1.0, **options}
    return TokenQuantizer(_construct("lfq", LFQ, dim=dim, **settings))
