"""SVQ: sparse soft vector quantization (arXiv 2312.03406), as released, with a memory-light forward.

Every latent vector z (dim C) gets code weights w = act_out(W2 act_h(W1 z + b1) + b2) over a codebook M
of N codes, and is replaced by q = w @ M. There is no commitment loss and no straight-through trick: the
gradient flows through the weight MLP and (unless frozen) the codebook.

Shapes used below:
    B  batch (frames)            C  latent dim         P  positions H*W
    K  hidden width min(hidden_dim, N)                 N  codebook size
    F  width of the features feeding the last linear layer (K, or C when `nonlinear=False`)
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from svqbench.errors import SvqbenchError


def _randn_codebook(codebook: Tensor) -> None:
    codebook.copy_(torch.randn_like(codebook))


# Same init calls and arguments as the released code; "trunc_normal" and "randn" are released as
# "trunc" and "random".
CODEBOOK_INITS: dict[str, Callable[[Tensor], object]] = {
    "kaiming": nn.init.kaiming_uniform_,
    "xavier": lambda t: nn.init.xavier_uniform_(t, gain=nn.init.calculate_gain("relu")),
    "normal": nn.init.normal_,
    "trunc_normal": nn.init.trunc_normal_,
    "orthogonal": nn.init.orthogonal_,
    "sparse": lambda t: nn.init.sparse_(t, sparsity=0.9),
    "randn": _randn_codebook,
}


def hidden_layer(dim: int, width: int, nonlinear: bool, hid_relu: bool) -> tuple[nn.Linear | None, nn.Module, int]:
    """The first layer of the code-weight MLP: (Linear dim -> width or None, its activation, its output width).
    ``nonlinear=False`` has no first layer: the latent itself (width ``dim``) feeds the output layer."""
    if not nonlinear:
        return None, nn.Identity(), dim
    return nn.Linear(dim, width), nn.ReLU() if hid_relu else nn.Identity(), width


class SVQ(nn.Module):
    """Soft vector quantizer over the channels of a (B, C, H, W) latent map.

    Args:
        dim: latent dim C.
        codebook_size: number of codes N.
        hidden_dim: width of the weight MLP, capped at N (the released "middim").
        nonlinear: False replaces the MLP by one Linear C -> N.
        hid_relu: ReLU after the first layer (identity otherwise).
        out_relu: ReLU on the code weights; forces the explicit (B, P, N) computation.
        freeze_codebook: keep the codebook at its initial value (still saved in the state dict).
        init: codebook init, one of CODEBOOK_INITS.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        hidden_dim: int = 128,
        nonlinear: bool = True,
        hid_relu: bool = True,
        out_relu: bool = False,
        freeze_codebook: bool = False,
        init: str = "kaiming",
    ):
        super().__init__()
        if codebook_size < 1:
            raise SvqbenchError(f"SVQ codebook_size={codebook_size!r}; valid: an integer >= 1")
        if dim < 1 or hidden_dim < 1:
            raise SvqbenchError(f"SVQ dim={dim!r}, hidden_dim={hidden_dim!r}; valid: integers >= 1")
        if init not in CODEBOOK_INITS:
            raise SvqbenchError(f"SVQ init={init!r}; valid: {', '.join(CODEBOOK_INITS)}")
        if out_relu and not nonlinear:
            raise SvqbenchError("SVQ out_relu=True needs nonlinear=True (the linear form has no output activation)")
        self.codebook_size = codebook_size
        self.out_relu = out_relu
        width = min(hidden_dim, codebook_size)
        self.hidden, self.hidden_activation, width = hidden_layer(dim, width, nonlinear, hid_relu)
        self.to_weights = nn.Linear(width, codebook_size)
        codebook = torch.empty(codebook_size, dim)
        with torch.no_grad():
            CODEBOOK_INITS[init](codebook)
        self.codebook = nn.Parameter(codebook, requires_grad=not freeze_codebook)

    def _features(self, z: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, F, P): the input of the last linear layer, channels first."""
        flat = z.flatten(2)
        if self.hidden is None:
            return flat
        hidden = torch.matmul(self.hidden.weight, flat) + self.hidden.bias.unsqueeze(-1)
        return self.hidden_activation(hidden)

    def forward(self, z: Tensor) -> Tensor:
        """(B, C, H, W) -> quantized (B, C, H, W)."""
        if self.out_relu:
            batch, channels, height, width = z.shape
            weights = torch.relu(
                torch.matmul(self.to_weights.weight, self._features(z)) + self.to_weights.bias.unsqueeze(-1)
            )
            return torch.matmul(self.codebook.t(), weights).view(batch, channels, height, width)
        # w @ M = f (W2^T M) + b2 M: the (P, N) weights never exist, only a (C, F) mixing matrix.
        # Both per-position linear maps run as 1x1 convolutions: fused bias, any memory format,
        # and 3-4x faster on CPU than batched matmuls over (B, C, P) views (svqbench bench --svq-layer).
        mixing = torch.matmul(self.codebook.t(), self.to_weights.weight)
        offset = torch.matmul(self.to_weights.bias, self.codebook)
        return F.conv2d(self._feature_map(z), mixing[:, :, None, None], offset)

    def _feature_map(self, z: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, F, H, W): the input of the last linear layer, as a map."""
        if self.hidden is None:
            return z
        return self.hidden_activation(F.conv2d(z, self.hidden.weight[:, :, None, None], self.hidden.bias))

    def code_weights(self, z: Tensor) -> Tensor:
        """(B, C, H, W) -> explicit code weights (B, P, N); memory grows with P*N."""
        weights = torch.matmul(self._features(z).transpose(1, 2), self.to_weights.weight.t())
        weights = weights + self.to_weights.bias
        return torch.relu(weights) if self.out_relu else weights


