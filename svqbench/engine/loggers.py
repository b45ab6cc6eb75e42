"""Watch training in TensorBoard, Weights & Biases or MLflow (``train.loggers``), beside ``log.jsonl``.

What each logger receives (rank 0 only):

- at the start: the resolved recipe as hyperparameters, the run id as the run's name;
- every ``train.log_every`` steps: ``train/loss`` (mean over those steps), ``train/lr``, ``train/grad_norm``
  (of the step's gradients, before clipping), ``train/samples_per_s`` and ``train/memory_mb`` (CUDA: peak
  allocated since the previous record; CPU: the process's resident memory);
- at each validation: ``val/loss`` and ``val/sample``, a strip of one fixed validation window (rows input,
  truth, prediction, |error|; drawn by :func:`svqbench.render.strip`).

Values are read on the host only at those steps. Where they go: ``RUN/tensorboard/RUN_ID`` (event files),
``RUN/wandb`` (offline unless ``WANDB_MODE`` says otherwise), ``RUN/mlruns`` (a file store, unless
``MLFLOW_TRACKING_URI`` names another). A resumed run continues the same logger run: TensorBoard drops what
the killed process wrote after the checkpoint, W&B resumes the run id kept in ``run.json``, MLflow the run
id kept there and skips the steps it already holds (exact resume recomputes the same values).
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from svqbench.engine.runs import RunDir
from svqbench.errors import SvqbenchError
from svqbench.fileio import write_json

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}  # logger -> module it imports


def check_installed(loggers: tuple[str, ...]) -> None:
    """A one-line error naming the pip command for the first logger whose package is missing."""
    for name in loggers:
        try:
            importlib.import_module(PACKAGES[name])
        except ImportError:
            raise SvqbenchError(
                f'train.loggers={name}: the {PACKAGES[name]} package is not installed; pip install "svqbench[{name}]"'
            ) from None


def hyperparameters(recipe_dict: dict[str, Any], meta: dict[str, Any]) -> dict[str, str | int | float | bool]:
    """The resolved recipe flattened to ``section.key`` scalars (lists joined by commas), plus the run's identity."""
    flat: dict[str, str | int | float | bool] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, (list, tuple)):
            flat[prefix] = ",".join(str(v) for v in value)
        else:
            flat[prefix] = "" if value is None else value

    walk("", recipe_dict)
    for key in ("run_id", "git_commit", "world_size", "svqbench_version"):
        flat[key] = "" if meta.get(key) is None else meta[key]
    return flat


