"""Studies: train and evaluate every (recipe, seed) of a study file, then write the study's leaderboard.

A study file (YAML)::

    name: digits                       # the study's leaderboard: OUT/NAME.md, .csv, .png
    dataset: digits                    # every recipe must train on it
    recipes:                           # names, or {name, set, label} for overrides of one recipe
      - digits/persistence
      - digits/simvp
      - {name: digits/simvp_svq, set: [model.codebook_size=1024], label: simvp_svq_1k}
    seeds: [1, 2, 3]
    set: [train.max_steps=2000]        # --set overrides shared by every recipe (optional)
    eval: {metrics: [mae, mse, ssim, psnr], convention: standard, split: test}   # optional
    runs: runs/studies/digits          # runs go to RUNS/<recipe>-seed<k>
    out: leaderboards/studies          # where the study's leaderboard goes
    axis: {key: train.perturb_ratio, metrics: [mse, ssim], reference: simvp}   # optional, see study_axis

With an ``axis``, the study's plot shows the metrics against that setting per model, and its Markdown adds the
curves and the changes from the first setting with their across-seed intervals (:mod:`svqbench.results.study_axis`).

The sweep can span several sittings: a run whose per-window file (``eval/SPLIT-CONVENTION.npz``) matches the planned
recipe and
evaluation is skipped; a run with a ``last.pt`` is resumed; anything else is trained from scratch.

Several sweeps of one study (``--shard K/N`` slices, or plain duplicates; on one machine or on several
sharing a file system) train and evaluate each run exactly once: a sweep works on a run only while it holds
the run folder's lock (``RUN/.lock``, an ``flock`` through filelock, which the kernel releases when the
holder dies, so a killed sweep's runs are taken over and resumed). A sweep first does the runs no one
holds, then waits for the others and skips what they finished. The study's leaderboard holds every run of
the study finished so far, so the last sweep to finish writes the complete one.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import pandas as pd
import torch
from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from svqbench.config import EvalConfig, Recipe, find_recipe, load_recipe, read_yaml_file, with_defaults, with_seed
from svqbench.engine.evaluate import evaluate
from svqbench.engine.runs import LOCK, RunDir, RunHeld, holding_run
from svqbench.engine.train import train
from svqbench.errors import SvqbenchError
from svqbench.fileio import write_text
from svqbench.flows.tune_space import TuneSpec
from svqbench.progress import Reporter
from svqbench.results import leaderboard, per_window, study_axis, tuning
from svqbench.results.views import plot, to_markdown


class StudyEval(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    metrics: tuple[str, ...] | None = None
    convention: str | None = None
    split: str | None = None
    batch_size: int | None = Field(None, ge=1)


class StudyAxis(BaseModel):
    """The setting a study sweeps (a recipe key set in its entries' overrides), what to plot against it, and the
    model whose change the others' are compared with."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str
    metrics: tuple[str, ...] = Field(("mse", "ssim"), min_length=1)
    reference: str | None = None


class StudyRecipe(BaseModel):
    """One entry of a study: a recipe, its own --set overrides, and the label its run folders carry."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    set: tuple[str, ...] = ()
    label: str = ""

    @property
    def folder_label(self) -> str:
        return self.label or self.name.split("/")[-1]


class Study(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    dataset: str
    recipes: tuple[str | StudyRecipe, ...] = Field(min_length=1)
    seeds: tuple[int, ...] = Field((42,), min_length=1)
    set: tuple[str, ...] = ()
    eval: StudyEval = StudyEval()
    runs: Path = Path("runs/studies")
    out: Path = Path("leaderboards/studies")
    axis: StudyAxis | None = None
    tune: TuneSpec | None = None  # svqbench tune: the search (svqbench.flows.tune_space)

    @property
    def entries(self) -> list[StudyRecipe]:
        return [StudyRecipe(name=r) if isinstance(r, str) else r for r in self.recipes]

    def run_dir(self, entry: StudyRecipe, seed: int) -> Path:
        return self.runs / f"{entry.folder_label}-seed{seed}"


def load_study(path: str | Path) -> Study:
    path = Path(path)
    if not path.is_file():
        raise SvqbenchError(f"study file {path} does not exist")
    try:
        return Study.model_validate(read_yaml_file(path, "study") or {})
    except ValidationError as e:
        first = e.errors()[0]
        raise SvqbenchError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def tuned_entries(study: Study) -> list[StudyRecipe]:
    """The tuned recipes that a sweep of a tuned study trains beside the defaults: ``BEST/LABEL.yaml`` (written by
    ``svqbench tune``) of every entry that has one, labelled ``LABEL_tuned``. A tuned study swept before any
    tuning is refused."""
    if study.tune is None:
        return []
    best = study.tune.best_dir(study.name)
    tuned = [
        StudyRecipe(name=str(best / f"{entry.folder_label}.yaml"), label=f"{entry.folder_label}_tuned")
        for entry in study.entries
        if (best / f"{entry.folder_label}.yaml").is_file()
    ]
    if not tuned:
        raise SvqbenchError(
            f"study {study.name}: no tuned recipe in {best} yet; run `svqbench tune` on the study first "
            "(or `svqbench tune STUDY.yaml --then-sweep`)"
        )
    return tuned


def trainable(recipe: Recipe) -> bool:
    """Whether the recipe's model has weights to train (the blank and persistence floors have none)."""
    from svqbench import data
    from svqbench.models import create_model

    shape = data.known_shape(recipe.dataset) or data.info(recipe.dataset)
    with torch.device("meta"):
        model = create_model(recipe.model_name, shape, **recipe.model_args)
    return any(p.requires_grad for p in model.parameters())


def _default_entries(study: Study, tuned: list[StudyRecipe]) -> list[StudyRecipe]:
    """The study's own entries; with a baseline study (``tune.baseline``), which ran the defaults, only those with
    nothing to tune (the floors)."""
    if study.tune is None or study.tune.baseline is None:
        return study.entries
    return [entry for entry in study.entries if not trainable(load_recipe(entry.name, list(study.set)))]


def baseline_rows(study: Study, labels: set[str]) -> pd.DataFrame | None:
    """The rows of ``tune.baseline``'s leaderboard whose run label (``LABEL-seedK``) is one of ``labels``: the
    defaults the tuned recipes are compared with."""
    if study.tune is None or study.tune.baseline is None:
        return None
    baseline = load_study(study.tune.baseline)
    table = leaderboard.read(baseline.name, baseline.out)
    return table[table["run"].astype(str).map(tuning.label_of).isin(labels)]


class PlannedRun(NamedTuple):
    """One run of a study: its display label, seed, seeded recipe and run folder."""

    label: str
    seed: int
    recipe: Recipe
    run_dir: Path


def plan(study: Study) -> list[PlannedRun]:
    """Every (recipe label, seed, seeded recipe, run folder), seed by seed, validated before anything runs; a tuned
    study's best recipes follow its own (:func:`tuned_entries`)."""
    tuned = tuned_entries(study)
    entries = [*_default_entries(study, tuned), *tuned]
    labels = [e.folder_label for e in entries]
    if len(set(labels)) != len(labels):
        twice = next(label for label in labels if labels.count(label) > 1)
        raise SvqbenchError(f"study {study.name}: two entries would share run folders {twice!r}; give one a label")
    missing = []
    for entry in entries:
        try:
            find_recipe(entry.name)
        except SvqbenchError:
            missing.append(entry.name)
    if missing:
        raise SvqbenchError(
            f"study {study.name}: unknown recipe{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (see `svqbench recipes`)"
        )
    if study.axis and not any(part.startswith(f"{study.axis.key}=") for e in entries for part in (*study.set, *e.set)):
        raise SvqbenchError(
            f"study {study.name}: axis.key {study.axis.key!r}: no entry sets it; give the entries "
            f"`set: [{study.axis.key}=VALUE]`"
        )
    recipes = {}
    for entry in entries:
        try:
            recipes[entry.folder_label] = load_recipe(entry.name, [*study.set, *entry.set])
        except SvqbenchError as e:
            raise SvqbenchError(f"study {study.name}: recipe {entry.name!r} cannot be used: {e}") from None
        if recipes[entry.folder_label].dataset != study.dataset:
            raise SvqbenchError(
                f"study {study.name}: recipe {entry.name!r} trains on "
                f"{recipes[entry.folder_label].dataset!r}, not {study.dataset!r}"
            )
    if study.axis:
        evaluated = set.intersection(*(set(_eval_settings(study, r)["metrics"]) for r in recipes.values()))
        unknown = [m for m in study.axis.metrics if m not in evaluated]
        if unknown:
            raise SvqbenchError(
                f"study {study.name}: axis.metrics {', '.join(unknown)}: not evaluated by every run; "
                f"valid: {', '.join(sorted(evaluated))} (or add them to eval.metrics)"
            )
    return [
        PlannedRun(
            entry.name if not entry.set else f"{entry.name} ({entry.folder_label})",
            seed,
            with_seed(recipes[entry.folder_label], seed),
            study.run_dir(entry, seed),
        )
        for seed in study.seeds
        for entry in entries
    ]  # seed-major: a partial study covers every recipe


def _eval_settings(study: Study, recipe: Recipe) -> dict[str, Any]:
    cfg: EvalConfig = recipe.eval
    return {
        "metrics": sorted(study.eval.metrics or cfg.metrics),
        "convention": study.eval.convention or cfg.convention,
        "split": study.eval.split or cfg.split,
    }


def run_state(recipe: Recipe, run_dir: Path, settings: dict[str, Any]) -> str:
    """'done' (evaluated as planned), 'resume' (a checkpoint to continue) or 'new'."""
    stored = RunDir(run_dir).recipe
    try:
        same_recipe = stored.is_file() and with_defaults(read_yaml_file(stored, "recipe")) == recipe.to_dict()
    except SvqbenchError as error:
        raise SvqbenchError(
            f"{stored}: not a readable recipe ({error}); move the run folder {run_dir} aside and the "
            "sweep trains it again"
        ) from None
    if same_recipe and per_window.available(run_dir, settings["split"], settings["convention"]):
        try:
            report = per_window.read(run_dir, settings["split"], settings["convention"]).report
        except SvqbenchError:  # damaged: evaluate again
            report = {}
        if set(settings["metrics"]) <= set(report.get("overall", {})):
            return "done"
    return "resume" if (RunDir(run_dir).last).is_file() else "new"


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N): the K-th of N slices of a study's runs, 1 <= K <= N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise SvqbenchError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. --shard 2/4")
    return int(match.group(1)), int(match.group(2))


