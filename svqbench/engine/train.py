"""The one training loop. :func:`train` reads top to bottom: set up, start or resume a
:class:`TrainState`, then per batch :func:`train_step`, :func:`validate` and :func:`save` at their intervals.

Exact resume: a checkpoint holds everything the next step depends on (weights, optimiser, schedule, grad
scaler, position in the epoch, best value, every RNG state), and the batch order is a function of
(seed, epoch) (see batches.py). Under torchrun every rank trains on its slice of the same global batch and
DistributedDataParallel averages the gradients, so the world size does not change the result. Every random
draw inside a step (drop path, dropout, sampling coins, ``train.perturb_ratio``) is keyed by (seed, step,
index of the sample in the global batch) through :mod:`svqbench.keyed`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset

from svqbench import data
from svqbench.config import Recipe, TrainConfig, with_defaults
from svqbench.data.base import DatasetInfo
from svqbench.engine.batches import (
    PlannedBatches,
    epoch_aware,
    evenly_spaced,
    make_loader,
    rank_batches,
    steps_per_epoch,
)
from svqbench.engine.global_batchnorm import globalise_batchnorm
from svqbench.engine.loggers import TrainingLoggers, check_installed, open_loggers
from svqbench.engine.losses import LOSSES, training_loss
from svqbench.engine.machine import autocast, configure_backends, is_out_of_memory
from svqbench.engine.runs import (
    RESUMABLE_KEYS,
    RunDir,
    holding_run,
    holds_run,
    load_checkpoint,
    read_log,
    refuse_links,
    remove_run,
    run_meta,
    save_checkpoint,
    save_recipe,
)
from svqbench.engine.step import StepSettings, optimiser_step
from svqbench.engine.world import InterruptRequest, World, join_world, restore_rng_state, rng_state
from svqbench.errors import SvqbenchError
from svqbench.fileio import write_json, write_text
from svqbench.models import count_parameters, create_model, forecast
from svqbench.models.plugins import copy_into_run, plugin_record
from svqbench.progress import Reporter

CRASH_AT_STEP = "SVQBENCH_TEST_CRASH_AT_STEP"  # crash tests: the process SIGKILLs itself after this step
INTERRUPT_CHECK_EVERY = 20  # under torchrun, steps between the all-reduces that agree on a Ctrl-C


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C, after the checkpoint was written; its message says how to continue."""


@dataclass
class Setup:
    """What stays fixed during a run."""

    recipe: Recipe
    run_dir: Path
    device: torch.device
    world: World
    info: DatasetInfo
    train_set: Dataset
    val_set: Dataset  # this rank's share of the validation windows
    train_batches: PlannedBatches  # this rank's index lists of the current pass, set before each
    train_loader: DataLoader  # built once: its workers persist across epochs (unless the dataset changes per epoch)
    val_loader: DataLoader
    batch_size: int  # global
    steps_per_epoch: int
    total_steps: int
    val_held_out: bool
    reporter: Reporter
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # train.loss: what validation measures
    train_loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # what a step minimises (with regularisers)
    loggers: TrainingLoggers = field(default_factory=TrainingLoggers)  # train.loggers, opened once the run is known
    # called after every validation with (step, validation loss, the bare model); may raise to stop the run
    # (a tuning trial that its pruner stops)
    on_validation: Callable[[int, float, nn.Module], None] | None = None

    @property
    def cfg(self) -> TrainConfig:
        return self.recipe.train


@dataclass
class TrainState:
    """What changes during a run; all of it goes into a checkpoint."""

    model: nn.Module  # the bare model: checkpoints, validation
    module: nn.Module  # what a step calls: the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer | None
    scheduler: Any
    scaler: torch.amp.GradScaler
    meta: dict[str, Any]
    epoch: int = 0  # completed epochs = index of the epoch in progress
    position: int = 0  # batches of that epoch already done
    step: int = 0
    best_val: float = math.inf
    stale_validations: int = 0  # validations since the last improvement
    loss_sum: torch.Tensor | float = 0.0  # training loss since the last log record, summed over samples (on the device)
    loss_samples: int = 0
    grad_norm: torch.Tensor | None = None  # not saved: of the latest step the loggers record
    # on the device: first step with a non-finite loss, gradient or weight, else -1
    diverged_at: torch.Tensor | None = None
    clock: float = field(default_factory=time.perf_counter)  # not saved: wall time since the last save
    record_clock: float = field(default_factory=time.perf_counter)


