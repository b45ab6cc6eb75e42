"""The run directory: the only contract between ``train``, ``eval``, ``render`` and ``predict``.

``RUN/recipe.yaml`` (resolved recipe), ``RUN/run.json`` (identity and progress, see :func:`run_meta`),
``RUN/log.jsonl`` (one JSON object per line), ``RUN/best.pt`` (lowest validation loss),
``RUN/last.pt`` (the latest checkpoint), ``RUN/metrics.json`` (from eval), ``RUN/plugins/`` (a copy of
a model plugin file). A checkpoint carries its own recipe, dataset facts and ``meta`` (the content of
run.json, with ``model_plugin``: what :func:`svqbench.models.plugins.plugin_record` records).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import shutil
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml
from filelock import FileLock, Timeout
from torch import nn

from svqbench import __version__
from svqbench.config import WATCHING_KEYS, Recipe, load_recipe, parse_override, read_yaml_file, validate_recipe
from svqbench.data.base import DatasetInfo
from svqbench.errors import SvqbenchError
from svqbench.fileio import atomic_path, write_text
from svqbench.models import create_model
from svqbench.models.plugins import PLUGIN_DIR, activate_run_plugin, plugin_record


class RunDir:
    """A run folder and the name of every file in it: the one place those names are spelled."""

    LAST, BEST = "last.pt", "best.pt"
    CHECKPOINTS = (BEST, LAST)  # the order a run's selection prefers them in
    RUN_JSON, RECIPE, LOG, METRICS = "run.json", "recipe.yaml", "log.jsonl", "metrics.json"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    last = property(lambda self: self.path / RunDir.LAST)
    best = property(lambda self: self.path / RunDir.BEST)
    run_json = property(lambda self: self.path / RunDir.RUN_JSON)
    recipe = property(lambda self: self.path / RunDir.RECIPE)
    log = property(lambda self: self.path / RunDir.LOG)
    metrics = property(lambda self: self.path / RunDir.METRICS)


# what a run folder may hold (``train --force`` removes only these, and plugin copies)
RUN_FILES = (
    RunDir.RECIPE,
    RunDir.RUN_JSON,
    RunDir.LOG,
    RunDir.LAST,
    RunDir.BEST,
    RunDir.METRICS,
    "per_window.npz",
    "eval",
    "horizon.png",
)
# what a resumed run may change: more steps, and settings that do not change the result
RESUMABLE_KEYS = ("train.epochs", "train.max_steps", "train.num_workers", "train.checkpoint_every", *WATCHING_KEYS)


def holds_run(run_dir: Path) -> bool:
    return any((Path(run_dir) / name).exists() for name in RUN_FILES)


class RunHeld(SvqbenchError):
    """Another process holds the run folder's lock."""


LOCK = ".lock"  # RUN/.lock: held by the process that trains (or a sweep or tune worker that works on) the run
_HELD: dict[str, int] = {}  # run folders this process holds, with how many holders nest


@contextmanager
def holding_run(run_dir: Path, wait: float = 0) -> Iterator[None]:
    """Hold the run folder's lock (an ``flock`` the kernel releases when the process dies) while the block runs;
    a second process is refused in one line (after ``wait`` seconds; -1 waits for ever). Re-entrant within a
    process: a sweep or tune worker holds it, and the ``train`` it calls holds it again."""
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / LOCK))
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        raise RunHeld(
            f"{run_dir}: another svqbench process is working on this run (it holds {run_dir / LOCK}); wait for it "
            "to end, or give another --run-dir"
        ) from None
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        lock.release()


def refuse_links(run_dir: Path) -> None:
    """A run folder, and the run files in it, must not be symbolic links: ``--force`` deletes run files, and a
    link would point the deletion (or the writes) somewhere else."""
    run_dir = Path(run_dir)
    if run_dir.is_symlink():
        raise SvqbenchError(
            f"--run-dir {run_dir} is a symbolic link (to {run_dir.resolve()}); give the folder itself: "
            f"--run-dir {run_dir.resolve()}"
        )
    for name in (*RUN_FILES, PLUGIN_DIR):
        if (run_dir / name).is_symlink():
            raise SvqbenchError(
                f"{run_dir / name} is a symbolic link (to {(run_dir / name).resolve()}); a run's files are its own: "
                "move it out of the run folder"
            )


