"""How close to the device's limit a model runs: its achieved FLOP/s against the peak measured in the same run.

The peak is the faster of two kernels in the training precision (``torch.autocast`` for bf16/fp16): a square
matrix product and a 3x3 convolution, each large enough to keep every core (or SM) busy. FLOPs are counted by
``torch.utils.flop_counter`` for the kernels and for the model alike (2 per multiply-add; matrix products
and convolutions only), so the percentage compares like with like.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from svqbench.engine.machine import autocast

# (matrix side, (batch, channels, height, width) of the convolution): seconds-scale work, not hours
KERNEL_SIZES = {"cpu": (1024, (8, 64, 64, 64)), "cuda": (8192, (64, 256, 64, 64))}


def counted_flops(run: Callable[[], object]) -> int:
    """FLOPs of one call of ``run``."""
    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return counter.get_total_flops()


def peak_kernels(device: torch.device, precision: str) -> dict[str, Callable[[], object]]:
    """The two peak kernels, ready to time: a matrix product and a 3x3 convolution in ``precision``."""
    side, (batch, channels, height, width) = KERNEL_SIZES["cuda" if device.type == "cuda" else "cpu"]
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(side, side, generator=generator).to(device) for _ in range(2))
    images = torch.randn(batch, channels, height, width, generator=generator).to(device)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device)

    def matmul() -> object:
        with torch.no_grad(), autocast(device, precision):
            return a @ b

    def convolution() -> object:
        with torch.no_grad(), autocast(device, precision):
            return conv(images)

    return {"matmul": matmul, "conv": convolution}


def device_peak(
    device: torch.device,
    precision: str,
    repeats: int,
    time_them: Callable[[dict[str, Callable[[], object]], torch.device, int], dict[str, float]],
) -> dict[str, Any]:
    """{"matmul": FLOP/s, "conv": FLOP/s, "peak": the larger, "precision"}; ``time_them`` gives min seconds."""
    kernels = peak_kernels(device, precision)
    seconds = time_them(kernels, device, repeats)
    rates = {name: counted_flops(run) / seconds[name] for name, run in kernels.items()}
    return {**rates, "peak": max(rates.values()), "precision": precision}


def roofline(
    peak: dict[str, Any], train_flops: int | None, train_step_s: float | None, inference_flops: int, inference_s: float
) -> dict[str, Any]:
    """Achieved FLOP/s of a training step and of inference, and each as a percentage of the measured peak."""
    result = dict(peak)
    result["inference_flops_per_s"] = inference_flops / inference_s
    result["inference_percent"] = 100 * result["inference_flops_per_s"] / peak["peak"]
    if train_flops is not None and train_step_s:
        result["train_flops_per_s"] = train_flops / train_step_s
        result["train_percent"] = 100 * result["train_flops_per_s"] / peak["peak"]
    return result
