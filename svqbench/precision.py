"""Whether bf16 autocast pays off on a device, measured rather than guessed.

On a CPU, bf16 is fast only with native bf16 instructions (AVX512-BF16, AMX); elsewhere PyTorch
emulates it and it is slower than fp32. A tiny timed matrix product (a few milliseconds) tells the
two apart on any machine. On CUDA, bf16 is used where the GPU computes it natively (compute capability 8.0+).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

SIZE = 256  # matrix side: big enough to reach the vector units, small enough to take milliseconds
REPEATS = 5
MIN_SPEEDUP = 1.1  # below this, fp32's exactness is worth more than the time saved
NATIVE_BF16_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class Bf16Support:
    device: str
    capability: str  # CPU: the instruction set PyTorch dispatches to (e.g. AVX512); CUDA: the GPU name
    speedup: float | None  # fp32 time / bf16 time of a matmul; None where not measured (CUDA)
    use_autocast: bool


def _best_time(a: torch.Tensor, b: torch.Tensor) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(4):
            a @ b
        best = min(best, time.perf_counter() - started)
    return best


def bf16_support(device: torch.device) -> Bf16Support:
    """Measure (CPU) or look up (CUDA) whether bf16 autocast would speed training up on ``device``."""
    if device.type == "cuda":
        # native bf16 from compute capability 8.0 (Ampere); torch.cuda.is_bf16_supported() is also true where
        # it is emulated (T4, V100), and asks about the current GPU rather than the one used
        major, minor = torch.cuda.get_device_capability(device)
        return Bf16Support(str(device), f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor})",
                           None, (major, minor) >= NATIVE_BF16_CAPABILITY)
    capability = torch.backends.cpu.get_cpu_capability()
    a, b = torch.randn(SIZE, SIZE), torch.randn(SIZE, SIZE)
    _best_time(a, b)  # warm-up: thread pool and kernels
    fp32 = _best_time(a, b)
    bf16 = _best_time(a.bfloat16(), b.bfloat16())
    speedup = fp32 / max(bf16, 1e-9)
    return Bf16Support(str(device), capability, round(speedup, 2), speedup >= MIN_SPEEDUP)