def train(
    recipe: Recipe,
    run_dir: Path,
    device: torch.device,
    data_root: Path | None = None,
    resume: bool = False,
    reporter: Reporter | None = None,
    force: bool = False,
    on_validation: Callable[[int, float, nn.Module], None] | None = None,
) -> Path:
    """Train ``recipe`` into ``run_dir``, or ``resume`` the run there; returns ``run_dir``.

    A folder that already holds a run is refused unless ``force`` (which replaces it). Ctrl-C writes
    ``last.pt`` and raises :class:`TrainingInterrupted`. ``on_validation(step, val_loss, model)`` runs after each
    validation (rank 0 and every other rank alike); an exception it raises ends the run there.
    """
    run_dir = Path(run_dir)
    check_installed(recipe.train.loggers)
    world, device = join_world(device)
    configure_backends(recipe.train.deterministic)
    setup = make_setup(recipe, run_dir, device, world, data_root, reporter or Reporter())
    setup.on_validation = on_validation
    refuse_links(run_dir)
    with contextlib.ExitStack() as held:
        if world.is_main:  # one process trains a run folder at a time (under torchrun, rank 0 holds it)
            held.enter_context(holding_run(run_dir))
        return _claim_and_train(setup, resume, force)


def _claim_and_train(setup: Setup, resume: bool, force: bool) -> Path:
    run_dir = setup.run_dir
    claim_run_dir(setup, resume, force)
    state = resume_state(setup) if resume else fresh_state(setup)
    with open_loggers(setup, state, resume) as setup.loggers:
        if state.optimizer is None:  # nothing to optimise (persistence): its validation loss, once
            record(setup, state, validate(setup, state))
            save(setup, state, RunDir.LAST)
            return run_dir
        with InterruptRequest().active() as interrupt:
            while state.step < setup.total_steps and not stopped_early(setup, state):
                run_epoch(setup, state, interrupt)
    return run_dir


def run_epoch(setup: Setup, state: TrainState, interrupt: InterruptRequest) -> None:
    """The rest of the current epoch (or of the run, when it ends first)."""
    cfg = setup.cfg
    count = min(setup.steps_per_epoch - state.position, setup.total_steps - state.step)
    epochs = math.ceil(setup.total_steps / setup.steps_per_epoch)
    with setup.reporter.epoch(state.epoch + 1, epochs, count) as bar:
        for inputs, targets in epoch_batches(setup, state, count):
            loss = checked_step(setup, state, inputs, targets)
            bar.advance(loss, setup.batch_size)
            setup.loggers.after_step(setup, state, loss)
            boundary = state.position == setup.steps_per_epoch or state.step == setup.total_steps
            if state.position == setup.steps_per_epoch:
                state.epoch, state.position = state.epoch + 1, 0
            due = (cfg.val_every and state.step % cfg.val_every == 0) or (not cfg.val_every and boundary)
            stop = interrupted(setup, state, interrupt)
            checkpoint_due = boundary or stop or (cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0)
            if due or boundary or checkpoint_due or state.step == setup.total_steps:
                check_finite(setup, state)  # before anything is validated, logged or written
            val = validate(setup, state) if due or state.step == setup.total_steps else None
            if val is not None or boundary:
                record(setup, state, val)
            if val is not None and setup.on_validation is not None:
                setup.on_validation(state.step, val, state.model)  # after the record: a pruned trial keeps its log
            if checkpoint_due or stopped_early(setup, state):
                save(setup, state, RunDir.LAST)
            if os.environ.get(CRASH_AT_STEP) == str(state.step):
                os.kill(os.getpid(), signal.SIGKILL)
            if stop:
                raise TrainingInterrupted(
                    f"interrupted at step {state.step}; {setup.run_dir / 'last.pt'} written, "
                    f"continue with: svqbench train --resume {setup.run_dir}"
                )
            if stopped_early(setup, state):
                return


