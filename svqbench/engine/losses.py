"""Training losses by recipe name (``train.loss``): prediction and target of one shape -> a scalar; and TAU's
differential divergence regulariser (``train.diff_div_weight``), added to the loss a training step minimises."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": nn.functional.l1_loss,
    "mse": nn.functional.mse_loss,
    # MSE alone settles on a grey haze around moving objects; the L1 term pulls the haze to the background.
    "mse_l1": lambda pred, target: nn.functional.mse_loss(pred, target) + 0.5 * nn.functional.l1_loss(pred, target),
}


def differential_divergence(
    pred: torch.Tensor, target: torch.Tensor, tau: float = 0.1, eps: float = 1e-12
) -> torch.Tensor:
    """TAU's regulariser (Tan et al. 2023, as OpenSTL's TAU method computes it): the KL divergence between the
    softmax (temperature ``tau``) over pixels of the prediction's frame-to-frame differences and that of the truth's.
    pred, target (B, T, C, H, W) -> a scalar, the mean over samples, frame pairs and pixels; 0 for T <= 2."""
    batch, frames = pred.shape[:2]
    if frames <= 2:
        return pred.new_zeros(())
    gap_pred = (pred[:, 1:] - pred[:, :-1]).reshape(batch, frames - 1, -1)
    gap_true = (target[:, 1:] - target[:, :-1]).reshape(batch, frames - 1, -1)
    p = nn.functional.softmax(gap_pred / tau, dim=-1)
    q = nn.functional.softmax(gap_true / tau, dim=-1)
    return (p * torch.log(p / (q + eps) + eps)).mean()


def training_loss(name: str, diff_div_weight: float = 0.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss a training step minimises: ``train.loss``, plus TAU's regulariser at ``train.diff_div_weight``
    (0.1 in OpenSTL's TAU configs). Validation measures ``train.loss`` alone, as OpenSTL's does."""
    base = LOSSES[name]
    if not diff_div_weight:
        return base
    return lambda pred, target: base(pred, target) + diff_div_weight * differential_divergence(pred, target)
