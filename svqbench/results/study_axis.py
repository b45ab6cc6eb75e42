"""A study's results against one swept setting (e.g. ``train.perturb_ratio``): per-model curves with
across-seed intervals, the change from the first setting paired by seed, and that change against a reference
model's.

A study file opts in with::

    axis: {key: train.perturb_ratio, metrics: [mse, ssim], reference: simvp}

Every row whose ``overrides`` set ``key`` is a point of its model's curve (the model is the recipe's last name
part, e.g. ``simvp_svq``); rows that do not set it (the floors) are shown as values beside the curves. Intervals are 95%
Student t intervals across seeds: of the mean (curves), of the mean paired difference (change from the first
setting, seed k against seed k: same initialisation and data order, only the setting differs), and Welch's for
the difference of two models' changes (does one lose less than the other as the setting grows?).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from svqbench.errors import SvqbenchError
from svqbench.fileio import atomic_path
from svqbench.results.directions import metric_title
from svqbench.results.leaderboard import format_value
from svqbench.results.stats import Interval, mean_interval, welch_interval


@dataclass(frozen=True)
class Point:
    """One model at one setting: the metric's mean over seeds and its interval (NaN bounds below 2 seeds)."""

    model: str
    setting: float
    interval: Interval
    seeds: int


def setting_of(overrides: object, key: str) -> float:
    """The value ``key`` is set to in a row's space-separated ``overrides`` (NaN when it is not set)."""
    for part in str(overrides or "").split():
        name, _, value = part.partition("=")
        if name == key:
            try:
                return float(value)
            except ValueError:
                raise SvqbenchError(f"axis {key}: {value!r} is not a number (overrides {overrides!r})") from None
    return math.nan


