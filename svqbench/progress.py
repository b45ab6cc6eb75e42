"""Training progress: a Rich bar (loss, samples/s, ETA) on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console(stderr=True)


class EpochBar:
    def __init__(self, progress: Progress | None, task: int | None, label: str, total: int, plain: bool):
        self.progress, self.task, self.label, self.total, self.plain = progress, task, label, total, plain
        self.steps, self.samples, self.started = 0, 0, time.perf_counter()
        self._last_print = self.started

    def advance(self, loss: Any, samples: int) -> None:
        """One step of ``samples``; ``loss`` (a float or a device scalar) is read only when shown, at most twice
        a second, so the bar does not make every step wait for the device."""
        self.steps += 1
        self.samples += samples
        rate = self.samples / max(time.perf_counter() - self.started, 1e-9)
        if self.progress is not None:
            shown = {}
            if time.perf_counter() - self._last_print > 0.5 or self.steps == self.total:
                self._last_print = time.perf_counter()
                shown = {"loss": f"{float(loss):.4g}", "rate": f"{rate:.1f}"}
            self.progress.update(self.task, advance=1, **shown)
        elif self.plain and (time.perf_counter() - self._last_print > 30 or self.steps == self.total):
            self._last_print = time.perf_counter()
            console.print(
                f"{self.label} step {self.steps}/{self.total} loss {loss:.4g} {rate:.1f} samples/s", highlight=False
            )


class Reporter:
    """Prints what training does; ``quiet`` silences everything but errors."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    @contextmanager
    def epoch(self, epoch: int, epochs: int, steps: int) -> Iterator[EpochBar]:
        label = f"epoch {epoch}/{epochs}"
        if self.quiet or not console.is_terminal:
            yield EpochBar(None, None, label, steps, plain=not self.quiet)
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} samples/s"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(label, total=steps, loss="-", rate="-")
            yield EpochBar(progress, task, label, steps, plain=False)

    def epoch_done(self, record: dict[str, Any]) -> None:
        if self.quiet:
            return
        train = f"{record['train_loss']:.5g}" if record["train_loss"] is not None else "-"
        val = f"{record['val_loss']:.5g}" if record["val_loss"] is not None else "-"
        console.print(
            f"epoch {record['epoch']} step {record['step']}: train loss {train}  val loss {val}  "
            f"({record['seconds']:.1f}s)",
            highlight=False,
        )

    def message(self, text: str) -> None:
        if not self.quiet:
            console.print(text, highlight=False)
