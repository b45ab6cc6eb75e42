"""Views of a leaderboard: Markdown, CSV, JSON and LaTeX summaries, and a bar chart with error bars.

Every view shows groups (mean +- std over n runs) inside sections that may be ranked (see
:mod:`svqbench.results.leaderboard`), then the published numbers as a separate block that is never ranked.
A best value is marked only when it is distinguishable from the runner-up and the interval agrees that it is
better: its 95% interval lies wholly on the better side of 0, by a paired bootstrap over independent units of
test windows (source videos, sequences, blocks) when every run's per-window file for the section's split and
convention is reachable, else by a Welch t interval across seeds; with neither (one run each, no per-window
file) nothing is marked. Run folders are stored relative to the table's own folder, so the marking is the same
from any working folder.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from svqbench.errors import SvqbenchError
from svqbench.fileio import atomic_path, write_text
from svqbench.results.compare import compare_groups, has_per_window
from svqbench.results.directions import HIGHER_IS_BETTER, metric_title
from svqbench.results.leaderboard import (
    append_row,
    csv_path,
    format_value,
    locked,
    metric_columns,
    reported,
    sections,
    summarise,
)
from svqbench.results.stats import Interval, seed_spread_overrules, welch_interval

FORMATS = ("md", "csv", "json", "latex")
RUN_COLUMNS = [
    "run",
    "run_id",
    "recipe",
    "seed",
    "selection",
    "selected_epoch",
    "selected_step",
    "steps_trained",
    "train_seconds",
    "precision",
    "svqbench_version",
    "git_commit",
    "evaluated_at",
]
MARKING = (
    "Bold: the best group of its section, only where its 95% interval against the runner-up lies on the "
    "better side of 0 (paired bootstrap over independent units of test windows when every run's per-window "
    "file is reachable, and also a "
    "Welch t interval across seeds when both groups have several; else Welch alone; stated under each table). * "
    "recipe changed by --set (overrides column)."
)


def _best_against_runner_up(
    summary: pd.DataFrame, rows: pd.DataFrame, metric: str, key: dict[str, str] | None = None
) -> tuple[Any, str]:
    """(index of the best group when its interval against the runner-up shows it better, else None; a one-line
    account of the test)."""
    means = pd.to_numeric(summary[f"{metric}_mean"], errors="coerce").dropna()
    if len(means) < 2:
        return None, ""
    ordered = means.sort_values(ascending=metric not in HIGHER_IS_BETTER).index
    best, runner = ordered[0], ordered[1]
    interval = _interval(summary.loc[best], summary.loc[runner], rows, metric, key or {})
    best_name = _group_name(summary.loc[best], summary.loc[runner])
    names = f"{best_name} vs {_group_name(summary.loc[runner], summary.loc[best])}"
    if interval is None:
        return None, f"{metric}: {names}: no interval (one run each and no per-window values)"
    better = interval.comparable and (interval.low > 0 if metric in HIGHER_IS_BETTER else interval.high < 0)
    if not interval.comparable:
        outcome = "not comparable"
    elif better:
        outcome = "distinguishable"
    elif interval.distinguishable:
        outcome = "the interval disagrees with the ranking of the means"
    else:
        outcome = "not distinguishable"
    account = (
        f"{metric}: {names}: {interval.mean:+.4g} [{interval.low:+.4g}, {interval.high:+.4g}] "
        f"({interval.method}): {outcome}"
    )
    return (best if better else None), account


def _group_name(group: pd.Series, other: pd.Series) -> str:
    """The group's recipe, with the overrides it does not share with ``other`` (two groups of one recipe differ
    only there)."""
    theirs = set(str(other["overrides"]).split())
    own = " ".join(part for part in str(group["overrides"]).split() if part not in theirs)
    return f"{group['recipe']} ({own})" if own else str(group["recipe"])


def _interval(
    best: pd.Series, runner: pd.Series, rows: pd.DataFrame, metric: str, key: dict[str, str]
) -> Interval | None:
    paths_best, paths_runner = list(best["paths"]), list(runner["paths"])
    split, convention = key.get("split") or "test", key.get("convention") or None
    if paths_best and paths_runner and all(has_per_window(p, split, convention) for p in paths_best + paths_runner):
        try:
            compared = compare_groups(paths_best, paths_runner, [metric], split=split, convention=convention)[
                "metrics"
            ][metric]
            diff, seeds = compared["difference"], compared["seeds"]
            if seeds is not None and seed_spread_overrules(diff["low"], seeds["low"], seeds["high"]):
                diff = seeds  # within the seed spread, or the seeds disagree: not a win
            return Interval(diff["mean"], diff["low"], diff["high"], diff["method"])
        except SvqbenchError:
            pass  # runs not comparable window by window: fall back to seeds
    values = [
        pd.to_numeric(rows.loc[rows["run_id"].astype(str).isin(g["run_ids"].split()), metric], errors="coerce")
        .dropna()
        .to_numpy()
        for g in (best, runner)
    ]
    return welch_interval(*values)


def section_title(key: dict[str, str]) -> str:
    held = {"True": "val held out", "False": "val overlaps train"}.get(key["val_held_out"], "")
    parts = [
        f"protocol {key['protocol'] or 'default'}",
        held,
        f"{key['frames']} frames" if key["frames"] else "",
        key["size"],
        f"{key['convention']} convention",
        f"{key['split']} split",
        f"FVD protocol {key['fvd_protocol']}" if key.get("fvd_protocol") else "",
    ]
    return ", ".join(p for p in parts if p)


def _display_recipe(group: pd.Series) -> str:
    return f"{group['recipe']}*" if group["overrides"] else group["recipe"]


def _cell(group: pd.Series, metric: str) -> str:
    mean, std = group[f"{metric}_mean"], group[f"{metric}_std"]
    if pd.isna(mean):
        return ""
    return format_value(float(mean)) + ("" if pd.isna(std) else f" ± {float(std):.2g}")  # 2 digits: the spread


def analyse(table: pd.DataFrame) -> list[dict[str, Any]]:
    """[{"key", "title", "summary", "rows", "metrics", "best": {metric: index}, "tests": [str]}] per section."""
    out = []
    for key, rows in sections(table):
        summary = summarise(rows)
        metrics = metric_columns(rows)
        best, tests = {}, []
        for metric in metrics:
            index, account = _best_against_runner_up(summary, rows, metric, key)
            if index is not None:
                best[metric] = index
            if account:
                tests.append(account)
        out.append(
            {
                "key": key,
                "title": section_title(key),
                "summary": summary,
                "rows": rows,
                "metrics": metrics,
                "best": best,
                "tests": tests,
            }
        )
    return out


def markdown_text(text: Any) -> str:
    """A table cell's text, inert in Markdown: HTML (``<script>``, ``<img onerror=...>``) escaped, ``|`` escaped, line
    breaks as spaces; ``**`` bold markers that the table itself adds are written after this."""
    escaped = html.escape(str(text), quote=False).replace("|", "\\|")
    return " ".join(escaped.splitlines())


def _markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    rows = [[markdown_text(cell) for cell in row] for row in body]
    return [
        "| " + " | ".join(markdown_text(h) for h in header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def to_markdown(dataset: str, table: pd.DataFrame, reported: pd.DataFrame | None = None) -> str:
    """The whole leaderboard as Markdown: sections of groups, the reported block, then the runs."""
    lines = [f"# {dataset} leaderboard", "", "Generated from the CSV; mean ± std over n runs. " + MARKING, ""]
    for section in analyse(table):
        summary, metrics = section["summary"], section["metrics"]
        body = []
        for index, group in summary.iterrows():
            cells = [f"**{_cell(group, m)}**" if section["best"].get(m) == index else _cell(group, m) for m in metrics]
            body.append(
                [_display_recipe(group), group["overrides"], group["model"], str(group["n"]), group["seeds"], *cells]
            )
        lines += [f"## {section['title']}", ""]
        lines += _markdown_table(["recipe", "overrides", "model", "n", "seeds", *metrics], body)
        lines += [""] + [f"- {t}" for t in section["tests"]] + ([""] if section["tests"] else [])
    lines += reported_markdown(reported)
    runs = table[[c for c in RUN_COLUMNS if c in table]]
    lines += ["## Runs", ""]
    lines += _markdown_table(
        list(runs.columns), [[format_value(v) for v in row] for row in runs.itertuples(index=False)]
    )
    return "\n".join(lines) + "\n"


def reported_markdown(reported: pd.DataFrame | None) -> list[str]:
    if reported is None or reported.empty:
        return []
    lines = ["## Reported (published numbers in their own convention; never ranked with measured rows)", ""]
    lines += _markdown_table(
        list(reported.columns), [[format_value(v) for v in row] for row in reported.itertuples(index=False)]
    )
    return lines + [""]


def summary_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Every section's groups in one flat table (section keys first), for CSV export."""
    frames = []
    for section in analyse(table):
        summary = section["summary"].drop(columns=["paths"]).copy()
        for position, (key, value) in enumerate(section["key"].items()):
            summary.insert(position, key, value)
        for metric in section["metrics"]:
            summary[f"{metric}_best"] = [section["best"].get(metric) == i for i in summary.index]
        frames.append(summary)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text