class SVQStats:
    """Streaming diagnostics of SVQ code weights, batch by batch, with bounded temporary memory.

    Per batch (one `update` call), the weights are standardised by that batch's mean and std over all
    positions and codes, as the released code does; |standardised w| > t counts towards the share of
    large weights and, per code, towards the usage distribution whose exp-entropy is the released
    "perplexity". Kurtosis (Pearson: 3 for a Gaussian) is of the raw weights over every batch seen.
    """

    def __init__(self, thresholds: tuple[float, ...] = (2.0, 3.0), max_chunk_elements: int = 1 << 22):
        self.thresholds = thresholds
        self.max_chunk_elements = max_chunk_elements
        self._moments = _Moments()
        self._code_counts: dict[float, Tensor] = {}

    def update(self, code_weights: Tensor) -> None:
        """Add one batch of code weights (B, P, N)."""
        rows = code_weights.reshape(-1, code_weights.shape[-1])
        step = max(1, self.max_chunk_elements // rows.shape[1])
        self.update_from_chunks(lambda: (rows[start : start + step] for start in range(0, len(rows), step)))

    def update_from_chunks(self, chunks: Callable[[], Iterable[Tensor]]) -> None:
        """Add one batch given as chunks (..., N); `chunks()` is called twice (moments, then counts)."""
        batch = _Moments()
        for chunk in chunks():
            batch.add(chunk)
        if batch.count < 2:
            raise SvqbenchError("SVQStats.update needs at least 2 code weights per batch")
        self._moments.merge(batch)
        std = math.sqrt(batch.m2 / (batch.count - 1))
        for chunk in chunks():
            deviation = (chunk.detach().reshape(-1, chunk.shape[-1]).double() - batch.mean).abs()
            for threshold in self.thresholds:
                counts = (deviation > threshold * std).sum(0).cpu()
                previous = self._code_counts.get(threshold)
                if previous is not None and previous.shape != counts.shape:
                    raise SvqbenchError(
                        f"SVQStats: codebook size changed from {len(previous)} to {len(counts)} between updates"
                    )
                self._code_counts[threshold] = counts if previous is None else previous + counts

    def result(self) -> dict[str, float]:
        """Share of |z| > t and usage perplexity per threshold t, plus mean, std and kurtosis of w."""
        moments = self._moments
        if moments.count == 0:
            raise SvqbenchError("SVQStats.result called before any update")
        stats = {
            "weight_mean": moments.mean,
            "weight_std": math.sqrt(moments.m2 / max(moments.count - 1, 1)),
            "kurtosis": moments.count * moments.m4 / moments.m2**2 if moments.m2 > 0 else float("nan"),
        }
        for threshold, counts in self._code_counts.items():
            total = int(counts.sum())
            stats[f"share_above_{threshold:g}sd"] = total / moments.count
            stats[f"perplexity_above_{threshold:g}sd"] = _exp_entropy(counts) if total else 0.0
        return stats


def _exp_entropy(counts: Tensor) -> float:
    probabilities = counts.double() / counts.sum()
    probabilities = probabilities[probabilities > 0]
    return math.exp(-float((probabilities * probabilities.log()).sum()))


class _Moments:
    """Count, mean and central moments 2-4 in float64, merged chunk by chunk (Chan et al.)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.m3 = 0.0
        self.m4 = 0.0

    def add(self, values: Tensor) -> None:
        values = values.detach().double().flatten()
        chunk = _Moments()
        chunk.count = values.numel()
        if chunk.count == 0:
            return
        chunk.mean = float(values.mean())
        centred = values - chunk.mean
        squared = centred * centred
        chunk.m2 = float(squared.sum())
        chunk.m3 = float((squared * centred).sum())
        chunk.m4 = float((squared * squared).sum())
        self.merge(chunk)

    def merge(self, other: _Moments) -> None:
        if other.count == 0:
            return
        n_a, n_b = self.count, other.count
        n = n_a + n_b
        delta = other.mean - self.mean
        m2 = self.m2 + other.m2 + delta**2 * n_a * n_b / n
        m3 = (
            self.m3
            + other.m3
            + delta**3 * n_a * n_b * (n_a - n_b) / n**2
            + 3 * delta * (n_a * other.m2 - n_b * self.m2) / n
        )
        m4 = (
            self.m4
            + other.m4
            + delta**4 * n_a * n_b * (n_a**2 - n_a * n_b + n_b**2) / n**3
            + 6 * delta**2 * (n_a**2 * other.m2 + n_b**2 * self.m2) / n**2
            + 4 * delta * (n_a * other.m3 - n_b * self.m3) / n
        )
        self.count, self.mean = n, self.mean + delta * n_b / n
        self.m2, self.m3, self.m4 = m2, m3, m4


def svq_statistics(
    source: SVQ | Iterable[Tensor],
    latents: Iterable[Tensor] | None = None,
    *,
    thresholds: tuple[float, ...] = (2.0, 3.0),
    max_chunk_elements: int = 1 << 22,
) -> dict[str, float]:
    """SVQStats over batches of code weights (B, P, N), or over an SVQ applied to latent batches (B, C, H, W).

    With a model, code weights are computed a few frames at a time (never the whole batch at once) and
    twice per batch, so memory stays bounded whatever N and P are.
    """
    stats = SVQStats(thresholds, max_chunk_elements)
    if isinstance(source, SVQ):
        if latents is None:
            raise SvqbenchError("svq_statistics(model, latents): latents are required with a model")
        for z in latents:
            stats.update_from_chunks(lambda z=z: code_weight_chunks(source, z, max_chunk_elements))
    else:
        if latents is not None:
            raise SvqbenchError("svq_statistics: latents are only used with an SVQ model")
        for code_weights in source:
            stats.update(code_weights)
    return stats.result()


def code_weight_chunks(model: SVQ, z: Tensor, max_chunk_elements: int) -> Iterator[Tensor]:
    """Explicit code weights of latents z (B, C, H, W), a few frames at a time: (b, H*W, N) chunks of at
    most ``max_chunk_elements`` values (at least one frame), so diagnostics never hold (B, H*W, N) at once."""
    per_frame = z.shape[2] * z.shape[3] * model.codebook_size
    frames = max(1, max_chunk_elements // per_frame)
    with torch.no_grad():
        for start in range(0, z.shape[0], frames):
            yield model.code_weights(z[start : start + frames])