def shard_runs(planned: list, shard: tuple[int, int]) -> list:
    """Shard (K, N) of the planned runs: every N-th, from the K-th (the plan is seed-major, so a shard holds
    several recipes)."""
    index, count = shard
    return planned[index - 1 :: count]


def run_lock(run_dir: Path) -> FileLock:
    """The lock a sweep holds while it trains or evaluates the run in ``run_dir`` (``RunDir`` names the file)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(str(run_dir / LOCK))


def sweep(
    study: Study,
    device: torch.device,
    data_root: Path | None = None,
    echo: Callable[[str], None] = print,
    quiet_training: bool = True,
    shard: tuple[int, int] = (1, 1),
) -> dict[str, Any]:
    """Train and evaluate every planned run of ``shard`` (K, N): every N-th, from the K-th; skip finished
    ones, leave the ones another sweep holds to the end; write the study's leaderboard.

    Returns ``{"runs": [{recipe, seed, run_dir, state, seconds}], "seconds", "markdown", "csv", "plot"}``.
    """
    planned = plan(study)
    index, count = shard
    runs = shard_runs(planned, shard)
    started = time.perf_counter()
    done: dict[int, dict[str, Any]] = {}
    held_elsewhere = []
    for position, run in enumerate(runs, 1):
        try:
            with holding_run(run.run_dir):
                done[position] = sweep_run(study, run, device, data_root, quiet_training)
        except RunHeld:
            held_elsewhere.append((position, run))
            continue
        echo(progress_line(done[position], position, len(runs), started))
    for position, run in held_elsewhere:
        echo(f"[{position}/{len(runs)}] {run[0]} seed {run[1]}: another sweep holds {run[3]}; waiting for it")
        with holding_run(run.run_dir, wait=-1):
            done[position] = sweep_run(study, run, device, data_root, quiet_training)
        echo(progress_line(done[position], position, len(runs), started))
    outputs = write_study_leaderboard(study, finished_run_ids(study, planned))
    total = time.perf_counter() - started
    ordered = [done[position] for position in sorted(done)]
    part = f" (shard {index}/{count} of {len(planned)})" if count > 1 else ""
    echo(
        f"study {study.name}: {len(runs)} runs{part} ({sum(d['state'] == 'done' for d in ordered)} already done) "
        f"in {_clock(total)}; leaderboard {outputs['markdown']}"
    )
    return {"runs": ordered, "seconds": round(total, 1), **{k: str(v) for k, v in outputs.items()}}


def sweep_run(
    study: Study, run: PlannedRun, device: torch.device, data_root: Path | None, quiet_training: bool
) -> dict[str, Any]:
    """Train (or resume) and evaluate one run unless it is done; the caller holds its lock."""
    name, seed, recipe, run_dir = run.label, run.seed, run.recipe, run.run_dir
    settings = _eval_settings(study, recipe)
    state = run_state(recipe, run_dir, settings)
    run_started = time.perf_counter()
    if state != "done":
        # "new" also covers a folder a killed run left before its first checkpoint: nothing in it to keep
        train(
            recipe,
            run_dir,
            device,
            data_root=data_root,
            resume=state == "resume",
            force=state == "new",
            reporter=Reporter(quiet_training),
        )
    report = per_window.read(run_dir, settings["split"], settings["convention"]).report if state == "done" else {}
    if state != "done" or not _has_row(study.dataset, report.get("run_id")):
        report = evaluate(
            run_dir,
            device,
            tuple(settings["metrics"]),
            settings["split"],
            settings["convention"],
            data_root,
            study.eval.batch_size,
        )
    return {
        "recipe": name,
        "seed": seed,
        "run_dir": str(run_dir),
        "state": state,
        "seconds": round(time.perf_counter() - run_started, 1),
        "run_id": report.get("run_id"),
        "headline": ", ".join(f"{k} {v:.4g}" for k, v in list(report["overall"].items())[:3]),
    }


def progress_line(run: dict[str, Any], position: int, total: int, started: float) -> str:
    action = {"done": "already done", "resume": "resumed", "new": "trained"}[run["state"]]
    return (
        f"[{position}/{total}] {run['recipe']} seed {run['seed']}: {action} in {run['seconds']:.0f} s; "
        f"{run['headline']} ({run['run_dir']}); {_clock(time.perf_counter() - started)} elapsed"
    )


def finished_run_ids(study: Study, planned: list[PlannedRun]) -> list[str]:
    """The run ids of the study's runs evaluated as planned, whichever sweep finished them."""
    run_ids = []
    for run in planned:
        recipe, run_dir = run.recipe, run.run_dir
        settings = _eval_settings(study, recipe)
        if per_window.available(run_dir, settings["split"], settings["convention"]):
            try:
                run_ids.append(per_window.read(run_dir, settings["split"], settings["convention"]).report.get("run_id"))
            except SvqbenchError:  # damaged: not finished
                continue
    return run_ids


