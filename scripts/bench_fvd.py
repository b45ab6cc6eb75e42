"""The cost of FVD's I3D features on this machine: seconds per 1,000 clips of T frames (resized to 224 x 224).

    python scripts/bench_fvd.py --clips 32 --frames 10 --size 64 --threads 2

Each evaluated window costs two such clips (the predicted and the true one).
"""

from __future__ import annotations

import argparse
import time

import torch

from svqbench.errors import SvqbenchError
from svqbench.metrics import i3d_logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clips = torch.rand(args.clips, args.frames, 1, args.size, args.size, generator=torch.Generator().manual_seed(0))
    try:
        i3d_logits(clips[:2])  # warm-up: weights loaded, kernels chosen
        best = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            i3d_logits(clips)
            best = min(best, time.perf_counter() - started)
    except SvqbenchError as error:
        raise SystemExit(f"error: {error}") from None
    print(
        f"{args.clips} clips of {args.frames}x{args.size}x{args.size}, {args.threads} threads: {best:.2f} s, "
        f"{best / args.clips * 1000:.0f} s per 1,000 clips"
    )


if __name__ == "__main__":
    main()
