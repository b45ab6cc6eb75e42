"""Benchmark svqbench's five-metric evaluation against an OpenSTL-style per-frame loop.

    PYTHONPATH=. python scripts/bench_metrics.py [--samples 16] [--threads 2] [--device cpu]

Data: KTH-shaped (20 predicted frames of 1x128x128 per sample), smooth random frames with noisy
predictions. The baseline, written here, does what OpenSTL's ``metric()`` does: NumPy MAE/MSE over the
whole array, then frame by frame scikit-image SSIM, PSNR and LPIPS at batch size 1 on the CPU (LPIPS
computed step by step as the official package does, with the same weights). Both must give the same
values. Times are the best of ``--repeats`` runs, as wall-clock and as process CPU time (on a shared
machine the CPU time is the steadier of the two).
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager

import numpy as np
import torch
from skimage.metrics import structural_similarity

from svqbench.metrics import MetricAccumulator, ensure_lpips_weights
from svqbench.metrics.lpips import LpipsAlexNet
from svqbench.metrics.lpips_weights import load_state

METRICS = ("mae", "mse", "ssim", "psnr", "lpips")


def kth_like(samples: int, frames: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(samples, frames, 1, size, size) targets in [0, 1] and predictions that overshoot them."""
    generator = torch.Generator().manual_seed(seed)
    true = torch.rand(samples * frames, 1, size // 8, size // 8, generator=generator)
    true = torch.nn.functional.interpolate(true, size=(size, size), mode="bilinear", align_corners=False)
    true = true.view(samples, frames, 1, size, size)
    pred = true + 0.08 * torch.randn(true.shape, generator=generator)
    return pred, true


class Stopwatch:
    """Best wall-clock and CPU seconds per named stage over repeated runs."""

    def __init__(self):
        self.best: dict[str, tuple[float, float]] = {}
        self.last: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        best_wall, best_cpu = self.best.get(name, (float("inf"), float("inf")))
        self.best[name] = (min(best_wall, wall), min(best_cpu, cpu))
        self.last[name] = wall


def openstl_style(pred: np.ndarray, true: np.ndarray, lpips, watch: Stopwatch) -> dict[str, float]:
    """The per-frame loop of OpenSTL's metric(), on (B,T,C,H,W) float32 arrays."""
    frames = [(b, t) for b in range(pred.shape[0]) for t in range(pred.shape[1])]
    with watch.stage("baseline"):
        with watch.stage("baseline mae+mse+psnr"):
            values = {
                "mae": float(np.mean(np.abs(pred - true), axis=(0, 1)).sum()),
                "mse": float(np.mean((pred - true) ** 2, axis=(0, 1)).sum()),
            }
            pred = np.clip(pred, 0, 1)
            psnr = [20 * np.log10(1 / np.sqrt(np.mean((pred[b, t] - true[b, t]) ** 2))) for b, t in frames]
        with watch.stage("baseline ssim"):
            ssim = [structural_similarity(pred[b, t], true[b, t], channel_axis=0, data_range=2.0) for b, t in frames]
        with watch.stage("baseline lpips"), torch.no_grad():
            distances = [
                lpips.reference_distance(torch.from_numpy(pred[b, t][None]), torch.from_numpy(true[b, t][None])).item()
                for b, t in frames
            ]
    values.update(ssim=float(np.mean(ssim)), psnr=float(np.mean(psnr)), lpips=float(np.mean(distances)))
    return values


def svqbench_metrics(pred: torch.Tensor, true: torch.Tensor, device: torch.device, batch: int, watch: Stopwatch):
    with watch.stage("svqbench"):
        accumulator = MetricAccumulator(METRICS, "openstl", frames_out=pred.shape[1], device=device)
        for start in range(0, pred.shape[0], batch):
            accumulator.update(pred[start : start + batch], true[start : start + batch])
        values = accumulator.result()["overall"]  # reads the device sums back: waits for the GPU
    return values


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
    # the official package's layout: NCHW weights and inputs, one frame at a time
    reference_lpips = LpipsAlexNet(load_state(ensure_lpips_weights())).to(memory_format=torch.contiguous_format)
    frame_count = args.samples * args.frames

    svqbench_metrics(pred[:1], true[:1], device, 1, Stopwatch())  # warm-up: weights, kernels, allocator
    watch = Stopwatch()
    paired_ratios = []  # back-to-back runs see similar load from other processes
    for _ in range(args.repeats):
        baseline = openstl_style(pred.numpy(), true.numpy(), reference_lpips, watch)
        ours = svqbench_metrics(pred, true, device, args.batch, watch)
        paired_ratios.append(watch.last["baseline"] / watch.last["svqbench"])

    print(f"{frame_count} frames of 1x{args.size}x{args.size}, {args.threads} threads, svqbench on {device}")
    print(f"{'metric':8} {'openstl-style':>16} {'svqbench':>16} {'abs diff':>10}")
    for name in METRICS:
        print(f"{name:8} {baseline[name]:16.8f} {ours[name]:16.8f} {abs(baseline[name] - ours[name]):10.2e}")
    print(f"{'ms/frame':24} {'wall':>8} {'cpu':>8}")
    for name, (wall, cpu) in watch.best.items():
        print(f"{name:24} {1000 * wall / frame_count:8.2f} {1000 * cpu / frame_count:8.2f}")
    (base_wall, base_cpu), (ours_wall, ours_cpu) = watch.best["baseline"], watch.best["svqbench"]
    print(
        f"speed-up: {base_wall / ours_wall:.1f}x wall-clock (best runs), {base_cpu / ours_cpu:.1f}x CPU time, "
        f"median of paired runs {statistics.median(paired_ratios):.1f}x"
    )


if __name__ == "__main__":
    main()
