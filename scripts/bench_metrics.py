"""Benchmark svqbench's five-metric evaluation against an OpenSTL-style per-frame loop.

    PYTHONPATH=. python scripts/bench_metrics.py [--samples 16] [--threads 2] [--device cpu]

Data: KTH-shaped (20 predicted frames of 1x128x128 per sample), smooth random frames with noisy
predictions. The baseline, written here, does what OpenSTL's ``metric()`` does: NumPy MAE/MSE over the
whole array, then frame by frame scikit-image SSIM, PSNR and LPIPS at batch size 1 on the CPU (LPIPS
computed step by step as the official package does, with the same weights). Both must give the same values.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from skimage.metrics import structural_similarity

from svqbench.metrics import MetricAccumulator
from svqbench.metrics.lpips import load_lpips

METRICS = ("mae", "mse", "ssim", "psnr", "lpips")


def kth_like(samples: int, frames: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(samples, frames, 1, size, size) targets in [0, 1] and predictions that overshoot them."""
    generator = torch.Generator().manual_seed(seed)
    true = torch.rand(samples * frames, 1, size // 8, size // 8, generator=generator)
    true = torch.nn.functional.interpolate(true, size=(size, size), mode="bilinear", align_corners=False)
    true = true.view(samples, frames, 1, size, size)
    pred = true + 0.08 * torch.randn(true.shape, generator=generator)
    return pred, true


def openstl_style(pred: np.ndarray, true: np.ndarray, lpips) -> dict[str, float]:
    """The per-frame loop of OpenSTL's metric(), on (B,T,C,H,W) float32 arrays."""
    values = {
        "mae": float(np.mean(np.abs(pred - true), axis=(0, 1)).sum()),
        "mse": float(np.mean((pred - true) ** 2, axis=(0, 1)).sum()),
    }
    pred = np.clip(pred, 0, 1)
    frames = [(b, t) for b in range(pred.shape[0]) for t in range(pred.shape[1])]
    ssim = [structural_similarity(pred[b, t], true[b, t], channel_axis=0, data_range=2.0) for b, t in frames]
    psnr = [20 * np.log10(1 / np.sqrt(np.mean((pred[b, t] - true[b, t]) ** 2))) for b, t in frames]
    with torch.no_grad():
        distances = [
            lpips.reference_distance(torch.from_numpy(pred[b, t][None]), torch.from_numpy(true[b, t][None])).item()
            for b, t in frames
        ]
    values.update(ssim=float(np.mean(ssim)), psnr=float(np.mean(psnr)), lpips=float(np.mean(distances)))
    return values


def svqbench_metrics(pred: torch.Tensor, true: torch.Tensor, device: torch.device, batch: int) -> dict[str, float]:
    accumulator = MetricAccumulator(METRICS, "openstl", frames_out=pred.shape[1], device=device)
    for start in range(0, pred.shape[0], batch):
        accumulator.update(pred[start : start + batch], true[start : start + batch])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return accumulator.result()["overall"]


def timed(function, *args) -> tuple[dict[str, float], float]:
    start = time.perf_counter()
    values = function(*args)
    return values, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16, help="samples per svqbench update")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="svqbench's evaluation device; the baseline always runs on CPU")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs each")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pred, true = kth_like(args.samples, args.frames, args.size)
    lpips_cpu = load_lpips(torch.device("cpu"))
    frame_count = args.samples * args.frames

    svqbench_metrics(pred[:1], true[:1], device, 1)  # warm-up: weights, kernels, allocator
    baseline_times, svqbench_times = [], []
    for _ in range(args.repeats):
        baseline, seconds = timed(openstl_style, pred.numpy(), true.numpy(), lpips_cpu)
        baseline_times.append(seconds)
        ours, seconds = timed(svqbench_metrics, pred, true, device, args.batch)
        svqbench_times.append(seconds)

    print(f"{frame_count} frames of 1x{args.size}x{args.size}, {args.threads} threads, svqbench on {device}")
    print(f"{'metric':8} {'openstl-style':>16} {'svqbench':>16} {'abs diff':>10}")
    for name in METRICS:
        print(f"{name:8} {baseline[name]:16.8f} {ours[name]:16.8f} {abs(baseline[name] - ours[name]):10.2e}")
    baseline_ms = 1000 * min(baseline_times) / frame_count
    svqbench_ms = 1000 * min(svqbench_times) / frame_count
    print(f"openstl-style loop: {baseline_ms:.2f} ms/frame")
    print(f"svqbench:           {svqbench_ms:.2f} ms/frame  ({baseline_ms / svqbench_ms:.1f}x faster)")


if __name__ == "__main__":
    main()
