"""The ``svqbench`` command: thin Typer commands that parse options, call the library, print.

User mistakes (:class:`SvqbenchError`) become one line on stderr and exit code 1.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console
from rich.table import Table

from svqbench.errors import SvqbenchError

app = typer.Typer(
    name="svqbench",
    help="Spatio-temporal / video prediction with SimVP and SVQ: prep, train, eval, render, compare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(width=None if sys.stdout.isatty() else 160)  # tables are not cut when piped to a file
err = Console(stderr=True)

DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N")
ROOT = typer.Option(None, "--root", help="data root (default $SVQBENCH_DATA or ./data)")


def command(fn: Callable | None = None, *, name: str | None = None) -> Callable:
    """Register a command; SvqbenchError -> 'error: ...' and exit 1, Ctrl-C -> exit 130."""

    def register(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except SvqbenchError as e:
                err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None
            except KeyboardInterrupt:
                err.print("interrupted")
                raise typer.Exit(130) from None

        return app.command(name=name)(wrapper)

    return register(fn) if fn is not None else register


@app.callback()
def _setup() -> None:
    from svqbench.allocator import keep_freed_memory

    keep_freed_memory()


def _split_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SvqbenchError(f"--opt {pair!r}: expected key=value")
        options[key.replace("-", "_")] = value
    return options


@command
def prep(
    name: str = typer.Argument(..., help="dataset: digits, digits_small, kth, kth40, mmnist, human, kitticaltech, taxibj, weather_*, videos"),
    root: Optional[Path] = ROOT,
    src: Optional[Path] = typer.Option(None, "--src", help="folder of already-downloaded source files"),
    force: bool = typer.Option(False, "--force", help="prepare again even if complete"),
    folder_name: Optional[str] = typer.Option(None, "--name", help="store under this name (videos)"),
    url: Optional[str] = typer.Option(None, "--url", help="download from this address (mirror) instead"),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="split protocol (kth: openstl|sequences; human: subjects|openstl)"),
    size: Optional[int] = typer.Option(None, "--size", help="videos: frame size in pixels"),
    frames: Optional[str] = typer.Option(None, "--frames", help="videos: input:target frames, e.g. 10:10"),
    opt: List[str] = typer.Option([], "--opt", help="any other dataset option key=value, e.g. --opt train=512"),
) -> None:
    """Download (or take from --src) and prepare a dataset; prints its folder.

    Example: svqbench prep kth --src ~/archives/kth   |   svqbench prep videos --src clips/ --name mine --size 64 --frames 10:10
    """
    from svqbench import data

    options = _split_options(opt)
    named = {"url": url, "protocol": protocol, "size": size, "frames": frames}
    options.update({key: value for key, value in named.items() if value is not None})
    folder = data.prepare(name, root=root, src=src, force=force, folder_name=folder_name, **options)
    out.print(str(folder))


@command
def recipes() -> None:
    """List the named recipes (use them as `svqbench train DATASET/RECIPE`).

    Example: svqbench recipes
    """
    from svqbench.config import list_recipes

    for name in list_recipes():
        out.print(name, highlight=False)


@command
def train(
    recipe: str = typer.Argument(..., help="a .yaml path, a dataset (its default recipe) or DATASET/RECIPE"),
    set_: List[str] = typer.Option([], "--set", help="override a key: --set train.lr=1e-3 --set model.hid_S=32"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="where to write (default runs/NAME-TIME)"),
    resume: bool = typer.Option(False, "--resume", help="continue --run-dir from its last.pt"),
    root: Optional[Path] = ROOT,
    device: str = DEVICE,
    quiet: bool = typer.Option(False, "--quiet", help="print only the run directory"),
) -> None:
    """Train a recipe; prints the run directory.

    Example: svqbench train digits/simvp --set train.epochs=2 --device cuda
    """
    from svqbench.config import load_recipe
    from svqbench.device import resolve_device
    from svqbench.progress import Reporter
    from svqbench.runs import new_run_dir
    from svqbench.train import train as train_recipe

    if resume and run_dir is None:
        raise SvqbenchError("--resume needs --run-dir DIR of the run to continue")
    cfg = load_recipe(recipe, set_)
    target = run_dir or new_run_dir(cfg)
    train_recipe(cfg, target, resolve_device(device), data_root=root, resume=resume, reporter=Reporter(quiet))
    out.print(str(target), highlight=False)


def _parse_metrics(text: Optional[str]) -> Optional[tuple[str, ...]]:
    from svqbench.metrics import METRIC_NAMES

    if not text:
        return None
    names = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    for name in names:
        if name not in METRIC_NAMES:
            raise SvqbenchError(f"--metrics: unknown metric {name!r}; valid: {', '.join(METRIC_NAMES)}")
    return names


@command(name="eval")
def eval_(
    run_dir: Path = typer.Argument(..., help="a run directory written by `svqbench train`"),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="comma list: mae,mse,rmse,ssim,psnr,lpips"),
    split: Optional[str] = typer.Option(None, "--split", help="test (default) or val"),
    convention: Optional[str] = typer.Option(None, "--convention", help="standard (default) or openstl"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    lpips_weights: Optional[Path] = typer.Option(None, "--lpips-weights", help="LPIPS weight file"),
    plot: bool = typer.Option(False, "--plot", help="also draw RUN/horizon.png (metric per frame)"),
    svq_stats: bool = typer.Option(False, "--svq-stats", help="add SVQ code-weight statistics to metrics.json"),
    root: Optional[Path] = ROOT,
    device: str = DEVICE,
) -> None:
    """Evaluate a run's best checkpoint; writes RUN/metrics.json and a leaderboard row.

    Example: svqbench eval runs/digits-simvp_svq-20261124-120000 --metrics mae,mse,ssim,psnr,lpips
    """
    from svqbench.device import resolve_device
    from svqbench.evaluate import evaluate

    if split not in (None, "test", "val"):
        raise SvqbenchError(f"--split {split!r}: valid: test, val")
    report = evaluate(run_dir, resolve_device(device), _parse_metrics(metrics), split, convention, root,
                      batch_size, lpips_weights, plot, svq_stats=svq_stats)
    table = Table(title=f"{report['run']} ({report['split']}, {report['convention']})")
    for name in report["overall"]:
        table.add_column(name, justify="right")
    table.add_row(*(f"{v:.5g}" for v in report["overall"].values()))
    out.print(table)


@command
def render(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    index: int = typer.Option(0, "--index", help="which test sample"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="GIF path (default RUN/render-INDEX.gif)"),
    split: str = typer.Option("test", "--split"),
    root: Optional[Path] = ROOT,
    device: str = DEVICE,
) -> None:
    """GIF (and PNG strip) of input, ground truth, prediction and |error| for one sample.

    Example: svqbench render runs/digits-simvp_svq-20261124-120000 --index 3 --out pred.gif
    """
    from svqbench.device import resolve_device
    from svqbench.predict import predict_sample
    from svqbench.render import comparison_frames, strip, write_gif, write_png
    from svqbench.runs import LoadedRun

    run = LoadedRun(run_dir, resolve_device(device))
    inputs, truth, pred = predict_sample(run, index, split, root)
    gif = out_file or run.dir / f"render-{index}.gif"
    if gif.suffix.lower() != ".gif":
        raise SvqbenchError(f"--out {gif}: must end in .gif")
    write_gif(comparison_frames(inputs, truth, pred), gif)
    png = write_png(strip(inputs, truth, pred), gif.with_suffix(".png"))
    out.print(f"{gif}\n{png}", highlight=False)


@command
def predict(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    video: Path = typer.Argument(..., help="your clip (any format OpenCV reads); its last T_in frames are used"),
    out_file: Path = typer.Option(Path("prediction.gif"), "--out", help=".gif, or .npy for raw (T,C,H,W) floats"),
    frames: Optional[int] = typer.Option(None, "--frames", help="frames to predict (default: the dataset's)"),
    root: Optional[Path] = ROOT,
    device: str = DEVICE,
) -> None:
    """Continue your own clip with a trained model (the clip is cropped and resized as `prep videos` does).

    Example: svqbench predict runs/kth-simvp_svq-20261124-120000 walk.avi --out walk_pred.gif
    """
    import numpy as np

    from svqbench.device import resolve_device
    from svqbench.fileio import atomic_path
    from svqbench.predict import predict_clip
    from svqbench.render import to_display, write_gif
    from svqbench.runs import LoadedRun

    if not video.is_file():
        raise SvqbenchError(f"{video}: no such file")
    if out_file.suffix.lower() not in (".gif", ".npy"):
        raise SvqbenchError(f"--out {out_file}: must end in .gif or .npy")
    run = LoadedRun(run_dir, resolve_device(device))
    inputs, pred = predict_clip(run, video, frames, root)
    if out_file.suffix.lower() == ".npy":
        with atomic_path(out_file) as tmp:
            np.save(tmp, pred.numpy())
    else:
        write_gif(list(to_display(inputs)) + list(to_display(pred)), out_file)
    out.print(str(out_file), highlight=False)


@command(name="leaderboard")
def leaderboard_(
    dataset: Optional[str] = typer.Argument(None, help="dataset name (default: every leaderboard)"),
    convention: Optional[str] = typer.Option(None, "--convention", help="only rows of this convention"),
) -> None:
    """Show leaderboards with the best value per metric marked.

    Example: svqbench leaderboard digits
    """
    from svqbench import leaderboard

    names = [dataset] if dataset else sorted(p.stem for p in leaderboard.leaderboards_dir().glob("*.csv"))
    if not names:
        raise SvqbenchError(f"no leaderboards in {leaderboard.leaderboards_dir()}; run `svqbench eval RUN` first")
    for name in names:
        table = leaderboard.read(name)
        if convention:
            table = table[table["convention"] == convention]
        for (conv, split), group in table.groupby(["convention", "split"], sort=True):
            group = group.drop(columns=["convention", "split"])
            best = leaderboard.best_rows(group)
            view = Table(title=f"{name}: {split} split, {conv} convention")
            for column in group.columns:
                view.add_column(column, justify="right" if column not in ("run", "model", "recipe") else "left")
            for index, row in group.iterrows():
                view.add_row(*(
                    f"[bold green]{leaderboard.format_value(v)}*[/]" if best.get(c) == index else leaderboard.format_value(v)
                    for c, v in row.items()
                ))
            out.print(view)
    out.print("* best value in its column", style="dim")


@command
def quickstart(
    root: Optional[Path] = ROOT,
    device: str = DEVICE,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="new working folder (default ./quickstart-YYYYmmdd-HHMMSS)"),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 where measured faster) | fp32 | bf16"),
    set_: List[str] = typer.Option([], "--set", help="override a train.* or eval.* key of every quick recipe, e.g. train.max_steps=50"),
    refresh_assets: bool = typer.Option(False, "--refresh-assets", help="also overwrite the repository's assets/quickstart.gif "
                                        "and leaderboards/digits_small.* (run from the repository root)"),
) -> None:
    """Prep `digits_small`, train and evaluate blank / persistence / SimVP / SimVP+SVQ, render, compare.

    Example: svqbench quickstart   (writes ./quickstart-YYYYmmdd-HHMMSS/, nothing else)
    """
    from svqbench.device import resolve_device
    from svqbench import quickstart as qs

    result = qs.run_quickstart(resolve_device(device), root, out_dir or qs.default_folder(), out, precision, tuple(set_))
    out.print(qs.results_table(result))
    verdict = "beats" if result.svq_beats_floors() else "does NOT beat"
    out.print(f"SimVP+SVQ {verdict} both floors (blank, persistence) on every metric, overall and on frame +1.",
              highlight=False)
    out.print(f"{result.folder}/{qs.GIF_NAME}  (runs/, leaderboards/ beside it)", highlight=False)
    if refresh_assets:
        for path in qs.refresh_assets(result, Path.cwd()):
            out.print(f"refreshed {path}", highlight=False)


@command
def doctor(root: Optional[Path] = ROOT) -> None:
    """One screen on this installation: torch build, devices, bf16, threads, data, LPIPS weights, leaderboards.

    Example: svqbench doctor
    """
    from svqbench.doctor import diagnose

    table = Table("", "", show_header=False, box=None, title="svqbench doctor")
    for key, value in diagnose(root).items():
        table.add_row(f"[bold]{key}[/]", value)
    out.print(table)


@command
def bench(
    recipe: str = typer.Argument(..., help="a .yaml path, a dataset (its default recipe) or DATASET/RECIPE"),
    set_: List[str] = typer.Option([], "--set", help="override a key: --set model.codebook_size=1000"),
    shape: Optional[str] = typer.Option(None, "--shape", help="T_in,T_out,C,H,W (default: the dataset's)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="default: the recipe's"),
    repeats: int = typer.Option(3, "--repeats", help="timed repeats per candidate (the minimum is kept)"),
    svq_layer: bool = typer.Option(False, "--svq-layer", help="also time the SVQ layer, fast vs explicit form"),
    compare: bool = typer.Option(False, "--compare", help="also time training steps: SimVP vs SVQ forms and levers"),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="peak memory per candidate (one subprocess each)"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="also save the results as JSON"),
    device: str = DEVICE,
) -> None:
    """Parameters, FLOPs, inference frames/s and training samples/s of a recipe's model.

    Example: svqbench bench kth/simvp_svq --shape 10,20,1,128,128 --batch-size 4 --svq-layer --compare
    """
    from svqbench.bench import bench_info, run_bench
    from svqbench.config import load_recipe
    from svqbench.device import resolve_device
    from svqbench.fileio import write_json

    cfg = load_recipe(recipe, set_)
    report = run_bench(cfg, bench_info(cfg, shape), resolve_device(device), batch_size, repeats, svq_layer,
                       compare, memory)
    for table in bench_tables(report):
        out.print(table)
    if out_file is not None:
        write_json(out_file, report)
        out.print(str(out_file), highlight=False)


def _cell(row: dict, key: str, spec: str) -> str:
    """A formatted number, or the candidate's error when it could not be measured."""
    return format(row[key], spec) if key in row else row.get("error", "-")


