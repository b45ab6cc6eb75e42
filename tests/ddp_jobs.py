"""Run several training jobs in one torchrun launch (starting processes is the slow part of a DDP test).

Usage: torchrun ... tests/ddp_jobs.py DATA_ROOT JOBS.json, where JOBS.json lists
``{"recipe": PATH, "run_dir": PATH, "resume": bool, "set": [KEY=VALUE, ...]}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from svqbench.config import load_recipe
from svqbench.engine.runs import resumed_recipe
from svqbench.engine.train import train
from svqbench.progress import Reporter


def main(data_root: str, jobs_file: str) -> None:
    for job in json.loads(Path(jobs_file).read_text()):
        run_dir = Path(job["run_dir"])
        overrides = job.get("set", [])
        recipe = resumed_recipe(run_dir, overrides) if job["resume"] else load_recipe(job["recipe"], overrides)
        train(
            recipe, run_dir, torch.device("cpu"), Path(data_root), resume=job["resume"], reporter=Reporter(quiet=True)
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