def train_step(setup: Setup, state: TrainState, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One optimiser step (:func:`~svqbench.engine.step.optimiser_step`) on this rank's slice (B/world, T, C, H, W)
    of a global batch; returns its mean loss as a device scalar (nothing here waits for the device: divergence is
    a device flag, see :func:`check_finite`)."""
    cfg, device = setup.cfg, setup.device
    inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
    result = optimiser_step(
        state.module,
        state.model,
        state.optimizer,
        state.scaler,
        setup.train_loss_fn,
        inputs,
        targets,
        step_settings(cfg),
        state.step,
        setup.world.rank * (setup.batch_size // setup.world.size),
        setup.world,
        want_grad_norm=setup.loggers.wants_grad_norm(state.step + 1),
    )
    if result.grad_norm is not None:
        state.grad_norm = result.grad_norm
    state.scheduler.step()
    note_divergence(
        state, result.loss, result.total_grad_norm, [p for p in state.model.parameters() if p.requires_grad]
    )
    state.step, state.position = state.step + 1, state.position + 1
    state.loss_sum = state.loss_sum + result.loss.double() * setup.batch_size
    state.loss_samples += setup.batch_size
    return result.loss


def step_settings(cfg: TrainConfig) -> StepSettings:
    """The ``train.*`` settings one optimiser step reads."""
    return StepSettings(cfg.seed, cfg.precision, cfg.perturb_ratio, cfg.clip_grad)


def note_divergence(
    state: TrainState, loss: torch.Tensor, grad_norm: torch.Tensor | None, weights: list[torch.Tensor]
) -> None:
    """Set the device flag ``state.diverged_at`` to this step when the loss, gradients or weights are not finite."""
    sums = [loss.float()] + ([grad_norm.float()] if grad_norm is not None else [])
    sums += [torch.stack(torch._foreach_norm([w.detach() for w in weights])).sum().float()] if weights else []
    bad = ~torch.isfinite(torch.stack(sums).sum())
    if state.diverged_at is None:
        state.diverged_at = torch.full((), -1, dtype=torch.int64, device=loss.device)
    first = (state.diverged_at < 0) & bad
    state.diverged_at = torch.where(first, torch.full_like(state.diverged_at, state.step), state.diverged_at)


def check_finite(setup: Setup, state: TrainState) -> None:
    """Stop a diverged run before a non-finite state is validated, logged or checkpointed (the host reads the
    device flag here only); the last finite checkpoint stays in place."""
    step = -1 if state.diverged_at is None else int(state.diverged_at.item())
    if step >= 0:
        raise divergence(setup, step + 1, "non-finite loss, gradient or weights")


def divergence(setup: Setup, step: int, cause: str) -> SvqbenchError:
    """The one-line error of a diverged run: the step, what was kept, the levers."""
    kept = RunDir(setup.run_dir).last
    left = f"{kept} keeps the last finite state" if kept.is_file() else "no checkpoint was written"
    return SvqbenchError(
        f"training diverged at step {step} ({cause}); {left}; lower train.lr "
        f"(now {setup.cfg.lr:g}) or set train.clip_grad (e.g. 1.0)"
    )


def checked_step(setup: Setup, state: TrainState, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """:func:`train_step`, with running out of memory as a one-line error."""
    try:
        return train_step(setup, state, inputs, targets)
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        per_process = f" ({setup.batch_size // setup.world.size} per process)" if setup.world.size > 1 else ""
        raise SvqbenchError(
            f"out of memory at train.batch_size={setup.batch_size}{per_process} on {setup.device}; "
            "lower it, e.g. --set train.batch_size=" + str(max(1, setup.batch_size // 2))
        ) from None


@torch.no_grad()
def validate(setup: Setup, state: TrainState) -> float:
    """Mean loss over the (subset of the) val split; keeps the best value, writes ``best.pt`` on improvement."""
    model, device = state.model, setup.device
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss x windows, windows
    for inputs, targets in setup.val_loader:
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast(device, setup.cfg.precision):
            pred = forecast(model, inputs, setup.info.frames_out).frames
        sums += torch.stack(
            [
                setup.loss_fn(pred.float(), targets).double() * len(inputs),
                torch.tensor(len(inputs), dtype=torch.float64, device=device),
            ]
        )
    model.train()
    total, windows = setup.world.sum(sums).tolist()
    val = total / max(windows, 1)
    if not math.isfinite(val):
        raise divergence(setup, state.step, f"validation loss {val}")
    if val < state.best_val:
        state.best_val, state.stale_validations = val, 0
        save(setup, state, RunDir.BEST)
    else:
        state.stale_validations += 1
        if stopped_early(setup, state):
            setup.reporter.message(
                f"early stop at step {state.step}: {state.stale_validations} validations "
                f"without improvement (train.patience={setup.cfg.patience})"
            )
    setup.loggers.after_validation(setup, state, val)
    return val


def stopped_early(setup: Setup, state: TrainState) -> bool:
    return bool(setup.cfg.patience) and state.stale_validations >= setup.cfg.patience


def interrupted(setup: Setup, state: TrainState, interrupt: InterruptRequest) -> bool:
    """Whether any rank saw Ctrl-C (all ranks must stop at the same step: under torchrun they agree every
    :data:`INTERRUPT_CHECK_EVERY` steps and at epoch ends)."""
    if setup.world.size == 1:
        return interrupt.requested
    if state.step % INTERRUPT_CHECK_EVERY and state.position:  # an all-reduce waits for every rank: not every step
        return False
    flag = torch.tensor([float(interrupt.requested)], device=setup.device)
    return setup.world.sum(flag).item() > 0


def record(setup: Setup, state: TrainState, val: float | None) -> None:
    """Append one line to log.jsonl: training loss since the last line, validation loss when measured."""
    now = time.perf_counter()
    seconds = now - state.record_clock
    line = {
        "epoch": state.epoch + (1 if state.position else 0),
        "step": state.step,
        "train_loss": float(state.loss_sum) / state.loss_samples if state.loss_samples else None,
        "val_loss": val,
        "lr": state.optimizer.param_groups[0]["lr"] if state.optimizer else None,
        "samples_per_s": state.loss_samples / seconds if state.loss_samples else None,
        "seconds": round(seconds, 3),
    }
    state.loss_sum, state.loss_samples, state.record_clock = 0.0, 0, now
    if setup.world.is_main:
        with (RunDir(setup.run_dir).log).open("a") as f:
            f.write(json.dumps(line) + "\n")
        setup.reporter.epoch_done(line)


def save(setup: Setup, state: TrainState, name: str) -> None:
    """Write checkpoint ``name`` (atomically; rank 0) and the progress in run.json."""
    rank_rng = setup.world.gather_object(rng_state(setup.device))  # every rank takes part
    if not setup.world.is_main:
        return
    now = time.perf_counter()
    state.meta.update(
        step=state.step,
        epoch=state.epoch,
        train_seconds=round(state.meta.get("train_seconds", 0.0) + now - state.clock, 3),
    )
    state.clock = now
    save_checkpoint(
        setup.run_dir / name,
        model=state.model.state_dict(),
        optimizer=state.optimizer.state_dict() if state.optimizer else {},
        scheduler=state.scheduler.state_dict() if state.scheduler else {},
        scaler=state.scaler.state_dict(),
        epoch=state.epoch,
        position=state.position,
        step=state.step,
        total_steps=setup.total_steps,
        best_val=state.best_val,
        stale_validations=state.stale_validations,
        loss_sum=float(state.loss_sum),
        loss_samples=state.loss_samples,
        rng=rank_rng[0],
        rank_rng=rank_rng,
        sampler={"seed": setup.cfg.seed, "epoch": state.epoch, "position": state.position},
        meta=state.meta,
        recipe=setup.recipe.to_dict(),
        info=setup.info.to_dict(),
        parameters=count_parameters(state.model),
    )
    write_json(RunDir(setup.run_dir).run_json, state.meta)


def epoch_batches(setup: Setup, state: TrainState, count: int):
    """This rank's slices of the next ``count`` global batches of the current epoch."""
    cfg = setup.cfg
    if epoch_aware(setup.train_set) is not None:
        epoch_aware(setup.train_set).set_epoch(state.epoch)
    setup.train_batches.batches = rank_batches(
        len(setup.train_set), setup.batch_size, cfg.seed, state.epoch, state.position, count, setup.world
    )
    setup.train_loader.generator.manual_seed(cfg.seed * 1000003 + state.epoch)  # worker seeds (non-persistent)
    return setup.train_loader


def make_setup(
    recipe: Recipe, run_dir: Path, device: torch.device, world: World, data_root: Path | None, reporter: Reporter
) -> Setup:
    cfg = recipe.train
    if cfg.precision == "fp16" and device.type != "cuda":
        raise SvqbenchError(f"train.precision=fp16 needs a CUDA GPU (its grad scaler); on {device} use bf16 or fp32")
    for split in ("train", "val"):  # once per run: flipped bytes are found before they become weights
        data.check_checksums(recipe.dataset, data_root, split)
    train_set = data.create(recipe.dataset, "train", data_root)
    if cfg.train_samples:
        train_set = Subset(train_set, range(min(cfg.train_samples, len(train_set))))
    batch_size = min(cfg.batch_size, len(train_set))
    if batch_size % world.size:
        raise SvqbenchError(
            f"train.batch_size={batch_size} is the global batch; {world.size} processes cannot "
            f"share it evenly: use a multiple of {world.size}"
        )
    val_set = data.create(recipe.dataset, "val", data_root)
    val_windows = evenly_spaced(len(val_set), cfg.val_samples)
    val_share = Subset(val_set, [val_windows[i] for i in world.shard(len(val_windows))])
    spe = steps_per_epoch(len(train_set), batch_size)
    train_batches = PlannedBatches()
    return Setup(
        recipe=recipe,
        run_dir=run_dir,
        device=device,
        world=world,
        info=data.info(recipe.dataset, data_root),
        train_set=train_set,
        val_set=val_share,
        train_batches=train_batches,
        # an epoch-aware dataset draws new clips per epoch: its workers must copy it anew each epoch
        train_loader=make_loader(
            train_set, 0, cfg.num_workers, device, train_batches, persistent=epoch_aware(train_set) is None
        ),
        val_loader=make_loader(val_share, max(1, batch_size // world.size), cfg.num_workers, device, persistent=True),
        batch_size=batch_size,
        steps_per_epoch=spe,
        total_steps=min(cfg.epochs * spe, cfg.max_steps or math.inf),
        val_held_out=data.load_manifest(recipe.dataset, data_root).get("val_held_out", True),
        reporter=reporter if world.is_main else Reporter(quiet=True),
        loss_fn=LOSSES[cfg.loss],
        train_loss_fn=training_loss(cfg.loss, cfg.diff_div_weight),
    )


def claim_run_dir(setup: Setup, resume: bool, force: bool) -> None:
    """Refuse a folder holding another run (every rank checks before rank 0 writes anything)."""
    run_dir = setup.run_dir
    if resume and not (RunDir(run_dir).last).is_file():
        raise SvqbenchError(f"--resume {run_dir}: no last.pt there to continue from")
    if not resume and not force and holds_run(run_dir):
        raise SvqbenchError(
            f"{run_dir} already holds a run; continue it with `svqbench train --resume {run_dir}` "
            "or replace it with --force"
        )
    setup.world.barrier()
    if setup.world.is_main and not resume:
        if force:
            remove_run(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_recipe(run_dir, setup.recipe)
        copy_into_run(run_dir, plugin_record(setup.recipe.model_name))


def build_state(setup: Setup, model: nn.Module, meta: dict[str, Any]) -> TrainState:
    cfg = setup.cfg
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay) if trainable else None
    scheduler = make_scheduler(cfg, optimizer, setup.total_steps, setup.steps_per_epoch) if optimizer else None
    module = model
    if setup.world.launched and trainable:
        globalise_batchnorm(model)  # statistics over the global batch: the world size does not change the model
        module = DistributedDataParallel(
            model, device_ids=[setup.device.index] if setup.device.type == "cuda" else None
        )
    if cfg.compile and trainable:
        module = torch.compile(module)
    scaler = torch.amp.GradScaler(setup.device.type, enabled=cfg.precision == "fp16")
    return TrainState(model, module, optimizer, scheduler, scaler, meta)


def fresh_state(setup: Setup) -> TrainState:
    """A new run: seeded weights (fitted first when the model learns from data without gradients)."""
    seed_everything(setup.cfg.seed)
    model = create_model(setup.recipe.model_name, setup.info, **setup.recipe.model_args).to(setup.device)
    if hasattr(model, "fit"):
        if setup.world.is_main:
            model.fit(setup.train_set)
        setup.world.broadcast_state(model)
    model = in_memory_format(model, setup.cfg)
    if not setup.val_held_out:
        setup.reporter.message(
            f"{setup.recipe.dataset}: its val split is not held out from train; "
            "the run selects last.pt and records val_held_out: false"
        )
    meta = run_meta(setup.recipe, setup.world.size, setup.val_held_out)
    if setup.world.is_main:
        write_json(RunDir(setup.run_dir).run_json, meta)
    return build_state(setup, model, meta)


def in_memory_format(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """``train.channels_last``: every 4-D weight in channels-last order (the same values; checkpoints load into
    either layout). Measured by ``scripts/quickstart_levers.py``: 1.3-1.6x the fp32 training speed on CPUs."""
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


def resume_state(setup: Setup) -> TrainState:
    """The state of ``last.pt``, under the (possibly extended) recipe."""
    checkpoint = load_checkpoint(RunDir(setup.run_dir).last, setup.device)
    if "rng" not in checkpoint or "meta" not in checkpoint:
        raise SvqbenchError(
            f"{setup.run_dir / 'last.pt'} was written by an svqbench older than exact resume; "
            "train the recipe again (--force replaces the run)"
        )
    check_same_run(checkpoint["recipe"], setup.recipe, setup.run_dir)
    if checkpoint["step"] > setup.total_steps:  # before anything is rewritten: the checkpoint is past the new end
        cfg = setup.cfg
        raise SvqbenchError(
            f"--resume {setup.run_dir}: the run has trained {checkpoint['step']} steps; train.max_steps="
            f"{cfg.max_steps} and train.epochs={cfg.epochs} end it at step {setup.total_steps}, before that; resume "
            f"with at least {checkpoint['step']} steps, or start a new run"
        )
    model = create_model(setup.recipe.model_name, setup.info, **setup.recipe.model_args).to(setup.device)
    model.load_state_dict(checkpoint["model"])
    model = in_memory_format(model, setup.cfg)
    state = build_state(setup, model, {**checkpoint["meta"], "world_size": setup.world.size})
    if state.optimizer:
        state.optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint["total_steps"] == setup.total_steps:
            state.scheduler.load_state_dict(checkpoint["scheduler"])
        elif checkpoint["step"] < setup.total_steps:  # a longer run: the schedule follows the new length
            fast_forward(state.scheduler, checkpoint["step"])
    state.scaler.load_state_dict(checkpoint["scaler"])
    for name in ("epoch", "position", "step", "best_val", "stale_validations", "loss_sum", "loss_samples"):
        setattr(state, name, checkpoint[name])
    restore_rng_state(saved_rng_state(checkpoint, setup.world), setup.device)
    if setup.world.is_main:
        save_recipe(setup.run_dir, setup.recipe)  # with its extension, for the next resume
        forget_log_after(RunDir(setup.run_dir).log, state.step)
    saved_world = checkpoint["meta"].get("world_size", 1)
    across = (
        f", with {setup.world.size} process(es) instead of {saved_world}" if saved_world != setup.world.size else ""
    )
    setup.reporter.message(f"resuming {setup.run_dir} at epoch {state.epoch + 1}, step {state.step}{across}")
    return state


def saved_rng_state(checkpoint: dict[str, Any], world: World) -> dict[str, Any]:
    """This rank's saved RNG states when the world size is the saved one, else rank 0's. Every random draw of a
    model is keyed by (seed, step, sample), so only code drawing from the global generators still needs them."""
    per_rank = checkpoint.get("rank_rng") or [checkpoint["rng"]]
    return per_rank[world.rank] if len(per_rank) == world.size else per_rank[0]


def check_same_run(saved: dict[str, Any], recipe: Recipe, run_dir: Path) -> None:
    """A resumed run may change only :data:`RESUMABLE_KEYS`; anything else would change the result."""
    new, saved = recipe.to_dict(), with_defaults(saved)
    for section in ("dataset", "model", "train"):
        old_value, new_value = saved.get(section), new.get(section)
        if section == "train":
            old_value = {k: v for k, v in old_value.items() if f"train.{k}" not in RESUMABLE_KEYS}
            new_value = {k: v for k, v in new_value.items() if f"train.{k}" not in RESUMABLE_KEYS}
        if isinstance(old_value, dict):
            for key in sorted(set(old_value) | set(new_value)):
                if old_value.get(key) != new_value.get(key):
                    raise SvqbenchError(
                        f"{section}.{key} differs from the run in {run_dir} ({old_value.get(key)!r} "
                        f"there, {new_value.get(key)!r} now); resume it unchanged or start a new run"
                    )
        elif old_value != new_value:
            raise SvqbenchError(f"{section} differs from the run in {run_dir} ({old_value!r} there, {new_value!r} now)")


def forget_log_after(log_path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint (and a last line torn by a kill): the resumed run writes
    them again."""
    if log_path.is_file():
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        kept = [record for record in read_log(log_path) if record.get("step", 0) <= step]
        if len(kept) != len(lines):
            write_text(log_path, "".join(json.dumps(record) + "\n" for record in kept))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int):
    """Per-step LR schedule. cosine: linear warm-up over ``warmup_epochs`` then cosine to 0."""
    total_steps = max(1, total_steps)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total_steps)
    if cfg.schedule == "cosine":
        warmup = min(int(cfg.warmup_epochs * steps_per_epoch), total_steps - 1)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total_steps - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def fast_forward(scheduler, steps: int) -> None:
    """Advance a freshly built per-step scheduler to ``steps`` without touching the weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "scheduler.step() before optimizer.step()"
        for _ in range(steps):
            scheduler.step()