def bench_tables(report: dict) -> list[Table]:
    """Rich tables of a `run_bench` report."""
    profile = report["profile"]
    title = f"{report['recipe']} on {report['device_name']}, batch {report['batch_size']}, shape {report['shape']}"
    tables = [Table("parameters", "GFLOPs / prediction", "inference frames/s", "train samples/s", title=title)]
    tables[0].add_row(f"{profile['parameters'] / 1e6:.2f}M", f"{profile['flops'] / 1e9:.1f}",
                      f"{profile['inference_frames_per_s']:.1f}", f"{profile['train_samples_per_s']:.2f}")
    if "svq_layer" in report:
        layer = report["svq_layer"]
        table = Table("SVQ form", "fwd+bwd s", "step memory MB", "peak MB",
                      title=f"SVQ layer on latents {layer['latent_shape']}, {layer['codebook_size']} codes"
                            + (f": fast form {layer['speedup']:.1f}x faster" if "speedup" in layer else "")
                            + (f", {layer['memory_ratio']:.1f}x less memory" if "memory_ratio" in layer else ""))
        for name, row in layer["forms"].items():
            table.add_row(name, _cell(row, "seconds", ".4f"), _cell(row, "extra_mb", ".0f"), _cell(row, "peak_mb", ".0f"))
        tables.append(table)
    if "compare" in report:
        compare = report["compare"]
        table = Table("variant", "step s", "samples/s", f"time / {compare['baseline']}", "step memory MB",
                      "peak MB", title="training step")
        for name, row in compare["variants"].items():
            table.add_row(name, _cell(row, "step_s", ".3f"), _cell(row, "samples_per_s", ".2f"),
                          _cell(row, "time_vs_baseline", ".2f"), _cell(row, "extra_mb", ".0f"), _cell(row, "peak_mb", ".0f"))
        tables.append(table)
    return tables


def main() -> None:  # pragma: no cover - the console script entry point
    app(prog_name="svqbench")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
