"""Streaming evaluation of a run: batches -> metric sums on the device -> metrics.json -> leaderboard row.

Under torchrun each rank evaluates a contiguous share of the windows (each window exactly once) and the
metric sums are all-reduced; rank 0 writes.
"""

from __future__ import annotations

import inspect
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from svqbench import __version__, data
from svqbench.config import EvalConfig
from svqbench.engine.batches import make_loader
from svqbench.engine.machine import autocast, configure_backends
from svqbench.engine.runs import LoadedRun, RunDir, training_record
from svqbench.engine.world import World, join_world
from svqbench.errors import SvqbenchError
from svqbench.fileio import write_json
from svqbench.keyed import StepKey, perturb
from svqbench.metrics import MetricAccumulator, plot_horizon
from svqbench.metrics.fvd import FvdProtocol
from svqbench.models import count_parameters, forecast, plugins
from svqbench.models.svq import SVQ, SVQStats, code_weight_chunks
from svqbench.results import leaderboard, per_window
from svqbench.results.views import publish

EVAL_PERTURB_SEED = 20231206  # the seed of eval.perturb_ratio's draws: fixed, so every run sees the same inputs


@dataclass(frozen=True)
class EvalSettings:
    """One evaluation's options: each given one, else the recipe's ``eval`` section (see :func:`evaluate`)."""

    metrics: tuple[str, ...]
    split: str
    convention: str
    perturb_ratio: float
    batch_size: int
    precision: str
    value_range: tuple[float, float] | None
    lpips_weights: Path | None = None
    fvd: FvdProtocol | None = None
    fvd_weights: Path | None = None
    dataset: str = ""  # the prepared dataset evaluated on (the run's own, or --dataset OTHER)
    trained_on: str = ""  # the run's dataset
    frames_out: int = 0  # frames predicted (rolled out beyond the training horizon when larger)
    horizon: int = 0  # the frames the run was trained to predict

    @classmethod
    def resolve(
        cls,
        cfg: EvalConfig,
        metrics: tuple[str, ...] | None = None,
        split: str | None = None,
        convention: str | None = None,
        batch_size: int | None = None,
        value_range: tuple[float, float] | None = None,
        perturb_ratio: float | None = None,
        **weights: Any,
    ) -> "EvalSettings":
        perturb_ratio = cfg.perturb_ratio if perturb_ratio is None else perturb_ratio
        if not 0.0 <= perturb_ratio <= 1.0:
            raise SvqbenchError(f"--perturb {perturb_ratio}: valid: a share of input values between 0 and 1")
        return cls(
            tuple(metrics or cfg.metrics),
            split or cfg.split,
            convention or cfg.convention,
            perturb_ratio,
            batch_size or cfg.batch_size,
            cfg.precision,
            value_range or cfg.value_range,
            **weights,
        )

    @property
    def split_name(self) -> str:
        """The split as rows name it: ``test``; ``OTHER:test`` on another dataset; ``test/perturb=0.3`` for perturbed
        inputs; ``test/frames=30`` beyond the training horizon. Rows of different names never rank together."""
        name = self.split if self.dataset == self.trained_on else f"{self.dataset}:{self.split}"
        if self.perturb_ratio:
            name += f"/perturb={self.perturb_ratio:g}"
        return name if self.frames_out == self.horizon else f"{name}/frames={self.frames_out}"

    def for_run(
        self, run: LoadedRun, dataset: str | None, frames: int | None, data_root: Path | None
    ) -> "EvalSettings":
        """These settings on ``dataset`` (default the run's) over ``frames`` predicted frames (default the run's
        horizon), after checking that its clips fit the run: the same input frames and frame shape, and at least
        ``frames`` targets per window."""
        import dataclasses

        dataset = dataset or run.recipe.dataset
        trained = run.info
        if frames is not None and frames < 1:
            raise SvqbenchError(f"--frames {frames}: valid: an integer >= 1 (default: the run's {trained.frames_out})")
        frames = frames or trained.frames_out
        other = data.info(dataset, data_root) if dataset != run.recipe.dataset else trained
        if dataset != run.recipe.dataset:
            data.load_manifest(dataset, data_root)  # prepared, with a one-line hint when not
            mine = (trained.frames_in, trained.channels, trained.height, trained.width)
            theirs = (other.frames_in, other.channels, other.height, other.width)
            if tuple(other.targets) != tuple(trained.targets):
                raise SvqbenchError(
                    f"--dataset {dataset}: its target channels are {list(other.targets) or 'all'}, the run "
                    f"{run.dir.name} predicts {list(trained.targets) or 'all'}"
                )
            if mine != theirs:
                shape = "{} input frames of {}x{}x{}"
                raise SvqbenchError(
                    f"--dataset {dataset}: its clips are {shape.format(*theirs)} (CxHxW); the run {run.dir.name} takes "
                    f"{shape.format(*mine)}: prepare it at the run's shape (e.g. --frames {trained.frames_in}:N)"
                )
        if frames > other.frames_out:
            raise SvqbenchError(
                f"--frames {frames}: dataset {dataset!r} has {other.frames_out} target frames per window; prepare one "
                f"with more (svqbench prep ... --frames {trained.frames_in}:{frames} --name NAME) and pass "
                "--dataset NAME"
            )
        return dataclasses.replace(
            self, dataset=dataset, trained_on=run.recipe.dataset, frames_out=frames, horizon=trained.frames_out
        )