def to_latex(dataset: str, table: pd.DataFrame, reported: pd.DataFrame | None = None) -> str:
    """One booktabs tabular per section (mean $\\pm$ std), then the reported block."""
    out = [f"% {dataset} leaderboard, generated by svqbench. {MARKING}"]
    for section in analyse(table):
        metrics = section["metrics"]
        out += [
            f"% {section['title']}",
            r"\begin{tabular}{l" + "r" * (len(metrics) + 1) + "}",
            r"\toprule",
            " & ".join(["recipe", "n", *metrics]) + r" \\",
            r"\midrule",
        ]
        for index, group in section["summary"].iterrows():
            cells = [_cell(group, m).replace("±", r"$\pm$") for m in metrics]
            cells = [rf"\textbf{{{c}}}" if section["best"].get(m) == index else c for c, m in zip(cells, metrics)]
            out.append(" & ".join([_latex_escape(_display_recipe(group)), str(group["n"]), *cells]) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", ""]
    if reported is not None and not reported.empty:
        out += [
            "% reported (published; not ranked)",
            r"\begin{tabular}{" + "l" * len(reported.columns) + "}",
            r"\toprule",
            " & ".join(_latex_escape(c) for c in reported.columns) + r" \\",
            r"\midrule",
        ]
        out += [
            " & ".join(_latex_escape(format_value(v)) for v in row) + r" \\" for row in reported.itertuples(index=False)
        ]
        out += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


def to_json(dataset: str, table: pd.DataFrame, reported: pd.DataFrame | None = None) -> str:
    sections_out = []
    for section in analyse(table):
        groups = [
            {k: _jsonable(v) for k, v in g.items() if k != "paths"} for g in section["summary"].to_dict("records")
        ]
        best = {m: section["summary"].loc[i, "recipe"] for m, i in section["best"].items()}
        sections_out.append({**section["key"], "groups": groups, "best": best, "tests": section["tests"]})
    records = [] if reported is None else [{k: _jsonable(v) for k, v in r.items()} for r in reported.to_dict("records")]
    return json.dumps({"dataset": dataset, "sections": sections_out, "reported": records}, indent=2) + "\n"


def export(dataset: str, table: pd.DataFrame, fmt: str, reported: pd.DataFrame | None = None) -> str:
    """The leaderboard as text in ``fmt`` (md, csv, json, latex)."""
    if fmt == "md":
        return to_markdown(dataset, table, reported)
    if fmt == "csv":
        return summary_frame(table).to_csv(index=False)
    if fmt == "json":
        return to_json(dataset, table, reported)
    if fmt == "latex":
        return to_latex(dataset, table, reported)
    raise SvqbenchError(f"--format {fmt!r}: valid: {', '.join(FORMATS)}")


def plot(dataset: str, table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """PNG bar chart: one panel per (section, metric), one bar per group, error bars = std across runs."""
    from matplotlib.figure import Figure

    analysed = [s for s in analyse(table) if s["metrics"]]
    if not analysed:
        raise SvqbenchError(f"leaderboard {dataset!r} has no metric values to plot")
    columns = max(len(s["metrics"]) for s in analysed)
    figure = Figure(figsize=(3.6 * columns, 3.4 * len(analysed)), layout="constrained")
    axes = figure.subplots(len(analysed), columns, squeeze=False)
    for row, section in enumerate(analysed):
        summary = section["summary"]
        labels = [_display_recipe(g) for _, g in summary.iterrows()]
        for column in range(columns):
            axis = axes[row][column]
            if column >= len(section["metrics"]):
                axis.set_visible(False)
                continue
            metric = section["metrics"][column]
            means = pd.to_numeric(summary[f"{metric}_mean"], errors="coerce")
            stds = pd.to_numeric(summary[f"{metric}_std"], errors="coerce").fillna(0.0)
            colours = ["tab:orange" if section["best"].get(metric) == i else "tab:blue" for i in summary.index]
            axis.bar(range(len(summary)), means, yerr=stds, capsize=3, color=colours)
            axis.set_xticks(
                range(len(summary)), [label.split("/")[-1] for label in labels], rotation=45, ha="right", fontsize=8
            )
            axis.set_title(metric_title(metric), fontsize=9)
            axis.grid(axis="y", alpha=0.3)
        key = section["key"]
        axes[row][0].set_ylabel(f"{key['protocol']} protocol, {key['convention']}, {key['split']}", fontsize=8)
    figure.suptitle(f"{dataset}: mean ± std over seeds (orange: distinguishable best)", fontsize=10)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return Path(path)


def publish(dataset: str, row: dict[str, Any], directory: Path | None = None) -> Path:
    """Add ``row`` to ``dataset``'s leaderboard CSV and rewrite its Markdown, both under the leaderboard's lock,
    so two evaluations that finish together never leave a Markdown file that misses a row."""
    path = csv_path(dataset, directory)
    with locked(path):
        table = append_row(path, row)
        write_text(path.with_suffix(".md"), to_markdown(dataset, table, reported(dataset)))
    return path
