"""The machine a process computes on: the device (``--device``), the backends' numeric policy, whether
bf16 pays off, autocast, and recognising out-of-memory.

Numeric policy. The numeric policy of the compute backends, set once per training or evaluation process.

- fp32 means fp32: TF32 is off for matrix products and convolutions (torch leaves it on for cuDNN
  convolutions), so a CUDA evaluation matches the CPU's; ``bf16`` is the fast path.
- Fast by default: cuDNN picks the fastest convolution algorithm for each shape (``cudnn.benchmark``),
  which may differ from run to run in the last bits.
- ``deterministic``: the same inputs give bitwise the same result on the same machine, so a killed CUDA run
  resumes to the bitwise same weights: deterministic algorithms only (an operation without one is an
  error), cuDNN autotuning off, and the cuBLAS workspace fixed (``CUBLAS_WORKSPACE_CONFIG``).

bf16. Whether bf16 autocast pays off on a device, measured rather than guessed.

On a CPU, bf16 is fast only with native bf16 instructions (AVX512-BF16, AMX); elsewhere PyTorch
emulates it and it is slower than fp32. A tiny timed matrix product (a few milliseconds) tells the
two apart on any machine. On CUDA, bf16 is used where the GPU computes it natively (compute capability 8.0+).
"""

from __future__ import annotations

import os
import re
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from svqbench.errors import SvqbenchError

CUBLAS_WORKSPACE = ":4096:8"  # the setting torch's reproducibility notes name for deterministic cuBLAS


def configure_backends(deterministic: bool = False) -> None:
    """Apply the policy above to this process (before its first CUDA matrix product, for cuBLAS)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def resolve_device(spec: str = "auto") -> torch.device:
    """'auto' picks the first CUDA GPU when there is one, else the CPU."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if not match:
        raise SvqbenchError(f"--device {spec!r}: valid values are auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise SvqbenchError(f"--device {spec}: no CUDA GPU is visible to torch; use --device cpu")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise SvqbenchError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return torch.device("cuda", index)


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
        return Bf16Support(
            str(device),
            f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor})",
            None,
            (major, minor) >= NATIVE_BF16_CAPABILITY,
        )
    capability = torch.backends.cpu.get_cpu_capability()
    a, b = torch.randn(SIZE, SIZE), torch.randn(SIZE, SIZE)
    _best_time(a, b)  # warm-up: thread pool and kernels
    fp32 = _best_time(a, b)
    bf16 = _best_time(a.bfloat16(), b.bfloat16())
    speedup = fp32 / max(bf16, 1e-9)
    return Bf16Support(str(device), capability, round(speedup, 2), speedup >= MIN_SPEEDUP)


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    """Mixed precision for ``bf16``/``fp16``; a no-op for ``fp32``."""
    if precision in AUTOCAST_DTYPES:
        return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])
    return nullcontext()


def is_out_of_memory(error: BaseException) -> bool:
    """A GPU out-of-memory error, or the CPU allocator failing."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "allocate" in str(error) and "memory" in str(error)
