"""``svqbench tune STUDY.yaml``: the same Optuna search for every trainable recipe of a study, on validation only.

Each recipe (a study entry whose model has weights; the floors have nothing to tune) gets its own Optuna study,
``STUDY:LABEL``, with the same trials, steps per trial, sampler and pruner (:mod:`svqbench.flows.tune_space`). A
trial is an ordinary run in ``RUNS/LABEL/trial-K`` (its overrides in ``recipe.yaml``, ``log.jsonl``, checkpoints);
every validation is reported to the pruner; the trial's value is its best validation loss, or a metric of its
selected checkpoint on the validation split. The test split is never opened.

Any number of ``tune`` processes (on one machine or many) share a study through its storage: a journal file in
the tuning folder by default, or ``--storage postgresql://...``. Together they run exactly ``trials`` trials per
recipe:

- a new trial takes the next slot; one asked for beyond the last slot (two workers asking at once) is closed
  as ``FAIL`` with the user attribute ``surplus`` and never counted;
- a worker holds its trial's run folder lock (``RUN/.lock``, released by the kernel when the process dies) and,
  on a database, sends Optuna heartbeats;
- a trial whose worker died is not lost and counts once. On a database Optuna's heartbeat marks it failed and
  :class:`optuna.storages.RetryHeartbeatStaleTrialCallback` queues it again with its parameters; on a journal
  (no heartbeats) a worker that finds a running trial whose run lock nobody holds takes it over. Either way the
  trial resumes in its own folder from ``last.pt`` (or restarts without one).

After the search each recipe's best trial is written as ``BEST/LABEL.yaml``: the recipe with the chosen
overrides, at the study's full budget. ``svqbench sweep STUDY.yaml`` then trains the default and the tuned
recipe of each model over the study's seeds and evaluates them on test (:func:`svqbench.flows.sweep.tuned_entries`).
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from filelock import FileLock, Timeout

from svqbench import data
from svqbench.config import Recipe, load_recipe, with_seed
from svqbench.engine.runs import LOCK, RunDir, RunHeld, holding_run, read_log
from svqbench.engine.train import train
from svqbench.errors import SvqbenchError
from svqbench.fileio import write_json, write_text
from svqbench.flows.sweep import Study, StudyRecipe, trainable
from svqbench.flows.tune_space import TuneSpec, override
from svqbench.progress import Reporter
from svqbench.results.tuning import EFFORT_FILE

GRACE_ENV = "SVQBENCH_TUNE_GRACE"  # seconds before a running trial without a live worker is taken over
HEARTBEAT_ENV = "SVQBENCH_TUNE_HEARTBEAT"  # seconds between a database worker's heartbeats
POLL_SECONDS = 2.0  # how often a worker with nothing left to ask looks at the trials others are running
MAX_RETRIES = 3  # a trial whose process keeps dying is queued again at most this often


@dataclass(frozen=True)
class TunedRecipe:
    """One recipe of the search: its study entry, the recipe every trial starts from, the keys searched."""

    entry: StudyRecipe
    base: Recipe
    overrides: tuple[str, ...]  # the study's, the entry's and --set: applied to every trial, kept in the best recipe

    @property
    def label(self) -> str:
        return self.entry.folder_label


def optuna_module():
    try:
        import optuna
    except ImportError:
        raise SvqbenchError('svqbench tune needs Optuna: pip install "svqbench[tune]" (optuna, psycopg)') from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def plan_search(study: Study, only: str | None = None, extra: tuple[str, ...] = ()) -> list[TunedRecipe]:
    """The study's trainable recipes (or only the one named by ``--recipe``), each checked against the space: a key
    a model does not have is refused in one line, unless the space limits it to other recipes."""
    spec = _spec(study)
    entries = study.entries
    if only is not None:
        entries = [e for e in entries if only in (e.name, e.folder_label)]
        if not entries:
            valid = ", ".join(e.folder_label for e in study.entries)
            raise SvqbenchError(f"--recipe {only!r}: not a recipe of study {study.name}; valid: {valid}")
    for key, dim in spec.space.items():
        unknown = [
            r for r in dim.recipes or () if r not in {n for e in study.entries for n in (e.name, e.folder_label)}
        ]
        if unknown:
            raise SvqbenchError(
                f"study {study.name}: tune.space.{key}.recipes: {unknown[0]!r} is not one of its recipes"
            )
    searched = []
    for entry in entries:
        overrides = (*study.set, *entry.set, *extra)
        try:
            base = load_recipe(entry.name, list(overrides))
        except SvqbenchError as e:
            raise SvqbenchError(f"study {study.name}: recipe {entry.name!r} cannot be used: {e}") from None
        if not trainable(base):
            continue
        for key, dim in spec.dimensions_for(entry.folder_label, entry.name).items():
            try:
                load_recipe(entry.name, [*overrides, override(key, dim.example())])
            except SvqbenchError as e:
                raise SvqbenchError(
                    f"study {study.name}: tune.space.{key} cannot be set on {entry.name!r} ({e}); limit it to the "
                    f"recipes that have it with `recipes: [...]`"
                ) from None
        searched.append(TunedRecipe(entry, base, overrides))
    if not searched:
        raise SvqbenchError(f"study {study.name}: no recipe with weights to tune (the floors have none)")
    return searched


def _spec(study: Study) -> TuneSpec:
    if study.tune is None:
        raise SvqbenchError(f"study {study.name}: no tune: section (see `svqbench tune --help` for its keys)")
    return study.tune


def check_held_out(dataset: str, data_root: Path | None) -> None:
    """Refuse a dataset whose validation split overlaps training: selecting on it would select on training."""
    if not data.load_manifest(dataset, data_root).get("val_held_out", True):
        raise SvqbenchError(
            f"dataset {dataset!r}: its validation split is not held out from training (val_held_out: false in its "
            "manifest), so tuning on it would select on training data; prepare it with a held-out validation split"
        )


# ---------------------------------------------------------------------------------------------------- storage


def open_storage(url: str | None, folder: Path):
    """A journal file in ``folder`` (the default), a ``journal:PATH``, or an SQLAlchemy URL (``postgresql://``,
    ``mysql://``) with Optuna heartbeats and retries of trials whose process died."""
    optuna = optuna_module()
    if url is None or url.startswith("journal:") or "://" not in url:
        path = Path(url.removeprefix("journal:")) if url else folder / "journal.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite"):
        raise SvqbenchError(
            f"--storage {url}: SQLite does not serve parallel workers (Optuna's documentation says so); use the "
            "default journal file, journal:PATH on shared storage, or postgresql://..."
        )
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")  # psycopg 3, the driver the extra installs
    interval = int(os.environ.get(HEARTBEAT_ENV, "20"))
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.8
    try:
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=interval,
            grace_period=3 * interval,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRIES, inherit_intermediate_values=True
            ),
            engine_kwargs={"pool_pre_ping": True},
        )
    except ImportError as e:
        raise SvqbenchError(f"--storage {url}: its database driver is missing ({e}); pip install psycopg") from None
    except Exception as e:  # sqlalchemy's OperationalError and friends: the server is not reachable
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SvqbenchError(f"--storage {_hide_password(url)}: cannot connect: {first}") from None