@torch.no_grad()
def evaluate(
    run_dir: Path,
    device: torch.device,
    metrics: tuple[str, ...] | None = None,
    split: str | None = None,
    convention: str | None = None,
    data_root: Path | None = None,
    batch_size: int | None = None,
    lpips_weights: Path | None = None,
    plot: bool = False,
    update_leaderboard: bool = True,
    svq_stats: bool = False,
    value_range: tuple[float, float] | None = None,
    perturb_ratio: float | None = None,
    fvd: FvdProtocol | None = None,
    fvd_weights: Path | None = None,
    dataset: str | None = None,
    frames: int | None = None,
) -> dict[str, Any]:
    """Evaluate the selected checkpoint (``train.select``) of ``run_dir`` on a split; writes ``run_dir/metrics.json``
    and ``run_dir/eval/SPLIT-CONVENTION.npz`` (:mod:`svqbench.results.per_window`: one float64 array (N_windows,) per
    metric in window order, each window's bootstrap unit, and the report itself, in one atomic file).

    Unset arguments fall back to the recipe's ``eval`` section. The split is streamed in
    batches; only running sums live in memory. ``svq_stats`` adds SVQ code-weight diagnostics
    (:class:`SVQStats` over every latent the SVQ layer sees) under ``"svq_stats"``. ``value_range``
    (physical LO, HI) lets SSIM/PSNR/LPIPS run on physical fields, which are refused without one.
    ``perturb_ratio`` (default ``eval.perturb_ratio``) perturbs the inputs as training's ``perturb_ratio`` does,
    keyed by test window, so every model sees the same perturbed inputs; such rows name their split
    ``SPLIT/perturb=RATIO`` and never mix with clean ones. ``fvd`` (with "fvd" in ``metrics``) is its protocol,
    default predicted frames of every window; the report's ``"fvd"`` holds the value, its interval and protocol.
    ``dataset`` evaluates on another prepared dataset of the run's clip shape (generalisation; default the run's),
    ``frames`` over that many predicted frames, rolling the model out on its own predictions beyond its training
    horizon (the windows need that many targets); the rows' split then says so (:attr:`EvalSettings.split_name`).
    """
    world, device = join_world(device)
    configure_backends()  # fp32 without TF32: a CUDA evaluation equals the CPU's
    run = LoadedRun(run_dir, device)
    settings = EvalSettings.resolve(
        run.recipe.eval,
        metrics,
        split,
        convention,
        batch_size,
        value_range,
        perturb_ratio,
        lpips_weights=lpips_weights,
        fvd=fvd,
        fvd_weights=fvd_weights,
    ).for_run(run, dataset, frames, data_root)
    test_set = checked_split(settings.dataset, settings.split, data_root, world)
    shard = Subset(test_set, world.shard(len(test_set)))
    accumulator = make_accumulator(run, settings, data_root, (shard.indices.start, len(test_set)), device)
    stats = SVQStats() if svq_stats else None
    started = time.perf_counter()
    loader = make_loader(shard, settings.batch_size, run.recipe.train.num_workers, device)
    climate = data.climatology(settings.dataset, settings.split, data_root) if "acc" in settings.metrics else None
    stream(run, settings, loader, accumulator, stats, shard.indices.start, world, climate)
    report = make_report(run, settings, accumulator.result(), stats, time.perf_counter() - started)
    values = world.gather_concatenated(accumulator.per_window())  # before rank > 0 returns: a collective
    if world.is_main:
        write_evaluation(run, settings, report, values, accumulator, data_root, update_leaderboard, plot)
    return report


def checked_split(dataset: str, split: str, data_root: Path | None, world: World) -> Dataset:
    """The split's windows, after its files passed their checksums and it holds a window per process."""
    data.check_checksums(dataset, data_root, split)  # before anything parses the files
    test_set = data.create(dataset, split, data_root)
    if len(test_set) < world.size:
        raise SvqbenchError(f"the {split} split has {len(test_set)} windows, fewer than the {world.size} processes")
    return test_set