def device_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated since the previous call (then reset); elsewhere: the process's resident memory."""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        return peak / 2**20
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, IndexError, ValueError, AttributeError):  # no /proc: the peak so far (bytes on macOS)
        try:
            import resource
        except ImportError:  # Windows
            return float("nan")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class TensorBoard:
    """Event files in ``RUN/tensorboard/RUN_ID``; a resumed run purges the steps after its checkpoint."""

    def __init__(self, run_dir: Path, run_id: str, hparams: dict[str, Any], recipe_yaml: str, resumed_at: int | None):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        purge = resumed_at + 1 if resumed_at is not None else None
        self.writer = SummaryWriter(str(run_dir / "tensorboard" / run_id), purge_step=purge)
        if resumed_at is None:
            for summary in hparams_summary(hparams, {"val/loss": float("nan")}):
                self.writer.file_writer.add_summary(summary)
            self.writer.add_text("recipe", "```yaml\n" + recipe_yaml + "```", 0)
        self.writer.flush()

    def scalars(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        self.writer.add_image(tag, image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandB:
    """A W&B run named and identified by the run id, in ``RUN/wandb``; offline unless ``WANDB_MODE`` is set."""

    def __init__(self, run_dir: Path, run_id: str, hparams: dict[str, Any]):
        import wandb

        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "svqbench"),
            id=run_id,
            name=run_id,
            dir=str(run_dir),
            mode=os.environ.get("WANDB_MODE", "offline"),
            resume="allow",
            config=hparams,
            settings=wandb.Settings(console="off", silent=True, disable_git=True),
        )
        self._image = wandb.Image

    def scalars(self, values: dict[str, float], step: int) -> None:
        if step >= self.run.step:  # a run resumed online already holds the earlier steps
            self.run.log(values, step=step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        if step >= self.run.step:
            self.run.log({tag: self._image(image)}, step=step)

    def close(self) -> None:
        self.run.finish()


class MLflow:
    """An MLflow run named by the run id, in the file store ``RUN/mlruns`` unless ``MLFLOW_TRACKING_URI`` is set."""

    def __init__(self, run_dir: Path, run_id: str, hparams: dict[str, Any], mlflow_run_id: str | None):
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            # MLflow 3 refuses a file store unless asked: it is the store that needs no server or database
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow import MlflowClient
        from mlflow.entities import Param

        uri = os.environ.get("MLFLOW_TRACKING_URI") or (Path(run_dir) / "mlruns").resolve().as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        self.logged_through = -1
        if mlflow_run_id is not None:
            self.run_id = mlflow_run_id
            self.client.update_run(mlflow_run_id, status="RUNNING")
            keys = self.client.get_run(mlflow_run_id).data.metrics
            steps = [m.step for key in keys for m in self.client.get_metric_history(mlflow_run_id, key)]
            self.logged_through = max(steps, default=-1)
            return
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "svqbench")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        self.run_id = self.client.create_run(
            experiment_id, run_name=run_id, tags={"svqbench.run_id": run_id}
        ).info.run_id
        params = [Param(key, str(value)) for key, value in hparams.items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        if step > self.logged_through:
            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        if step > self.logged_through:
            self.client.log_image(self.run_id, image, key=tag, step=step)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class TrainingLoggers:
    """What the training loop calls. With no logger (or on a rank other than 0) every call returns at once."""

    def __init__(self, backends: list[Any] | None = None, log_every: int = 1):
        self.backends = backends or []
        self.log_every = log_every
        self._loss_sum: Any = 0.0
        self._steps = 0
        self._clock = time.perf_counter()
        self._sample: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def active(self) -> bool:
        return bool(self.backends)

    def wants_grad_norm(self, step: int) -> bool:
        """Whether step number ``step`` (counted from 1) is recorded, so its gradient norm is needed."""
        return self.active and step % self.log_every == 0

    def after_step(self, setup: Any, state: Any, loss: Any) -> None:
        """Accumulate the step's loss (a float or a device tensor); every ``log_every`` steps, record."""
        if not self.active:
            return
        self._loss_sum = self._loss_sum + (loss.detach() if isinstance(loss, torch.Tensor) else loss)
        self._steps += 1
        if state.step % self.log_every:
            return
        now = time.perf_counter()
        values = {
            "train/loss": float(self._loss_sum) / self._steps,
            "train/lr": state.optimizer.param_groups[0]["lr"],
            "train/samples_per_s": self._steps * setup.batch_size / max(now - self._clock, 1e-9),
            "train/memory_mb": device_memory_mb(setup.device),
        }
        if state.grad_norm is not None:
            values["train/grad_norm"] = float(state.grad_norm)
        for backend in self.backends:
            backend.scalars(values, state.step)
        self._loss_sum, self._steps, self._clock = 0.0, 0, time.perf_counter()

    def after_validation(self, setup: Any, state: Any, val: float) -> None:
        """Record the validation loss and the strip of the fixed validation window."""
        if not self.active:
            return
        image = self._sample_strip(setup, state.model)
        for backend in self.backends:
            backend.scalars({"val/loss": val}, state.step)
            backend.image("val/sample", image, state.step)

    @torch.no_grad()
    def _sample_strip(self, setup: Any, model: torch.nn.Module) -> np.ndarray:
        """(H', W', 3) uint8: input, truth, prediction, |error| of the first validation window of rank 0."""
        from svqbench.engine.machine import autocast
        from svqbench.models import forecast
        from svqbench.render import strip

        if self._sample is None:
            self._sample = setup.val_set[0]
        inputs, truth = self._sample
        devices = [setup.device] if setup.device.type == "cuda" else []
        training = model.training
        model.eval()
        with torch.random.fork_rng(devices=devices), autocast(setup.device, setup.cfg.precision):
            pred = forecast(model, inputs[None].to(setup.device), setup.info.frames_out).frames[0]
        model.train(training)
        return strip(inputs, truth, pred.float().cpu())

    def close(self) -> None:
        for backend in self.backends:
            backend.close()
        self.backends = []

    def __enter__(self) -> "TrainingLoggers":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_loggers(setup: Any, state: Any, resumed: bool) -> TrainingLoggers:
    """The loggers of ``setup.cfg.loggers`` for this run (rank 0; none elsewhere). Their run ids go into
    ``state.meta["loggers"]`` and ``run.json``, so that a resumed run continues the same logger runs."""
    cfg = setup.cfg
    if not cfg.loggers or not setup.world.is_main:
        return TrainingLoggers()
    import yaml

    meta = state.meta
    ids = meta.setdefault("loggers", {})
    run_id = meta["run_id"]
    hparams = hyperparameters(setup.recipe.to_dict(), meta)
    backends: list[Any] = []
    for name in cfg.loggers:
        continuing = resumed and name in ids
        if name == "tensorboard":
            recipe_yaml = yaml.safe_dump(setup.recipe.to_dict(), sort_keys=False)
            backends.append(
                TensorBoard(setup.run_dir, run_id, hparams, recipe_yaml, state.step if continuing else None)
            )
            ids["tensorboard"] = str(Path("tensorboard") / run_id)
        elif name == "wandb":
            ids["wandb"] = ids.get("wandb", run_id)
            backends.append(WandB(setup.run_dir, ids["wandb"], hparams))
        elif name == "mlflow":
            backend = MLflow(setup.run_dir, run_id, hparams, ids.get("mlflow") if continuing else None)
            ids["mlflow"] = backend.run_id
            backends.append(backend)
    write_json(RunDir(setup.run_dir).run_json, meta)
    return TrainingLoggers(backends, cfg.log_every)