def _hide_password(url: str) -> str:
    head, at, tail = url.rpartition("@")
    if not at or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, user = head.partition("//")
    return f"{scheme}//{user.split(':')[0]}:***@{tail}"


def heartbeats(storage: Any) -> bool:
    from optuna.storages import RDBStorage

    return isinstance(storage, RDBStorage)


def optuna_study(study: Study, searched: TunedRecipe, storage: Any, seed_offset: int = 0):
    """The Optuna study of one recipe (created on first use), with a sampler seeded from the study's seed and
    the number of trials so far (so concurrent workers do not all draw the same point)."""
    optuna = optuna_module()
    spec = _spec(study)
    seed = spec.seed * 1_000_003 + seed_offset
    if spec.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.first_trials, constant_liar=True)
    return optuna.create_study(
        study_name=f"{study.name}:{searched.label}",
        storage=storage,
        direction=spec.objective.resolved_direction,
        sampler=sampler,
        pruner=make_pruner(spec),
        load_if_exists=True,
    )


def make_pruner(spec: TuneSpec):
    optuna = optuna_module()
    interval = spec.validation_interval
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.first_trials, n_warmup_steps=interval - 1)
    if spec.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=interval)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=interval, max_resource=spec.steps)
    return optuna.pruners.NopPruner()


