"""Training losses by recipe name (``train.loss``): prediction and target of one shape -> a scalar."""

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