def _has_row(dataset: str, run_id: str | None) -> bool:
    """Whether the dataset's leaderboard holds the run's evaluation (it may have been cleared since)."""
    try:
        return run_id in set(leaderboard.read(dataset)["run_id"].astype(str))
    except SvqbenchError:
        return False


def write_study_leaderboard(study: Study, run_ids: list[str]) -> dict[str, Path]:
    """The study's own rows (from the dataset's leaderboard) as OUT/NAME.csv, .md and .png."""
    study.out.mkdir(parents=True, exist_ok=True)
    with FileLock(str(study.out / f".{study.name}.lock")):  # concurrent sweeps: the last one writes every row
        return _write_study_leaderboard(study, run_ids)


def _write_study_leaderboard(study: Study, run_ids: list[str]) -> dict[str, Path]:
    table = leaderboard.read(study.dataset)
    table = table[table["run_id"].astype(str).isin(run_ids)]
    own = set(table["run"].astype(str).map(tuning.label_of))
    # the defaults of the tuned recipes, from the baseline; not what this study ran itself (the floors)
    defaults = baseline_rows(
        study, {label.removesuffix(tuning.TUNED_SUFFIX) for label in own if label.endswith(tuning.TUNED_SUFFIX)} - own
    )
    if defaults is not None and not defaults.empty:  # the defaults' rows beside the tuned ones, from the baseline
        table = pd.concat([defaults, table], ignore_index=True)
    if table.empty:
        raise SvqbenchError(f"study {study.name}: none of its runs is in the {study.dataset!r} leaderboard")
    out = {
        "csv": study.out / f"{study.name}.csv",
        "markdown": study.out / f"{study.name}.md",
        "plot": study.out / f"{study.name}.png",
    }
    write_text(out["csv"], leaderboard.to_csv_text(table, study.out))
    markdown = to_markdown(study.name, table, leaderboard.reported(study.dataset))
    if study.axis is None:
        plot(study.name, table, out["plot"])
    else:
        head, runs_marker, runs = markdown.partition("\n## Runs")
        axis = study_axis.report(
            study.name, table, study.axis.key, study.axis.metrics, study.axis.reference, out["plot"]
        )
        markdown = head + "\n" + axis + runs_marker + runs
    if study.tune is not None:
        settings = _eval_settings(study, load_recipe(study.entries[0].name, list(study.set)))
        head, runs_marker, runs = markdown.partition("\n## Runs")
        markdown = (
            head
            + tuning.markdown(
                table,
                tuning.read_effort(study.tune.best_dir(study.name) / tuning.EFFORT_FILE),
                [m for m in settings["metrics"] if m in table.columns],
                study.tune.reference,
                settings["split"],
                settings["convention"],
            )
            + runs_marker
            + runs
        )
    write_text(out["markdown"], markdown)
    return out


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
