"""The numeric policy of the compute backends, set once per training or evaluation process.

- fp32 means fp32: TF32 is off for matrix products and convolutions (torch leaves it on for cuDNN
  convolutions), so a CUDA evaluation matches the CPU's; ``bf16`` is the fast path.
- Fast by default: cuDNN picks the fastest convolution algorithm for each shape (``cudnn.benchmark``),
  which may differ from run to run in the last bits.
- ``deterministic``: the same inputs give bitwise the same result on the same machine, so a killed CUDA run
  resumes to the bitwise same weights: deterministic algorithms only (an operation without one is an
  error), cuDNN autotuning off, and the cuBLAS workspace fixed (``CUBLAS_WORKSPACE_CONFIG``).
"""

from __future__ import annotations

import os

import torch

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