def make_accumulator(
    run: LoadedRun, settings: EvalSettings, data_root: Path | None, fvd_windows: tuple[int, int], device: torch.device
) -> MetricAccumulator:
    """The streaming metrics of ``settings``, with the dataset's de-normalisation, range, variables, latitudes."""
    dataset = settings.dataset
    return MetricAccumulator(
        settings.metrics,
        convention=settings.convention,
        frames_out=settings.frames_out,
        device=device,
        denormalise=data.denormaliser(dataset, data_root),
        physical=run.info.physical,
        value_range=settings.value_range or data.value_range(dataset, data_root),
        variables=data.variables(dataset, data_root),
        latitudes=data.latitudes(dataset, data_root),
        lpips_weights=settings.lpips_weights,
        fvd=settings.fvd,
        fvd_weights=settings.fvd_weights,
        fvd_windows=fvd_windows,
    )


def stream(
    run: LoadedRun,
    settings: EvalSettings,
    loader: DataLoader,
    accumulator: MetricAccumulator,
    stats: SVQStats | None,
    first_window: int,
    world: World,
    climate: Any = None,
) -> None:
    """Forecast every batch (inputs (B, T_in, C, H, W) -> (B, T_out, C, H, W)) and accumulate its metrics;
    refuses a run whose predictions are not finite; sums the ranks' metrics. ``climate``: the split's
    :class:`~svqbench.data.climatology.ClimatologyLookup`, for ACC."""
    device = run.device
    non_finite = torch.zeros((), dtype=torch.float64, device=device)  # predicted values that are NaN or infinite
    with recording_svq_inputs(run.model, stats, run.recipe.model_name):
        for inputs, targets in loader:
            inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            key = StepKey(EVAL_PERTURB_SEED, 0, first_window, len(inputs))
            inputs = perturb(inputs, settings.perturb_ratio, key)
            windows = np.arange(first_window, first_window + len(inputs))
            first_window += len(inputs)
            with autocast(device, settings.precision):  # eval.precision: never the training precision
                pred = forecast(run.model, inputs, settings.frames_out).frames
            non_finite += (~torch.isfinite(pred)).sum()
            normals = climate.for_windows(windows, settings.frames_out) if climate is not None else None
            context = inputs[:, :, list(run.info.targets)] if run.info.targets else inputs  # the target channels' past
            accumulator.update(pred.float(), targets[:, : settings.frames_out], context, normals)
    if world.sum(non_finite).item():
        raise SvqbenchError(
            f"{run.checkpoint_file}: {int(non_finite.item())} predicted values are not finite "
            "(NaN or infinite); the run diverged: retrain it with a lower train.lr or train.clip_grad"
        )
    if world.size > 1:
        accumulator.all_reduce()


def make_report(
    run: LoadedRun, settings: EvalSettings, result: dict[str, Any], stats: SVQStats | None, seconds: float
) -> dict[str, Any]:
    """``metrics.json``: which run, checkpoint and split, and the metrics' overall and per-frame values."""
    report = {
        "run": run.dir.name,
        "run_id": run.meta["run_id"],
        "dataset": settings.dataset,
        **({"trained_on": settings.trained_on} if settings.trained_on != settings.dataset else {}),
        "frames_out": settings.frames_out,
        "horizon": settings.horizon,
        "split": settings.split_name,
        "input_perturb": settings.perturb_ratio,
        "checkpoint": run.checkpoint_file.name,
        "selection": run.selection,
        "epoch": run.epoch,
        "model": plugins.label(run.meta.get("model_plugin"), run.recipe.model_name),
        "recipe": run.recipe.name,
        "parameters": count_parameters(run.model),
        "seconds": round(seconds, 3),
        **result,
    }
    if stats is not None:
        report["svq_stats"] = stats.result()
    return report


def write_evaluation(
    run: LoadedRun,
    settings: EvalSettings,
    report: dict[str, Any],
    values: dict[str, np.ndarray],
    accumulator: MetricAccumulator,
    data_root: Path | None,
    update_leaderboard: bool,
    plot: bool,
) -> None:
    """The per-window file, ``metrics.json``, the horizon plot and the leaderboard row, in that order; a damaged
    leaderboard is refused before anything is written."""
    dataset = run.recipe.dataset  # rows go to the run's leaderboard; their split names another dataset
    units, unit = data.window_units(settings.dataset, settings.split, data_root)
    if accumulator.fvd is not None:
        report["fvd"] = accumulator.fvd.summary(units, unit)
    manifest = data.load_manifest(settings.dataset, data_root)
    row = leaderboard_row(run, report, manifest) if update_leaderboard else None
    if update_leaderboard:
        leaderboard.check_table(dataset)
    per_window.write(run.dir, values, units, unit, report)  # first: it carries the report, so it is never stale
    write_json(RunDir(run.dir).metrics, report)
    if plot:
        plot_horizon(report["per_frame"], run.dir / "horizon.png", trained=settings.horizon)
    if row is not None:
        publish(dataset, row)


