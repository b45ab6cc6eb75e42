"""``python -m svqbench.metrics [PATH]``: fetch, verify and cache the LPIPS weights; print their path."""

from __future__ import annotations

import argparse
import sys

from svqbench.errors import SvqbenchError
from svqbench.metrics.lpips_weights import ensure_lpips_weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m svqbench.metrics", description=__doc__.split(": ", 1)[1])
    parser.add_argument("path", nargs="?", help="an alexnet.ckpt or converted weight file to use instead of the cache")
    args = parser.parse_args(argv)
    try:
        print(ensure_lpips_weights(args.path))
    except SvqbenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