def remove_run(run_dir: Path) -> None:
    """Delete the files of a run (``--force``); anything else in the folder stays. Links are refused first, before
    anything is deleted."""
    refuse_links(run_dir)
    for name in RUN_FILES:
        target = Path(run_dir) / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    shutil.rmtree(Path(run_dir) / PLUGIN_DIR, ignore_errors=True)


def resumed_recipe(run_dir: Path, overrides: list[str] = ()) -> Recipe:
    """The recipe of the run in ``run_dir``, extended by ``overrides`` of :data:`RESUMABLE_KEYS` only."""
    path = RunDir(Path(run_dir)).recipe
    if not path.is_file():
        raise SvqbenchError(f"--resume {run_dir}: no run there (no recipe.yaml)")
    for text in overrides:
        key = ".".join(parse_override(text)[0])
        if key not in RESUMABLE_KEYS:
            raise SvqbenchError(
                f"--set {key}: a resumed run may only change {', '.join(RESUMABLE_KEYS)}; start a new run to change "
                f"{key}"
            )
    activate_run_plugin(run_dir, read_run_json(run_dir))
    return load_recipe(str(path), list(overrides))


def git_commit() -> str | None:
    """The commit of the svqbench checkout, or None outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def run_meta(recipe: Recipe, world_size: int, val_held_out: bool) -> dict[str, Any]:
    """The identity of a new run (RUN/run.json and the checkpoints' "meta"); step/epoch/time follow it."""
    return {
        "run_id": new_run_id(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "svqbench_version": __version__,
        "git_commit": git_commit(),
        "recipe_name": recipe.name,
        "overrides": list(recipe.overrides),
        "seed": recipe.train.seed,
        "precision": recipe.train.precision,
        "world_size": world_size,
        "val_held_out": val_held_out,
        "selection": recipe.train.select if val_held_out else "last",
        "step": 0,
        "epoch": 0,
        "train_seconds": 0.0,
        "model_plugin": plugin_record(recipe.model_name),
    }


def read_run_json(run_dir: Path) -> dict[str, Any] | None:
    """``RUN/run.json`` (None when absent); one line naming the file when it is not a JSON object."""
    path = RunDir(Path(run_dir)).run_json
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        meta = error
    remedy = "delete it (eval then reads the checkpoint and log.jsonl) or resume the run, which rewrites it"
    if not isinstance(meta, dict):
        raise SvqbenchError(
            f"{path}: not a run record ({'not valid JSON' if isinstance(meta, Exception) else 'not an object'}); "
            + remedy
        )
    for key, kinds in RUN_JSON_TYPES.items():
        value = meta.get(key)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds):
            valid = " or ".join(kind.__name__ for kind in kinds)
            raise SvqbenchError(f"{path}: {key} is {value!r} (expected {valid}): not a run record; {remedy}")
    return meta


# the fields of run.json that eval, leaderboards and resume read, with their types
RUN_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": (str,),
    "step": (int,),
    "epoch": (int,),
    "world_size": (int,),
    "train_seconds": (int, float),
    "model_plugin": (dict,),
    "selection": (str,),
    "val_held_out": (bool,),
    "git_commit": (str,),
}


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl``. A last line torn by a kill is dropped; a damaged line elsewhere is one
    line naming the file and the line number."""
    if not Path(path).is_file():
        return []
    numbered = [
        (n, line) for n, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1) if line.strip()
    ]
    records = []
    for position, (number, line) in enumerate(numbered, 1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            if position == len(numbered):
                break  # torn while being written: the resumed run writes it again
            raise SvqbenchError(f"{path}:{number}: not a log record ({line[:40]!r}); delete that line")
        records.append(record)
    return records


def run_selection(run_dir: Path) -> str:
    """Which checkpoint eval uses: run.json's "selection", else the recipe's train.select, else best."""
    meta = read_run_json(run_dir)
    if meta is not None:
        return meta.get("selection", "best")
    try:
        raw = read_yaml_file(RunDir(Path(run_dir)).recipe, "recipe") or {}
        return raw.get("train", {}).get("select", "best")
    except (OSError, SvqbenchError, AttributeError):
        return "best"


def run_stem(recipe: Recipe) -> str:
    """The dataset actually used (after --set dataset=...), then the recipe's own name."""
    return f"{recipe.dataset}-{recipe.name.split('/')[-1] or recipe.model_name}"