def protocol_name(manifest: dict[str, Any]) -> str:
    """The short name of a prepared dataset's split protocol: its ``protocol`` option, else that option's default."""
    if "protocol" in manifest.get("options", {}):
        return str(manifest["options"]["protocol"])
    spec = data.DATASETS.get(manifest["spec"]) if manifest.get("spec") in data.DATASETS else None
    parameter = inspect.signature(spec.prepare).parameters.get("protocol") if spec else None
    return str(parameter.default) if parameter is not None else "default"


def leaderboard_row(run: LoadedRun, report: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to cite one evaluation: the run, its data protocol, training, selection and metrics."""
    meta, recipe, info = run.meta, run.recipe, run.info
    options = manifest.get("options", {})
    trained = training_record(run.dir)
    return {
        "run_id": meta["run_id"],
        "run": run.dir.name,
        "recipe": recipe.name,
        "overrides": " ".join(meta.get("overrides", recipe.overrides)),
        "model": report["model"],
        "params": report["parameters"],
        "seed": meta.get("seed", recipe.train.seed),
        "protocol": protocol_name(manifest),
        "val_held_out": bool(meta.get("val_held_out", manifest.get("val_held_out", True))),
        "frames": f"{info.frames_in}->{report.get('frames_out', info.frames_out)}",
        "horizon": report.get("horizon", info.frames_out),
        **({"eval_dataset": report["dataset"]} if report.get("trained_on") else {}),
        "size": f"{info.channels}x{info.height}x{info.width}",
        "data_options": " ".join(f"{k}={v}" for k, v in sorted(options.items())),
        "selection": run.selection,
        "selected_epoch": run.epoch,
        "selected_step": run.step,
        "epochs_trained": trained["epoch"],
        "steps_trained": trained["step"],
        "train_seconds": trained["train_seconds"],
        "precision": meta.get("precision", recipe.train.precision),
        "convention": report["convention"],
        "split": report["split"],
        **({"fvd_protocol": report["fvd"]["protocol"]["id"]} if "fvd" in report else {}),
        "svqbench_version": meta.get("svqbench_version", __version__),
        "git_commit": meta.get("git_commit"),
        "trained_at": meta.get("created"),
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "path": str(run.dir.resolve()),  # the leaderboard stores it relative to its own folder
        **plugin_columns(meta.get("model_plugin")),
        **imported_columns(meta.get("imported")),
        **({"trusted_src": "; ".join(manifest["trusted_src"])} if manifest.get("trusted_src") else {}),
        **report["overall"],
    }


def imported_columns(record: dict[str, Any] | None) -> dict[str, Any]:
    """Weights svqbench did not train (``import-openstl``): where from, and the source file's sha256."""
    if not record:
        return {}
    return {"imported_weights": f"{record['format']} sha256:{record['sha256'][:12]}"}


def plugin_columns(record: dict[str, Any] | None) -> dict[str, Any]:
    """A plugin model's import path (with its package for an entry point) and source sha256; none for built-ins."""
    if not record:
        return {}
    where = (
        f"{record['name']} = {record['import']} ({record['distribution']})"
        if record["kind"] == "entry_point"
        else record["import"]
    )
    return {"plugin": where, "plugin_sha256": record.get("sha256") or ""}


@contextmanager
def recording_svq_inputs(model: nn.Module, stats: SVQStats | None, model_name: str) -> Iterator[None]:
    """While active, every latent batch entering the model's SVQ layer feeds ``stats``.

    Code weights are computed a few frames at a time, so memory stays bounded whatever the codebook size.
    """
    if stats is None:
        yield
        return
    layers = [m for m in model.modules() if isinstance(m, SVQ)]
    if not layers:
        raise SvqbenchError(f"--svq-stats: model {model_name!r} has no SVQ layer; use it with simvp_svq runs")

    def record(layer: SVQ, args: tuple[torch.Tensor, ...]) -> None:
        latent = args[0]
        stats.update_from_chunks(lambda: code_weight_chunks(layer, latent, stats.max_chunk_elements))

    handles = [layer.register_forward_pre_hook(record) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
