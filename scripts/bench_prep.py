"""Measure KTH-sized preparation throughput on generated KTH-format archives.

    PYTHONPATH=. python scripts/bench_prep.py --videos 600 --frames 400 --workers 2 --backend decord

Writes six ``<action>.zip`` archives of XVID AVIs (160x120, 25 fps, ``personNN_<action>_dK_uncomp.avi``)
into ``--cache`` (reused between runs), runs ``data.prepare("kth", ...)`` on them and prints frames/s
(archive extraction, decoding, resizing, writing the splits) plus the loader's windows/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

ACTIONS = ("boxing", "handclapping", "handwaving", "walking", "jogging", "running")


def write_kth_avi(job: tuple[Path, int, int]) -> Path:
    """One 160x120 XVID clip: a textured background with a walking blob (compresses like KTH)."""
    path, frames, seed = job
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(60, 200, (120, 160), dtype=np.uint8), (15, 15), 0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"XVID"), 25, (160, 120))
    for t in range(frames):
        frame = background.copy()
        x = int(80 + 60 * np.sin(t / 25))
        cv2.ellipse(frame, (x, 60), (10, 30), 0, 0, 360, 30, -1)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def make_archives(cache: Path, videos: int, frames: int, workers: int) -> int:
    """Write the six archives once; return the total number of frames they hold."""
    marker = cache / f"done_{videos}_{frames}"
    if not marker.exists():
        cache.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        jobs = []
        for i in range(videos):
            action = ACTIONS[i % len(ACTIONS)]
            person, scenario = i // 6 % 25 + 1, i // 150 % 4 + 1
            name = f"person{person:02d}_{action}_d{scenario}_uncomp.avi"
            jobs.append((cache / name, int(rng.integers(frames // 2, frames * 3 // 2)), i))
        with ProcessPoolExecutor(workers) as pool:
            paths = list(pool.map(write_kth_avi, jobs))
        for action in ACTIONS:
            with zipfile.ZipFile(cache / f"{action}.zip", "w", zipfile.ZIP_STORED) as zf:
                for path in paths:
                    if f"_{action}_" in path.name:
                        zf.write(path, path.name)
        for path in paths:
            path.unlink()
        marker.write_text(str(sum(n for _, n, _ in jobs)))
    return int(marker.read_text())


def loader_throughput(root: Path, seconds: float = 5.0) -> float:
    """Windows per second a 2-worker DataLoader delivers from the prepared KTH train split."""
    from torch.utils.data import DataLoader

    from svqbench import data

    loader = DataLoader(data.create("kth", "train", root), batch_size=16, shuffle=True, num_workers=2)
    count, start = 0, time.perf_counter()
    for x, _ in loader:
        count += len(x)
        if time.perf_counter() - start > seconds:
            break
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=600)
    parser.add_argument("--frames", type=int, default=400, help="mean frames per video")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", default="decord", choices=("decord", "opencv"))
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "svqbench_bench_kth")
    args = parser.parse_args()

    from svqbench import data

    total = make_archives(args.cache, args.videos, args.frames, args.workers)
    with tempfile.TemporaryDirectory(dir=args.cache) as root:
        start = time.perf_counter()
        data.prepare("kth", root=root, src=args.cache, workers=args.workers, backend=args.backend)
        elapsed = time.perf_counter() - start
        print(
            f"kth prep, {args.videos} videos, {total} frames, backend {args.backend}, "
            f"{args.workers} workers: {elapsed:.1f} s, {total / elapsed:.0f} frames/s"
        )
        print(f"loader: {loader_throughput(Path(root)):.0f} windows/s (batch 16, 2 workers)")


if __name__ == "__main__":
    main()
