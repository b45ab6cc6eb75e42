"""``python -m svqbench.metrics [--lpips PATH] [--fvd PATH]``: fetch, verify and cache the LPIPS and FVD (I3D) weights;
print their paths."""

from __future__ import annotations

import argparse
import sys

from svqbench.errors import SvqbenchError
from svqbench.metrics.i3d_weights import ensure_fvd_weights
from svqbench.metrics.lpips_weights import ensure_lpips_weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m svqbench.metrics", description=__doc__.split(": ", 1)[1])
    parser.add_argument(
        "path", nargs="?", help="an alexnet.ckpt or converted LPIPS weight file to use instead of the cache"
    )
    parser.add_argument("--fvd", metavar="PATH", help="an i3d-kinetics-400.ckpt or converted I3D weight file")
    parser.add_argument("--only", choices=("lpips", "fvd"), help="fetch only these weights")
    args = parser.parse_args(argv)
    failed = False
    for name, ensure, path in (("lpips", ensure_lpips_weights, args.path), ("fvd", ensure_fvd_weights, args.fvd)):
        if args.only not in (None, name):
            continue
        try:
            print(ensure(path))
        except SvqbenchError as error:
            print(f"error: {error}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
