"""The bottleneck MLP that SVQ's linear-output forms fold into (the folded-MLP ablation of SVQ).

SVQ with a linear output computes, per latent vector z (dim C),

    q = M^T (W2 f + b2)   with f = act_h(W1 z + b1) (or f = z when ``nonlinear=False``)
      = A f + c           with A = M^T W2 (C x F), c = M^T b2 (C),

so it is exactly the MLP C -> K -> C below, whatever the codebook size N. :func:`fold_svq` turns an
:class:`SVQ` into the equal :class:`BottleneckMLP`; ``out_relu`` cannot fold, because the ReLU on the
code weights does not commute with the sum over codes.

Init, when trained directly: both layers as ``nn.Linear`` (the first is SVQ's own first layer, so it
starts from the same distribution). At its init SVQ's effective A = M^T W2 is larger: kaiming codes
give var(A) = 2N / (3 C K), std 0.7 at the KTH recipe (N 6000, C 64, K 128), against the linear
layer's 1 / (3K), std 0.05. That scale is part of what the codebook changes (the parameterisation),
not of the function class.

Shapes: z (B, C, H, W) -> q (B, C, H, W); K hidden width, F = K (or C when ``nonlinear=False``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from svqbench.errors import SvqbenchError
from svqbench.models.svq import SVQ, hidden_layer


class BottleneckMLP(nn.Module):
    """Per-position MLP over the channels of a (B, C, H, W) latent map: C -> K -> C.

    Args:
        dim: latent dim C.
        hidden_dim: width K.
        nonlinear: False makes it one linear map C -> C (what SVQ's ``nonlinear=False`` folds to).
        hid_relu: ReLU after the first layer (identity otherwise).
    """

    def __init__(self, dim: int, hidden_dim: int = 128, nonlinear: bool = True, hid_relu: bool = True):
        super().__init__()
        if dim < 1 or hidden_dim < 1:
            raise SvqbenchError(f"MLP dim={dim!r}, hidden_dim={hidden_dim!r}; valid: integers >= 1")
        self.hidden, self.hidden_activation, width = hidden_layer(dim, hidden_dim, nonlinear, hid_relu)
        self.output = nn.Linear(width, dim)  # weight A (C, F), bias c (C)

    def forward(self, z: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W). Both layers run as 1x1 convolutions, as SVQ's fast form does."""
        features = z
        if self.hidden is not None:
            features = self.hidden_activation(F.conv2d(z, self.hidden.weight[:, :, None, None], self.hidden.bias))
        return F.conv2d(features, self.output.weight[:, :, None, None], self.output.bias)


def fold_svq(svq: SVQ) -> BottleneckMLP:
    """The :class:`BottleneckMLP` computing exactly what ``svq`` computes (linear-output forms only).

    The first layer is copied; A = M^T W2 and c = M^T b2 are formed in float64 and stored in the
    codebook's dtype, so the folded layer is as close to SVQ's own float32 arithmetic as it can be.
    """
    if svq.out_relu:
        raise SvqbenchError(
            "SVQ with out_relu cannot be folded: the ReLU after the code weights does not commute with "
            "the sum over the codebook, so no C -> K -> C MLP computes it"
        )
    dim = svq.codebook.shape[1]
    nonlinear = svq.hidden is not None
    width = svq.hidden.out_features if nonlinear else dim
    hid_relu = isinstance(svq.hidden_activation, nn.ReLU)
    mlp = BottleneckMLP(dim, width, nonlinear=nonlinear, hid_relu=hid_relu)
    mlp.to(device=svq.codebook.device, dtype=svq.codebook.dtype)
    codebook = svq.codebook.detach().double()  # M (N, C)
    with torch.no_grad():
        if nonlinear:
            mlp.hidden.weight.copy_(svq.hidden.weight)
            mlp.hidden.bias.copy_(svq.hidden.bias)
        mlp.output.weight.copy_(codebook.t() @ svq.to_weights.weight.double())  # (C, N) @ (N, F)
        mlp.output.bias.copy_(svq.to_weights.bias.double() @ codebook)  # (N,) @ (N, C)
    return mlp