# ----------------------------------------------------------------------------------------------- accounting


def is_retry(trial: Any) -> bool:
    return "failed_trial" in trial.system_attrs


def is_surplus(trial: Any) -> bool:
    return bool(trial.user_attrs.get("surplus"))


def slot_trials(trials: list[Any]) -> list[Any]:
    """The trials that take a slot of the budget: every first attempt, not the retries of a dead one, not surplus."""
    return [t for t in trials if not is_retry(t) and not is_surplus(t)]


def original_number(trial: Any) -> int:
    """The trial's number, or for a retry the number of the trial it repeats (its run folder is that one's)."""
    return trial.system_attrs.get("failed_trial", trial.number)


def outcomes(trials: list[Any]) -> dict[int, Any]:
    """Each slot's final attempt: original number -> the latest trial of its retries (or itself)."""
    latest: dict[int, Any] = {}
    for trial in sorted((t for t in trials if not is_surplus(t)), key=lambda t: t.number):
        latest[original_number(trial)] = trial
    return latest


# ------------------------------------------------------------------------------------------------ the search


@dataclass
class Worker:
    """One ``svqbench tune`` process working through the recipes of a study."""

    study: Study
    spec: TuneSpec
    storage: Any
    device: torch.device
    data_root: Path | None
    echo: Callable[[str], None]
    trials: int
    quiet_training: bool = True

    def run(self, searched: list[TunedRecipe]) -> dict[str, Any]:
        """Every recipe's search in turn; a recipe whose last trials other workers are running is left for later
        (this worker goes on with the next one), then waited for, in case one of them dies."""
        summary, pending = {}, []
        for recipe in searched:
            ran = self.search(recipe, wait=False)
            if ran is None:
                pending.append(recipe)
                continue
            summary[recipe.label] = ran
            write_best_recipe(self.study, recipe, self.storage, self.echo)
        for recipe in pending:
            summary[recipe.label] = self.search(recipe, wait=True)
            write_best_recipe(self.study, recipe, self.storage, self.echo)
        return summary

    def search(self, recipe: TunedRecipe, wait: bool = True) -> dict[str, int] | None:
        """Run trials of ``recipe`` until its slots are all taken and no trial is left running anywhere: first the
        trials whose worker died, then new ones."""
        optuna = optuna_module()
        running_state, waiting_state = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING
        ran = 0
        while True:
            study = optuna_study(self.study, recipe, self.storage, len(self._trials(recipe)))
            if heartbeats(self.storage):
                optuna.storages.fail_stale_trials(study)  # dead workers' trials: failed, and queued again
            trials = study.get_trials(deepcopy=False)
            running = [t for t in trials if t.state == running_state]
            orphan = None if heartbeats(self.storage) else self._orphan(recipe, running)
            if orphan is not None:
                trial = optuna.trial.Trial(study, orphan._trial_id)
            elif len(slot_trials(trials)) < self.trials or any(t.state == waiting_state for t in trials):
                trial = study.ask()
                if not is_retry(self.storage.get_trial(trial._trial_id)) and self._slot(study, trial) >= self.trials:
                    trial.set_user_attr("surplus", True)  # another worker took the last slot first
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    continue
            elif running:
                if not wait:
                    return None  # others are running the last trials: come back once the other recipes are done
                time.sleep(POLL_SECONDS)  # wait, in case one of them dies
                continue
            else:
                return {"ran_here": ran}
            self.run_trial(study, recipe, trial)
            ran += 1

    def _trials(self, recipe: TunedRecipe) -> list[Any]:
        optuna = optuna_module()
        try:
            return optuna.load_study(study_name=f"{self.study.name}:{recipe.label}", storage=self.storage).get_trials(
                deepcopy=False
            )
        except KeyError:
            return []

    def _slot(self, study: Any, trial: Any) -> int:
        """How many slot-taking trials were asked for before this one."""
        trials = study.get_trials(deepcopy=False)
        return sum(1 for t in slot_trials(trials) if t.number < trial.number)

    def _orphan(self, recipe: TunedRecipe, running: list[Any]) -> Any | None:
        """A running trial whose worker is gone (older than the grace period, and its run lock free or its run folder
        absent), or None; :meth:`run_trial` then takes the lock (waiting out a worker that only just let it go)."""
        grace = float(os.environ.get(GRACE_ENV, "30"))
        for trial in running:
            started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
            if time.time() - started < grace:
                continue
            run_dir = self.run_dir(recipe, original_number(trial))
            if not run_dir.is_dir():  # nothing of it here (a journal carried to another machine): rerun it
                return trial
            lock = FileLock(str(run_dir / LOCK))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            lock.release()
            return trial
        return None

    def run_dir(self, recipe: TunedRecipe, number: int) -> Path:
        return self.spec.runs_dir(self.study.name) / recipe.label / f"trial-{number}"

    def run_trial(self, study: Any, recipe: TunedRecipe, trial: Any) -> None:
        """Train one trial in its run folder (resumed when a dead worker left a ``last.pt``) while holding the
        folder's lock, report each validation to the pruner, and tell Optuna the outcome."""
        number = original_number(self.storage.get_trial(trial._trial_id))
        run_dir = self.run_dir(recipe, number)
        try:
            with holding_run(run_dir, wait=float(os.environ.get(GRACE_ENV, "30"))), self._heartbeat(trial):
                self._run_held_trial(study, recipe, trial, number, run_dir)
        except RunHeld:  # acquiring it (the hold nests in this process, so nothing inside raises it)
            self.echo(f"{recipe.label} trial {number}: {run_dir} is held by another worker; leaving it")

    def _run_held_trial(self, study: Any, recipe: TunedRecipe, trial: Any, number: int, run_dir: Path) -> None:
        optuna = optuna_module()
        started = time.perf_counter()
        dimensions = self.spec.dimensions_for(recipe.label, recipe.entry.name)
        params = {key: dim.suggest(trial, key) for key, dim in dimensions.items()}
        trial.set_user_attr("run_dir", str(run_dir))
        try:
            value, run_id = self.train_and_score(trial, self.trial_recipe(recipe, params), run_dir)
        except optuna.TrialPruned as pruned:
            trial.set_user_attr("run_id", run_id_of(run_dir))
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            self.echo(self._line(recipe, number, f"pruned at step {pruned.args[0]}", started, params))
            return
        except SvqbenchError as e:  # a diverged trial: recorded, counted, not retried
            trial.set_user_attr("error", str(e))
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.echo(self._line(recipe, number, f"failed: {e}", started, params))
            return
        trial.set_user_attr("run_id", run_id)
        study.tell(trial, value)
        self.echo(self._line(recipe, number, f"{self.spec.objective.metric} {value:.5g}", started, params))

    def _line(self, recipe: TunedRecipe, number: int, outcome: str, started: float, params: dict[str, Any]) -> str:
        shown = ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in params.items())
        return (
            f"[{recipe.label} trial {number + 1}/{self.trials}] {outcome} in {time.perf_counter() - started:.0f} s "
            f"({shown})"
        )

    def trial_recipe(self, recipe: TunedRecipe, params: dict[str, Any]) -> Recipe:
        spec = self.spec
        # exactly `steps` steps, whatever the recipe's epochs (a step budget, as the study's)
        budget = [
            f"train.max_steps={spec.steps}",
            f"train.epochs={spec.steps}",
            f"train.val_every={spec.validation_interval}",
            # a checkpoint at every validation: a trial whose worker dies resumes there, not from its start
            f"train.checkpoint_every={spec.validation_interval}",
        ]
        chosen = [override(key, value) for key, value in params.items()]
        tuned = load_recipe(recipe.entry.name, [*recipe.overrides, *spec.set, *budget, *chosen])
        return with_seed(tuned, self.study.seeds[0])

    def train_and_score(self, trial: Any, recipe: Recipe, run_dir: Path) -> tuple[float, str]:
        """Train (or resume) the trial's run; its value: the best validation loss, or the objective metric of
        its selected checkpoint on the validation split."""
        optuna = optuna_module()
        objective = self.spec.objective

        def report(step: int, val_loss: float, model: torch.nn.Module) -> None:
            value = (
                val_loss
                if objective.metric == "val_loss"
                else validation_metric(model, recipe, self.device, objective.metric, self.data_root)
            )
            with warnings.catch_warnings():  # a resumed trial reports its last steps again: Optuna keeps the first
                warnings.filterwarnings("ignore", message="The reported value is ignored")
                trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(step)

        resume = RunDir(run_dir).last.is_file() and same_recipe(run_dir, recipe)
        train(
            recipe,
            run_dir,
            self.device,
            data_root=self.data_root,
            resume=resume,
            force=not resume,
            reporter=Reporter(self.quiet_training),
            on_validation=report,
        )
        run_id = run_id_of(run_dir)
        if objective.metric == "val_loss":
            values = [r["val_loss"] for r in read_log(RunDir(run_dir).log) if r.get("val_loss") is not None]
            if not values:
                raise SvqbenchError(f"{run_dir}: no validation was recorded")
            return (min(values) if objective.resolved_direction == "minimize" else max(values)), run_id
        from svqbench.engine.runs import LoadedRun

        selected = LoadedRun(run_dir, self.device)
        return validation_metric(selected.model, recipe, self.device, objective.metric, self.data_root), run_id

    @contextmanager
    def _heartbeat(self, trial: Any) -> Iterator[None]:
        """On a database, Optuna heartbeats for the trial while it runs (a dead worker's stop: its trial is stale)."""
        if not heartbeats(self.storage):
            yield
            return
        stop = threading.Event()
        interval = self.storage.get_heartbeat_interval() or 20

        def beat() -> None:
            while not stop.is_set():
                self.storage.record_heartbeat(trial._trial_id)
                stop.wait(interval)

        thread = threading.Thread(target=beat, daemon=True, name="optuna-heartbeat")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def run_id_of(run_dir: Path) -> str | None:
    """The run id in ``run_dir/run.json``, or None before training wrote it."""
    import json

    try:
        return json.loads(RunDir(run_dir).run_json.read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def same_recipe(run_dir: Path, recipe: Recipe) -> bool:
    from svqbench.config import read_yaml_file, with_defaults

    stored = RunDir(run_dir).recipe
    try:
        return stored.is_file() and with_defaults(read_yaml_file(stored, "recipe")) == recipe.to_dict()
    except SvqbenchError:
        return False


@torch.no_grad()
def validation_metric(
    model: torch.nn.Module, recipe: Recipe, device: torch.device, metric: str, data_root: Path | None
) -> float:
    """``metric`` of ``model`` over the validation windows training validates on (``train.val_samples`` of them,
    evenly spaced, or all), computed as ``eval`` computes it on test."""
    from svqbench.engine.batches import make_loader
    from svqbench.engine.machine import autocast
    from svqbench.metrics import MetricAccumulator
    from svqbench.models import forecast

    dataset = recipe.dataset
    info = data.info(dataset, data_root)
    accumulator = MetricAccumulator(
        (metric,),
        convention=recipe.eval.convention,
        frames_out=info.frames_out,
        device=device,
        denormalise=data.denormaliser(dataset, data_root),
        physical=info.physical,
        value_range=recipe.eval.value_range or data.value_range(dataset, data_root),
        variables=data.variables(dataset, data_root),
        latitudes=data.latitudes(dataset, data_root),
    )
    was_training = model.training
    model.eval()
    from torch.utils.data import Subset

    from svqbench.engine.batches import evenly_spaced

    windows = data.create(dataset, "val", data_root)
    windows = Subset(windows, evenly_spaced(len(windows), recipe.train.val_samples))  # those validations use
    loader = make_loader(windows, recipe.eval.batch_size, 0, device)
    for inputs, targets in loader:
        inputs, targets = inputs.to(device), targets.to(device)
        with autocast(device, recipe.eval.precision):
            pred = forecast(model, inputs, info.frames_out).frames
        accumulator.update(pred.float(), targets, inputs)
    model.train(was_training)
    return float(accumulator.result()["overall"][metric])


# ---------------------------------------------------------------------------------------------- the results


def best_trial(study: Any) -> Any | None:
    optuna = optuna_module()
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        return None
    pick = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
    return pick(done, key=lambda t: t.value)


def write_best_recipe(study: Study, recipe: TunedRecipe, storage: Any, echo: Callable[[str], None]) -> Path | None:
    """``BEST/LABEL.yaml``: the recipe with its best trial's overrides, at the study's full budget, headed by the
    trial and its value."""
    spec = _spec(study)
    found = best_trial(optuna_study(study, recipe, storage))
    if found is None:
        echo(f"{recipe.label}: no completed trial, so no best recipe")
        return None
    dimensions = spec.dimensions_for(recipe.label, recipe.entry.name)
    chosen = [override(key, dim.decode(found.params[key])) for key, dim in dimensions.items()]
    tuned = load_recipe(recipe.entry.name, [*recipe.entry.set, *chosen])
    content = tuned.to_dict()
    content["name"] = f"{recipe.entry.name}-tuned"
    import yaml

    header = (
        f"# The best of {len(outcomes(optuna_study(study, recipe, storage).get_trials(deepcopy=False)))} trials of "
        f"{recipe.entry.name} in study {study.name} (svqbench tune): trial {found.number}, validation "
        f"{spec.objective.metric} {found.value:.6g} after {spec.steps} steps\n"
        f"# ({found.user_attrs.get('run_dir', '')}, run {found.user_attrs.get('run_id', '')}); the recipe's own "
        f"budget applies. `svqbench sweep` of the study file retrains it over the study's seeds {list(study.seeds)}\n"
    )
    path = spec.best_dir(study.name) / f"{recipe.label}.yaml"
    write_text(path, header + yaml.safe_dump(content, sort_keys=False))
    echo(f"{recipe.label}: best trial {found.number} ({spec.objective.metric} {found.value:.5g}) -> {path}")
    return path


def trained_steps(trial: Any, budget: int) -> int:
    """The steps a trial trained, from the storage (so a journal carried to another machine counts them all):
    the budget for a complete trial, else its last reported step, or its run log's when that folder is here."""
    if trial.state == optuna_module().trial.TrialState.COMPLETE:
        return budget
    steps = max(trial.intermediate_values, default=0)
    if trial.user_attrs.get("run_dir"):
        log = read_log(RunDir(Path(trial.user_attrs["run_dir"])).log)
        steps = max([steps, *(r.get("step", 0) for r in log)])
    return int(steps)


def effort(study: Study, storage: Any, searched: list[TunedRecipe]) -> list[dict[str, Any]]:
    """Per recipe: slots used, completed, pruned, failed, retried, the steps trained, the best value and params."""
    optuna = optuna_module()
    spec_steps = _spec(study).steps
    state = optuna.trial.TrialState
    rows = []
    for recipe in searched:
        trials = optuna_study(study, recipe, storage).get_trials(deepcopy=False)
        final = outcomes(trials)
        steps = sum(trained_steps(trial, spec_steps) for trial in final.values())
        best = best_trial(optuna_study(study, recipe, storage))
        rows.append(
            {
                "recipe": recipe.entry.name,
                "label": recipe.label,
                "trials": len(final),
                "complete": sum(t.state == state.COMPLETE for t in final.values()),
                "pruned": sum(t.state == state.PRUNED for t in final.values()),
                "failed": sum(t.state == state.FAIL for t in final.values()),
                "running": sum(t.state in (state.RUNNING, state.WAITING) for t in final.values()),
                "retried": sum(is_retry(t) for t in trials),
                "steps": steps,
                "best_trial": best.number if best else None,
                "best_value": best.value if best else None,
                "best_params": dict(best.params) if best else {},
            }
        )
    return rows


def status_lines(study: Study, storage: Any, searched: list[TunedRecipe]) -> list[str]:
    """``tune --status``: every trial so far, from the storage, without running anything."""
    optuna = optuna_module()
    lines = []
    for recipe in searched:
        try:
            trials = optuna.load_study(study_name=f"{study.name}:{recipe.label}", storage=storage).get_trials()
        except KeyError:
            lines.append(f"{recipe.label}: no trials yet")
            continue
        lines.append(f"{recipe.label}: {len(outcomes(trials))} of {_spec(study).trials} trials")
        for trial in sorted(trials, key=lambda t: t.number):
            seconds = trial.duration.total_seconds() if trial.duration else None
            value = f" {trial.value:.5g}" if trial.value is not None else ""
            note = (
                " (surplus)"
                if is_surplus(trial)
                else f" (retry of {original_number(trial)})"
                if is_retry(trial)
                else ""
            )
            last = max(trial.intermediate_values, default=None)
            at = f" at step {last}" if trial.state == optuna.trial.TrialState.PRUNED and last is not None else ""
            params = ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in trial.params.items())
            elapsed = f" in {seconds:.0f} s" if seconds is not None else ""
            lines.append(f"  trial {trial.number}: {trial.state.name.lower()}{value}{at}{elapsed}{note}  {params}")
    return lines