def new_run_dir(recipe: Recipe, base: Path = Path("runs")) -> Path:
    return base / f"{run_stem(recipe)}-{time.strftime('%Y%m%d-%H%M%S')}"


def save_recipe(run_dir: Path, recipe: Recipe) -> None:
    write_text(RunDir(run_dir).recipe, yaml.safe_dump(recipe.to_dict(), sort_keys=False))


def save_checkpoint(path: Path, **state: Any) -> None:
    """Write a checkpoint atomically. It is serialised in memory first, so a full disk is an ordinary write
    error (one line, see :mod:`svqbench.fileio`), not torch's archive-writer failure."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def checkpoint_path(run_dir: Path, which: str = "best") -> Path:
    """``best.pt`` when present (falls back to ``last.pt``), or exactly ``which``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SvqbenchError(f"run directory {run_dir} does not exist")
    order = list(RunDir.CHECKPOINTS) if which == "best" else [f"{which}.pt"]
    for name in order:
        if (run_dir / name).is_file():
            return run_dir / name
    raise SvqbenchError(f"{run_dir}: no checkpoint ({' or '.join(order)}); train it with `svqbench train`")


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise SvqbenchError(f"{path}: not a readable svqbench checkpoint ({type(e).__name__})") from None


class LoadedRun:
    """A trained model with its recipe and dataset facts, ready for evaluation or prediction."""

    def __init__(self, run_dir: Path, device: torch.device, which: str | None = None):
        """``which``: "best", "last", or None for the run's own selection (:func:`run_selection`)."""
        self.dir = Path(run_dir)
        self.checkpoint_file = checkpoint_path(self.dir, which or run_selection(self.dir))
        state = load_checkpoint(self.checkpoint_file, device)
        self.state: dict[str, Any] = state  # the checkpoint as saved (fold rewrites it)
        activate_run_plugin(self.dir, state.get("meta") or read_run_json(self.dir))
        self.recipe: Recipe = validate_recipe(state["recipe"], str(self.checkpoint_file))
        self.info = DatasetInfo.from_dict(state["info"])
        self.epoch: int = state.get("epoch", 0)
        self.step: int = state.get("step", 0)
        self.selection: str = self.checkpoint_file.stem  # "best" falls back to "last" when no best.pt exists
        self.meta: dict[str, Any] = dict(state.get("meta") or {})
        self.meta.setdefault("run_id", fallback_run_id(self.dir))
        self.model: nn.Module = create_model(self.recipe.model_name, self.info, **self.recipe.model_args)
        self.model.load_state_dict(state["model"])
        self.model.to(device).eval()
        self.device = device


def new_run_id() -> str:
    """A run's unique id: 12 hex characters, stored in its checkpoints and run.json."""
    return uuid.uuid4().hex[:12]


def fallback_run_id(run_dir: Path) -> str:
    """12 hex chars from the run folder's absolute path, for runs trained before ids were stored.

    Stable across evaluations of the same folder; two folders of the same name elsewhere differ.
    """
    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]


def training_record(run_dir: Path) -> dict[str, Any]:
    """What training did in all: ``{"epoch", "step", "train_seconds"}`` at its latest checkpoint.

    From ``RUN/run.json`` when the trainer wrote one, else summed from ``RUN/log.jsonl``.
    """
    run_dir = Path(run_dir)
    meta = read_run_json(run_dir)
    if meta is not None and "step" in meta:
        return {k: meta.get(k) for k in ("epoch", "step", "train_seconds")}
    records = read_log(RunDir(run_dir).log)
    if not records:
        return {"epoch": None, "step": None, "train_seconds": None}
    return {
        "epoch": records[-1].get("epoch"),
        "step": records[-1].get("step"),
        "train_seconds": round(sum(r.get("seconds") or 0.0 for r in records), 3),
    }


def seeded_run_dir(recipe: Recipe, seed: int, base_dir: Path | None = None) -> Path:
    """``BASE_DIR/seedK`` when a folder is given, else ``runs/DATASET-NAME-seedK-TIME``: the seed is in the name."""
    if base_dir is not None:
        return Path(base_dir) / f"seed{seed}"
    return Path("runs") / f"{run_stem(recipe)}-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
