"""Does bf16 autocast change what SimVP+SVQ learns? Train digits/simvp_svq_quick in fp32 and in bf16
from the same seed and compare the final validation losses (the bar: within 2% of fp32).

    PYTHONPATH=. python scripts/bf16_check.py --root data --out runs/bf16_check

Writes OUT/fp32/, OUT/bf16/ (the runs) and OUT/bf16_check.json; exits 1 when the bar is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from svqbench import data
from svqbench.config import load_recipe
from svqbench.engine.allocator import keep_freed_memory
from svqbench.engine.machine import resolve_device
from svqbench.engine.train import train
from svqbench.fileio import write_json
from svqbench.progress import Reporter

RECIPE = "digits/simvp_svq_quick"
TOLERANCE = 0.02


def final_val_loss(run_dir: Path) -> float:
    return json.loads((run_dir / "log.jsonl").read_text().splitlines()[-1])["val_loss"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="data root (default $SVQBENCH_DATA or ./data)")
    parser.add_argument("--out", type=Path, default=Path("runs/bf16_check"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    keep_freed_memory()  # as the CLI does, so the recorded seconds compare with `svqbench train`
    device = resolve_device(args.device)
    data.prepare("digits", root=args.root)
    result = {"recipe": RECIPE, "device": str(device), "tolerance": TOLERANCE}
    for precision in ("fp32", "bf16"):
        recipe = load_recipe(RECIPE, [f"train.precision={precision}"])
        started = time.perf_counter()
        run_dir = train(
            recipe, args.out / precision, device, data_root=args.root, reporter=Reporter(quiet=True), force=True
        )  # a second check replaces the first one's runs
        result[precision] = {"val_loss": final_val_loss(run_dir), "seconds": round(time.perf_counter() - started, 1)}
    result["relative_difference"] = abs(result["bf16"]["val_loss"] / result["fp32"]["val_loss"] - 1)
    result["within_tolerance"] = result["relative_difference"] <= TOLERANCE
    write_json(args.out / "bf16_check.json", result)
    print(json.dumps(result, indent=2))
    return 0 if result["within_tolerance"] else 1


if __name__ == "__main__":
    sys.exit(main())