def spec_summary(spec: TuneSpec) -> dict[str, Any]:
    """What the tuned table states of the search: the same for every model."""
    return {
        "trials": spec.trials,
        "steps": spec.steps,
        "objective": spec.objective.metric,
        "direction": spec.objective.resolved_direction,
        "pruner": spec.pruner,
        "sampler": spec.sampler,
        "seed": spec.seed,
        "space": {key: dim.model_dump(exclude_defaults=True, by_alias=True) for key, dim in spec.space.items()},
    }


def tune(
    study: Study,
    device: torch.device,
    data_root: Path | None = None,
    only: str | None = None,
    trials: int | None = None,
    extra: tuple[str, ...] = (),
    storage_url: str | None = None,
    echo: Callable[[str], None] = print,
    quiet_training: bool = True,
) -> dict[str, Any]:
    """Run this worker's share of the search; returns ``{"effort": [...], "best": {label: path}}``."""
    spec = _spec(study)
    searched = plan_search(study, only, extra)
    check_held_out(study.dataset, data_root)
    storage = open_storage(storage_url or spec.storage, spec.runs_dir(study.name))
    count = trials or spec.trials
    if trials is not None and trials < 1:
        raise SvqbenchError(f"--trials {trials}: valid: an integer >= 1")
    worker = Worker(study, spec, storage, device, data_root, echo, count, quiet_training)
    worker.run(searched)
    rows = effort(study, storage, plan_search(study, None, extra))  # every model's effort, whichever this worker ran
    write_json(
        spec.best_dir(study.name) / EFFORT_FILE, {"study": study.name, "spec": spec_summary(spec), "effort": rows}
    )
    return {"effort": rows, "best": {r.label: str(spec.best_dir(study.name) / f"{r.label}.yaml") for r in searched}}


