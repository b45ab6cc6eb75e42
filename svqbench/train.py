"""The one training loop: Adam, OneCycle/cosine/constant schedules, L1/MSE, bf16 autocast,
validation on the val split every epoch (never on test), ``best.pt``/``last.pt``, resume."""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from svqbench import data
from svqbench.config import Recipe, TrainConfig
from svqbench.errors import SvqbenchError
from svqbench.models import count_parameters, create_model, forecast, training_forecast
from svqbench.progress import Reporter
from svqbench.runs import checkpoint_path, load_checkpoint, save_checkpoint, save_recipe

LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": nn.functional.l1_loss,
    "mse": nn.functional.mse_loss,
    # MSE alone settles on a grey haze around moving objects; the L1 term pulls the haze to the background.
    "mse_l1": lambda pred, target: nn.functional.mse_loss(pred, target) + 0.5 * nn.functional.l1_loss(pred, target),
}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int):
    """Per-step LR schedule. cosine: linear warm-up over ``warmup_epochs`` then cosine to 0."""
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


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def epoch_aware(dataset) -> object | None:
    """The dataset (possibly inside a Subset) that draws new samples per epoch via ``set_epoch``, if any."""
    inner = dataset.dataset if isinstance(dataset, Subset) else dataset
    return inner if hasattr(inner, "set_epoch") else None


def make_loader(dataset, batch_size: int, shuffle: bool, workers: int, device: torch.device, seed: int = 0):
    """Workers persist across epochs, except for datasets that must see ``set_epoch`` in each worker."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=shuffle and len(dataset) > batch_size,
        persistent_workers=workers > 0 and epoch_aware(dataset) is None,
        generator=torch.Generator().manual_seed(seed),
    )


@torch.no_grad()
def validation_loss(model: nn.Module, loader: DataLoader, loss_fn, frames_out: int, device, precision: str) -> float:
    """Mean loss over a split, weighted by batch size."""
    model.eval()
    total, count = 0.0, 0
    for inputs, targets in loader:
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast(device, precision):
            pred = forecast(model, inputs, frames_out).frames
        total += loss_fn(pred.float(), targets).item() * len(inputs)
        count += len(inputs)
    model.train()
    return total / max(count, 1)


def train(
    recipe: Recipe,
    run_dir: Path,
    device: torch.device,
    data_root: Path | None = None,
    resume: bool = False,
    reporter: Reporter | None = None,
) -> Path:
    """Train ``recipe`` into ``run_dir``; returns ``run_dir``. Resumes from ``last.pt`` when asked."""
    cfg = recipe.train
    reporter = reporter or Reporter()
    info = data.info(recipe.dataset, data_root)
    train_set = data.create(recipe.dataset, "train", data_root)
    val_set = data.create(recipe.dataset, "val", data_root)
    if cfg.train_samples:
        train_set = Subset(train_set, range(min(cfg.train_samples, len(train_set))))
    seed_everything(cfg.seed)
    model = create_model(recipe.model_name, info, **recipe.model_args).to(device)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_recipe(run_dir, recipe)

    loader = make_loader(train_set, cfg.batch_size, True, cfg.num_workers, device, cfg.seed)
    val_loader = make_loader(val_set, cfg.batch_size, False, cfg.num_workers, device)
    steps_per_epoch = len(loader)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    epochs = math.ceil(total_steps / steps_per_epoch)
    loss_fn = LOSSES[cfg.loss]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay) if trainable else None
    scheduler = make_scheduler(cfg, optimizer, total_steps, steps_per_epoch) if optimizer else None

    start_epoch, step, best_val = 0, 0, math.inf
    if not resume and hasattr(model, "fit"):
        model.fit(train_set)  # models fitted from data without gradients (blank); saved as buffers
    if resume:
        state = load_checkpoint(checkpoint_path(run_dir, "last"), device)
        model.load_state_dict(state["model"])
        start_epoch, step, best_val = state["epoch"], state["step"], state["best_val"]
        if optimizer:
            optimizer.load_state_dict(state["optimizer"])
            scheduler = make_scheduler(cfg, optimizer, total_steps, steps_per_epoch)
            fast_forward(scheduler, step)  # the schedule follows the (possibly extended) recipe
        reporter.message(f"resuming {run_dir} at epoch {start_epoch}, step {step}")

    def checkpoint(name: str, epoch: int) -> None:
        save_checkpoint(
            run_dir / name,
            model=model.state_dict(),
            optimizer=optimizer.state_dict() if optimizer else {},
            epoch=epoch,
            step=step,
            best_val=best_val,
            recipe=recipe.to_dict(),
            info=info.to_dict(),
            parameters=count_parameters(model),
        )

    log_path = run_dir / "log.jsonl"
    model.train()
    for epoch in range(start_epoch, epochs):
        epoch_loss, seen, started = 0.0, 0, time.perf_counter()
        if epoch_aware(train_set) is not None:
            epoch_aware(train_set).set_epoch(epoch)
        if optimizer:
            with reporter.epoch(epoch + 1, epochs, min(steps_per_epoch, total_steps - step)) as bar:
                for inputs, targets in loader:
                    if step >= total_steps:
                        break
                    inputs = inputs.to(device, non_blocking=True)
                    targets = targets.to(device, non_blocking=True)
                    with autocast(device, cfg.precision):
                        out = training_forecast(model, inputs, targets, step)
                        loss = loss_fn(out.frames.float(), targets) + out.aux_loss
                    if not torch.isfinite(loss):
                        raise SvqbenchError(
                            f"training diverged at step {step} (loss {loss.item()}); lower train.lr={cfg.lr}"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.clip_grad:
                        nn.utils.clip_grad_norm_(trainable, cfg.clip_grad)
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    epoch_loss += loss.item() * len(inputs)
                    seen += len(inputs)
                    bar.advance(loss.item(), len(inputs))
        elapsed = time.perf_counter() - started
        val = validation_loss(model, val_loader, loss_fn, info.frames_out, device, cfg.precision)
        improved = val < best_val
        best_val = min(best_val, val)
        record = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": epoch_loss / seen if seen else None,
            "val_loss": val,
            "lr": optimizer.param_groups[0]["lr"] if optimizer else None,
            "samples_per_s": seen / elapsed if seen else None,
            "seconds": round(elapsed, 3),
        }
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        reporter.epoch_done(record)
        checkpoint("last.pt", epoch + 1)
        if improved:
            checkpoint("best.pt", epoch + 1)
    return run_dir
