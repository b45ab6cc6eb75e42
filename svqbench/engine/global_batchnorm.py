"""BatchNorm over the global batch under torchrun, on every backend (gloo on CPU, nccl on CUDA).

Plain BatchNorm under DistributedDataParallel normalises each rank's slice with that slice's statistics, so
the model depends on the world size. ``torch.nn.SyncBatchNorm`` fixes that on GPUs only (torch 2.13 raises
"SyncBatchNorm expected input tensor to be on GPU" for CPU tensors), so svqbench uses this equivalent on every
device: per-channel sums are all-reduced with a differentiable all-reduce (:class:`SumOverRanks`: its
backward all-reduces the gradients), the mean first, then the squared deviations from it (no E[x^2] - E[x]^2
cancellation).
Every rank computes the same statistics, hence the same running statistics. The state-dict keys are those
of ``nn.BatchNorm2d``, so checkpoints load into the plain model.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


class SumOverRanks(torch.autograd.Function):
    """Sum of a tensor over all ranks; the gradient of every rank's share is the sum of the ranks' gradients.
    (torch.distributed.nn.functional.all_reduce does the same and is deprecated in torch 2.13.)"""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


def all_reduce(tensor: Tensor) -> Tensor:
    return SumOverRanks.apply(tensor)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics cover the slices of every rank. x (B, C, H, W)."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        channels = x.shape[1]
        values = x.float().transpose(0, 1).reshape(channels, -1)  # (C, B*H*W) of this rank
        totals = all_reduce(torch.cat([values.sum(1), values.new_tensor([values.shape[1]])]))
        count = totals[-1]
        mean = totals[:-1] / count
        var = all_reduce((values - mean[:, None]).square().sum(1)) / count  # biased: what normalisation uses
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked
                unbiased = var.detach() * count / (count - 1).clamp(min=1)  # no host sync: stays a tensor
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach().to(self.running_mean.dtype))
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.to(self.running_var.dtype))
        scale = torch.rsqrt(var + self.eps)
        normalised = (x.float() - mean[None, :, None, None]) * scale[None, :, None, None]
        if self.affine:
            normalised = normalised * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return normalised.to(x.dtype)


def globalise_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` inside ``module`` by a :class:`GlobalBatchNorm2d` sharing its
    parameters and buffers; returns ``module`` (or the replacement, when ``module`` is one)."""
    if type(module) is nn.BatchNorm2d:
        replacement = GlobalBatchNorm2d(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            device=_device_of(module),
        )
        replacement.load_state_dict(module.state_dict())
        if module.affine:
            replacement.weight, replacement.bias = module.weight, module.bias
        replacement.train(module.training)
        return replacement
    for name, child in module.named_children():
        setattr(module, name, globalise_batchnorm(child))
    return module


def _device_of(module: nn.Module) -> torch.device:
    tensors = [*module.parameters(), *module.buffers()]
    return tensors[0].device if tensors else torch.device("cpu")