def tuning_plots(study: Study, storage_url: str | None = None) -> list[dict[str, Any]]:
    """Per tuned recipe of the study: Optuna's optimisation history and parameter importances as matplotlib figures
    (importances by PED-ANOVA, which needs no scikit-learn; None with the reason when too few trials finished),
    and the best trial. Recipes without trials in the storage are left out."""
    optuna = optuna_module()
    from optuna.visualization import matplotlib as optuna_plots

    spec = _spec(study)
    storage = open_storage(storage_url or spec.storage, spec.runs_dir(study.name))
    found = []
    for entry in study.entries:
        try:
            search = optuna.load_study(study_name=f"{study.name}:{entry.folder_label}", storage=storage)
        except KeyError:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's "experimental" notes on its matplotlib plots
            history = optuna_plots.plot_optimization_history(search).figure
            try:
                importances = optuna_plots.plot_param_importances(
                    search, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
                ).figure
                reason = ""
            except (ValueError, RuntimeError) as e:
                importances, reason = None, str(e).splitlines()[0] if str(e) else type(e).__name__
        best = best_trial(search)
        found.append(
            {
                "label": entry.folder_label,
                "history": history,
                "importances": importances,
                "importances_missing": reason,
                "best": None if best is None else {"trial": best.number, "value": best.value, "params": best.params},
            }
        )
    return found
