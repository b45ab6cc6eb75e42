"""One self-contained HTML page for a leaderboard or a study: ``svqbench report DATASET|STUDY.yaml``.

The page holds every leaderboard section (groups with mean ± std, n, the intervals that decide a best value;
floors marked), the published numbers apart, the per-horizon curves, the runs side by side on one test
sample, and each run's recipe, seed, commit and training time. Styles and images are inline (PNG as
base64), so the file opens offline in any browser and can be mailed as it is. Run folders that are not
reachable from here (moved, another machine) leave their rows in the tables and are named in a note.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from svqbench import __version__
from svqbench.engine.runs import RunDir
from svqbench.errors import SvqbenchError
from svqbench.fileio import write_text
from svqbench.results import leaderboard
from svqbench.results.views import analyse, plot

FLOOR_MODELS = ("blank", "persistence")  # what a learned model has to beat: a black frame, the last frame repeated
STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1400px;padding:0
1em;color:#1b1b1b}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1.05em;margin-bottom:.4em} .meta,.note{color:#555;font-size:.9em}
div.wide{overflow-x:auto} table{border-collapse:collapse;margin:.5em 0 1em;font-size:.82em} th,td{border:1px solid
#ccc;padding:.2em .45em;text-align:right}
th{background:#f1f3f5} td{white-space:nowrap} td:first-child,th:first-child{text-align:left} tr.floor
td{background:#fff8e1}
td.best{font-weight:700;background:#e6f4ea}
.badge{font-size:.75em;background:#f0ad4e;color:#fff;border-radius:3px;padding:0 .35em;margin-left:.4em}
ul.tests{font-size:.85em;color:#333} img{max-width:100%;border:1px solid #ddd} details{margin:.2em 0}
pre{background:#f6f8fa;padding:.6em;font-size:.8em;overflow-x:auto}
"""


def load_source(source: str) -> tuple[str, str, pd.DataFrame, pd.DataFrame]:
    """(title, dataset, leaderboard rows, published numbers) of a dataset name or a study file."""
    if source.endswith((".yaml", ".yml")):
        from svqbench.flows.sweep import load_study

        study = load_study(source)
        try:
            table = leaderboard.read(study.name, study.out)
        except SvqbenchError:
            raise SvqbenchError(
                f"{source}: no study leaderboard {study.out / (study.name + '.csv')}; "
                f"run `svqbench sweep {source}` first"
            ) from None
        return f"study {study.name}", study.dataset, table, leaderboard.reported(study.dataset)
    return f"{source} leaderboard", source, leaderboard.read(source), leaderboard.reported(source)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _image_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _figure_png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _e(value: Any) -> str:
    return html.escape(leaderboard.format_value(value) if not isinstance(value, str) else value)


def _mean_std(group: pd.Series, metric: str) -> str:
    mean, std = group[f"{metric}_mean"], group[f"{metric}_std"]
    if pd.isna(mean):
        return ""
    return leaderboard.format_value(float(mean)) + ("" if pd.isna(std) else f" ± {float(std):.2g}")


def leaderboard_html(table: pd.DataFrame) -> str:
    """Every section: one row per group (floors marked), distinguishable best values in bold, the intervals."""
    parts = []
    for section in analyse(table):
        metrics, summary = section["metrics"], section["summary"]
        head = "".join(f"<th>{html.escape(h)}</th>" for h in ["recipe", "overrides", "model", "n", "seeds", *metrics])
        rows = []
        for index, group in summary.iterrows():
            floor = group["model"] in FLOOR_MODELS
            name = html.escape(group["recipe"]) + ('<span class="badge">floor</span>' if floor else "")
            cells = "".join(
                f'<td class="best">{_mean_std(group, m)}</td>'
                if section["best"].get(m) == index
                else f"<td>{_mean_std(group, m)}</td>"
                for m in metrics
            )
            rows.append(
                f'<tr class="{"floor" if floor else ""}"><td>{name}</td><td>{_e(group["overrides"])}</td>'
                f"<td>{_e(group['model'])}</td><td>{group['n']}</td><td>{_e(group['seeds'])}</td>{cells}</tr>"
            )
        tests = "".join(f"<li>{html.escape(t)}</li>" for t in section["tests"])
        parts.append(
            f'<h3>{html.escape(section["title"])}</h3><div class="wide"><table><thead><tr>{head}</tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table></div><ul class="tests">{tests}</ul>'
        )
    return "".join(parts)


