"""What ``train.loggers=tensorboard,wandb,mlflow`` adds to a 500-step ``digits_small/simvp_svq`` run
(``train.log_every`` 10: 50 records, one validation), timed piece by piece on the real objects:

    svqbench prep digits_small --root DATA
    PYTHONPATH=. WANDB_MODE=offline python scripts/logging_overhead.py --root DATA --run-dir /tmp/overhead

opening the three loggers (imports, W&B's writer process, the MLflow run), 50 gradient norms (computed
only at logging steps), 50 records, one validation record (the strip needs one forward pass), closing.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from svqbench.config import load_recipe
from svqbench.engine.loggers import open_loggers
from svqbench.engine.train import claim_run_dir, fresh_state, make_setup, train_step
from svqbench.engine.world import join_world
from svqbench.progress import Reporter

RECORDS = 50  # 500 steps / log_every 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="data root holding digits_small")
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/svqbench-logging-overhead"))
    args = parser.parse_args()
    recipe = load_recipe("digits_small/simvp_svq", ["train.loggers=tensorboard,wandb,mlflow"])
    world, device = join_world(torch.device("cpu"))
    setup = make_setup(recipe, args.run_dir, device, world, args.root, Reporter(quiet=True))
    claim_run_dir(setup, resume=False, force=True)
    state = fresh_state(setup)
    inputs, targets = next(iter(DataLoader(setup.train_set, batch_size=recipe.train.batch_size)))
    train_step(setup, state, inputs, targets)  # gradients to take the norm of

    started = time.perf_counter()
    loggers = open_loggers(setup, state, resumed=False)
    opened = time.perf_counter()
    parameters = [p for p in state.model.parameters() if p.requires_grad]
    for _ in range(RECORDS):
        state.grad_norm = torch.nn.utils.clip_grad_norm_(parameters, math.inf)
    normed = time.perf_counter()
    for record in range(1, RECORDS + 1):
        state.step = record * loggers.log_every
        loggers.after_step(setup, state, 0.05)
    recorded = time.perf_counter()
    loggers.after_validation(setup, state, 0.04)
    validated = time.perf_counter()
    loggers.close()
    closed = time.perf_counter()
    print(
        f"open {opened - started:.2f} s, {RECORDS} grad norms {normed - opened:.2f} s, {RECORDS} records "
        f"{recorded - normed:.2f} s, 1 validation record {validated - recorded:.2f} s, close {closed - validated:.2f} "
        f"s, "
        f"total {closed - started:.2f} s"
    )


if __name__ == "__main__":
    main()