def axis_frame(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """The rows with two more columns: ``axis_model`` (the recipe's last name part) and ``axis_setting``."""
    frame = table.copy()
    frame["axis_model"] = frame["recipe"].astype(str).str.split("/").str[-1]
    frame["axis_setting"] = [setting_of(o, key) for o in frame.get("overrides", pd.Series([""] * len(frame)))]
    frame["seed"] = pd.to_numeric(frame["seed"], errors="coerce")
    return frame


def curves(frame: pd.DataFrame, metric: str) -> list[Point]:
    """Mean and across-seed interval of ``metric`` per (model, setting), settings ascending."""
    points = []
    for (model, setting), rows in frame.dropna(subset=["axis_setting"]).groupby(["axis_model", "axis_setting"]):
        values = pd.to_numeric(rows[metric], errors="coerce").dropna().to_numpy()
        points.append(Point(str(model), float(setting), mean_interval(values), len(values)))
    return sorted(points, key=lambda p: (p.model, p.setting))


def floors(frame: pd.DataFrame, metric: str) -> dict[str, float]:
    """Mean of ``metric`` for every model whose rows do not set the axis (the floors): {model: mean}."""
    flat = frame[frame["axis_setting"].isna()]
    return {str(m): float(pd.to_numeric(r[metric], errors="coerce").mean()) for m, r in flat.groupby("axis_model")}


def _per_seed(frame: pd.DataFrame, model: str, setting: float, metric: str) -> pd.Series:
    rows = frame[(frame["axis_model"] == model) & (frame["axis_setting"] == setting)]
    return pd.to_numeric(rows.set_index("seed")[metric], errors="coerce").dropna().groupby(level=0).mean()


def changes(frame: pd.DataFrame, model: str, metric: str) -> dict[float, tuple[Interval, np.ndarray]]:
    """{setting: (interval of the mean change from the first setting, per-seed changes)}, paired by seed."""
    settings = sorted(frame.loc[frame["axis_model"] == model, "axis_setting"].dropna().unique())
    if len(settings) < 2:
        return {}
    base = _per_seed(frame, model, settings[0], metric)
    out = {}
    for setting in settings[1:]:
        values = _per_seed(frame, model, setting, metric)
        shared = base.index.intersection(values.index)
        delta = (values[shared] - base[shared]).to_numpy()
        out[float(setting)] = (mean_interval(delta), delta)
    return out


def _span(interval: Interval) -> str:
    if not interval.comparable:
        return format_value(interval.mean)
    return f"{format_value(interval.mean)} [{format_value(interval.low)}, {format_value(interval.high)}]"


def _signed(interval: Interval) -> str:
    if not interval.comparable:
        return f"{interval.mean:+.4g} (no interval)"
    verdict = "distinguishable" if interval.distinguishable else "inside the seed spread"
    return f"{interval.mean:+.4g} [{interval.low:+.4g}, {interval.high:+.4g}] {verdict}"


def report(
    name: str,
    table: pd.DataFrame,
    key: str,
    metrics: tuple[str, ...],
    reference: str | None,
    plot_path: str | os.PathLike,
) -> str:
    """A study's leaderboard rows against ``key``: the Markdown of every (split, convention) section the rows
    hold (clean test first, then e.g. ``test/perturb=0.3``), and the plot (one row of panels per section)."""
    missing = [m for m in metrics if m not in table]
    if missing:
        raise SvqbenchError(
            f"study {name}: axis.metrics {list(metrics)}: the runs were not evaluated with {', '.join(missing)}"
        )
    sections = axis_sections(table, key)
    plot(name, sections, key, metrics, plot_path)
    return "\n".join(to_markdown(rows, key, metrics, reference, title) for title, rows in sections)


def axis_sections(table: pd.DataFrame, key: str) -> list[tuple[str, pd.DataFrame]]:
    """[("SPLIT, CONVENTION", axis frame)] for every (split, convention) of the rows, plain splits first."""
    frame = axis_frame(table, key)
    columns = [c for c in ("split", "convention") if c in frame]
    if not columns:
        return [("", frame)]
    groups = [
        (", ".join(map(str, k if isinstance(k, tuple) else (k,))), rows)
        for k, rows in frame.fillna({c: "" for c in columns}).groupby(columns, sort=True)
    ]
    return sorted(groups, key=lambda group: ("/" in group[0], group[0]))


def to_markdown(frame: pd.DataFrame, key: str, metrics: tuple[str, ...], reference: str | None, title: str = "") -> str:
    """The curves as tables (model x setting, mean [95% interval across seeds]), the change from the first
    setting per model, and each model's change minus the reference model's."""
    lines = [
        f"## Against {key}" + (f" ({title})" if title else ""),
        "",
        "Mean over seeds [95% t interval across seeds].",
        "",
    ]
    models = sorted(frame["axis_model"][frame["axis_setting"].notna()].unique())
    settings = sorted(frame["axis_setting"].dropna().unique())
    for metric in metrics:
        points = {(p.model, p.setting): p for p in curves(frame, metric)}
        flat = floors(frame, metric)
        lines += [
            f"### {metric_title(metric)}",
            "",
            "| model | " + " | ".join(f"{key.split('.')[-1]}={s:g}" for s in settings) + " |",
            "|---|" + "---|" * len(settings),
        ]
        for model in models:
            cells = [_span(points[(model, s)].interval) if (model, s) in points else "" for s in settings]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        if flat:
            lines += [
                "",
                "Floors (not trained with the setting): "
                + ", ".join(f"{m} {format_value(v)}" for m, v in flat.items())
                + ".",
            ]
        lines += ["", f"Change of {metric} from {key}={settings[0]:g}, paired by seed (mean [95% t interval]):", ""]
        reference_changes = changes(frame, reference, metric) if reference in models else {}
        for model in models:
            for setting, (interval, delta) in changes(frame, model, metric).items():
                line = f"- {model} at {setting:g}: {_signed(interval)}"
                if model != reference and setting in reference_changes:
                    against = welch_interval(delta, reference_changes[setting][1])
                    if against is not None:
                        line += f"; minus {reference}'s change: {_signed(against)} (Welch across seeds)"
                lines.append(line)
        lines.append("")
    return "\n".join(lines)


def plot(
    name: str, sections: list[tuple[str, pd.DataFrame]], key: str, metrics: tuple[str, ...], path: str | os.PathLike
) -> Path:
    """PNG: a row of panels per section, one panel per metric, a line per model against the setting with 95%
    across-seed intervals as error bars; the floors' values written under each panel."""
    from matplotlib.figure import Figure

    if not any(frame["axis_setting"].notna().any() for _, frame in sections):
        raise SvqbenchError(f"study {name}: no run sets {key}; nothing to plot against it")
    figure = Figure(figsize=(4.6 * len(metrics), 3.9 * len(sections)), layout="constrained")
    grid = figure.subplots(len(sections), len(metrics), squeeze=False)
    for axes, (title, frame) in zip(grid, sections):
        for axis, metric in zip(axes, metrics):
            _panel(axis, frame, key, metric, title)
    grid[0][0].legend(fontsize=8)
    figure.suptitle(f"{name}: mean and 95% interval across seeds", fontsize=10)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return Path(path)


def _panel(axis, frame: pd.DataFrame, key: str, metric: str, title: str) -> None:
    settings = sorted(frame["axis_setting"].dropna().unique())
    offset = 0.015 * ((settings[-1] - settings[0]) if settings else 1.0) or 0.015  # error bars side by side
    by_model: dict[str, list[Point]] = {}
    for point in curves(frame, metric):
        by_model.setdefault(point.model, []).append(point)
    for index, (model, points) in enumerate(sorted(by_model.items())):
        x = np.array([p.setting for p in points]) + (index - (len(by_model) - 1) / 2) * offset
        y = np.array([p.interval.mean for p in points])
        low = np.array([p.interval.low if p.interval.comparable else p.interval.mean for p in points])
        high = np.array([p.interval.high if p.interval.comparable else p.interval.mean for p in points])
        axis.errorbar(x, y, yerr=[y - low, high - y], marker="o", capsize=3, label=model)
    flat = floors(frame, metric)  # as text: the floors sit far from the curves and would flatten them
    floor_text = "\nfloors: " + ", ".join(f"{m} {format_value(v)}" for m, v in flat.items()) if flat else ""
    axis.set_title(metric_title(metric) + (f", {title}" if title else ""), fontsize=9)
    axis.set_xlabel(key + floor_text, fontsize=8)
    axis.set_xticks(settings)
    axis.grid(alpha=0.3)