def frame_html(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False)
    )
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def reachable_runs(table: pd.DataFrame) -> tuple[dict[str, list[Path]], list[str]]:
    """{recipe (with its --set marker): [run folders with metrics.json]} and the rows whose folder is missing."""
    groups: dict[str, list[Path]] = {}
    missing = []
    for row in table.itertuples(index=False):
        path = Path(str(getattr(row, "path", "") or ""))
        overrides = leaderboard.group_overrides(getattr(row, "overrides", "") or "")
        label = f"{row.recipe}*" if overrides else str(row.recipe)
        if str(path) and (RunDir(path).metrics).is_file():
            groups.setdefault(label, []).append(path)
        else:
            missing.append(str(row.run))
    return groups, missing


def horizon_png(groups: dict[str, list[Path]]) -> bytes | None:
    """Per predicted frame, one line per group (mean over its runs), one panel per metric."""
    from matplotlib.figure import Figure

    curves: dict[str, dict[str, np.ndarray]] = {}
    for label, runs in groups.items():
        per_run = [json.loads((RunDir(run).metrics).read_text()).get("per_frame", {}) for run in runs]
        names = set.intersection(*(set(p) for p in per_run)) if per_run else set()
        curves[label] = {name: np.mean([p[name] for p in per_run], axis=0) for name in names}
    metrics = [m for m in leaderboard.METRIC_ORDER if any(m in c for c in curves.values())]
    if not metrics:
        return None
    columns = min(3, len(metrics))
    rows = -(-len(metrics) // columns)
    figure = Figure(figsize=(4.2 * columns, 2.9 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, metric in zip(axes, metrics):
        for label, values in curves.items():
            if metric in values:
                axis.plot(
                    range(1, len(values[metric]) + 1),
                    values[metric],
                    marker="o",
                    markersize=2.5,
                    linestyle="--" if label.split("/")[-1].rstrip("*") in FLOOR_MODELS else "-",
                    label=label.split("/")[-1],
                )
        axis.set_title(metric, fontsize=10)
        axis.set_xlabel("predicted frame", fontsize=8)
        axis.grid(alpha=0.3)
    for axis in axes[len(metrics) :]:
        axis.set_visible(False)
    axes[0].legend(fontsize=7)
    return _figure_png(figure)


def sample_png(groups: dict[str, list[Path]], device: torch.device, index: int, data_root: Path | None) -> bytes:
    """The first run of every group on test sample ``index``: rows input, truth, then prediction and |error|."""
    from svqbench.engine.predict import predict_runs
    from svqbench.render import compare_strip

    inputs, truth, rows = predict_runs([runs[0] for runs in groups.values()], device, index, "test", data_root)
    return _image_png(compare_strip(inputs, truth, rows))


def _recipe_details(run_dir: Path) -> str:
    """The run's ``recipe.yaml`` as a collapsed block; only the run's own file (a symbolic link could point at any
    file the reader can read, and the report is meant to be shared), and only text."""
    recipe_file = RunDir(run_dir).recipe
    if recipe_file.is_symlink():
        return '<p class="note">recipe.yaml is a symbolic link; not embedded</p>'
    if not recipe_file.is_file():
        return ""
    try:
        text = recipe_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return '<p class="note">recipe.yaml is not readable UTF-8 text; not embedded</p>'
    return f"<details><summary>recipe</summary><pre>{html.escape(text)}</pre></details>"


def runs_html(table: pd.DataFrame) -> str:
    """One line per run: recipe, seed, commit, training time; the resolved recipe when the folder is here."""
    lines = []
    for row in table.itertuples(index=False):
        path = Path(str(getattr(row, "path", "") or ""))
        recipe = _recipe_details(path) if str(path) else ""
        commit = str(getattr(row, "git_commit", "") or "")
        seconds = getattr(row, "train_seconds", float("nan"))
        lines.append(
            f"<tr><td>{_e(str(row.run))}</td><td>{_e(str(row.recipe))}</td>"
            f"<td>{_e(leaderboard.group_overrides(getattr(row, 'overrides', '') or ''))}</td>"
            f"<td>{_e(getattr(row, 'seed', ''))}</td><td>{html.escape(commit[:10] if commit != 'nan' else '')}</td>"
            f"<td>{_e(seconds)}</td><td>{_e(getattr(row, 'steps_trained', ''))}</td>"
            f"<td>{_e(str(getattr(row, 'precision', '')))}</td><td>{recipe}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("run", "recipe", "overrides", "seed", "commit", "training s", "steps", "precision", "resolved recipe")
    )
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table></div>'


def tuning_html(study_file: str) -> str:
    """A tuned study's search per model: optimisation history, parameter importances, best parameters."""
    from svqbench.flows.sweep import load_study

    study = load_study(study_file)
    if study.tune is None:
        return ""
    from matplotlib import pyplot

    from svqbench.flows.tune import tuning_plots

    parts = ["<h2>Tuning</h2>"]
    plots = tuning_plots(study)
    if not plots:
        return parts[0] + '<p class="note">No trials in the study\'s storage (run `svqbench tune` on it).</p>'
    for found in plots:
        best = found["best"]
        parts.append(f"<h3>{html.escape(found['label'])}</h3>")
        if best is not None:
            params = ", ".join(f"{k} = {v}" for k, v in best["params"].items())
            parts.append(
                f"<p>Best: trial {best['trial']}, validation {html.escape(study.tune.objective.metric)} "
                f"{best['value']:.5g}; {html.escape(params)}</p>"
            )
        for name in ("history", "importances"):
            figure = found[name]
            if figure is None:
                parts.append(
                    f'<p class="note">No parameter importances: {html.escape(found["importances_missing"])}</p>'
                )
                continue
            figure.set_size_inches(6.4, 4.0)
            figure.tight_layout()
            parts.append(
                f'<img alt="{name} of {html.escape(found["label"])}" src="{png_data_uri(_figure_png(figure))}">'
            )
            pyplot.close(figure)
    return "".join(parts)


def build_report(source: str, device: torch.device, data_root: Path | None = None, index: int = 0) -> str:
    """The HTML text of the report on ``source`` (a dataset's leaderboard or a study file)."""
    title, dataset, table, reported = load_source(source)
    if table.empty:
        raise SvqbenchError(f"{source}: the leaderboard has no rows; evaluate a run first (`svqbench eval RUN`)")
    groups, missing = reachable_runs(table)
    body = [
        f"<h1>svqbench: {html.escape(title)}</h1>",
        f'<p class="meta">dataset {html.escape(dataset)}, {len(table)} evaluations; generated '
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by svqbench {__version__}. "
        "Mean ± std over n runs (seeds); bold: the best group of its section where its 95% interval against "
        "the runner-up excludes 0 (the test under each table); highlighted rows: floors.</p>",
        "<h2>Leaderboard</h2>",
        leaderboard_html(table),
    ]
    with tempfile.TemporaryDirectory() as folder:  # views.plot writes a file
        chart = plot(dataset, table, Path(folder) / "chart.png")
        body.append(f'<img alt="bar chart of every metric" src="{png_data_uri(chart.read_bytes())}">')
    body.append("<h2>Published numbers</h2>")
    body.append(
        frame_html(reported) + '<p class="note">In their own convention and protocol; never ranked with '
        "measured rows.</p>"
        if not reported.empty
        else '<p class="note">None recorded for this dataset.</p>'
    )
    body.append("<h2>Per predicted frame</h2>")
    curves = horizon_png(groups) if groups else None
    body.append(
        f'<img alt="metric per predicted frame" src="{png_data_uri(curves)}">'
        if curves
        else '<p class="note">No run folder with metrics.json is reachable from here.</p>'
    )
    body.append(f"<h2>Test sample {index}, every group side by side</h2>")
    if groups:
        try:
            body.append(
                f'<img alt="input, truth, and each run\'s prediction and error" '
                f'src="{png_data_uri(sample_png(groups, device, index, data_root))}">'
            )
        except SvqbenchError as error:
            body.append(f'<p class="note">Not drawn: {html.escape(str(error))}</p>')
    else:
        body.append('<p class="note">No run folder is reachable from here.</p>')
    if source.endswith((".yaml", ".yml")):
        body.append(tuning_html(source))
    body.append("<h2>Runs</h2>" + runs_html(table))
    if missing:
        body.append(
            f'<p class="note">Run folders not found from {html.escape(str(Path.cwd()))} (their rows are in the '
            f"tables, not in the curves or the sample): {html.escape(', '.join(missing))}</p>"
        )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>svqbench: {html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_report(source: str, out: Path, device: torch.device, data_root: Path | None = None, index: int = 0) -> Path:
    """Write :func:`build_report` to ``out`` atomically; returns ``out``."""
    if Path(out).suffix.lower() not in (".html", ".htm"):
        raise SvqbenchError(f"--out {out}: must end in .html")
    write_text(Path(out), build_report(source, device, data_root, index))
    return Path(out)
