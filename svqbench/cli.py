"""The ``svqbench`` command: thin Typer commands that parse options, call the library, print.

User mistakes (:class:`SvqbenchError`) become one line on stderr and exit code 1.
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from svqbench.errors import SvqbenchError
from svqbench.fileio import no_space

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
                result = fn(*args, **kwargs)
                if "svqbench.engine.world" in sys.modules:  # a command that may have joined torchrun's process group
                    sys.modules["svqbench.engine.world"].leave_world()
                return result
            except SvqbenchError as e:
                err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)  # [x] stays text
                raise typer.Exit(1) from None
            except OSError as e:  # a full disk anywhere (a log line, an extraction): one line too
                full = no_space(e, e.filename or "a file")
                if full is None:
                    raise
                err.print(f"[bold red]error:[/] {full}", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None
            except KeyboardInterrupt as e:  # training's says where its checkpoint is
                err.print(str(e) or "interrupted", highlight=False, soft_wrap=True)
                raise typer.Exit(130) from None

        return app.command(name=name)(wrapper)

    return register(fn) if fn is not None else register


@app.callback()
def _setup() -> None:
    from svqbench.engine.allocator import keep_freed_memory

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
    name: str = typer.Argument(
        ...,
        help="dataset: digits, digits_small, kth, kth40, mmnist, human, kitticaltech, taxibj, weather_*, videos, "
        "arrays",
    ),
    root: Optional[Path] = ROOT,
    src: Optional[Path] = typer.Option(
        None, "--src", help="folder of already-downloaded source files (arrays: the array file)"
    ),
    force: bool = typer.Option(False, "--force", help="prepare again even if complete"),
    folder_name: Optional[str] = typer.Option(None, "--name", help="store under this name (videos, arrays)"),
    url: Optional[str] = typer.Option(None, "--url", help="download from this address (mirror) instead"),
    protocol: Optional[str] = typer.Option(
        None, "--protocol", help="split protocol (kth: openstl|sequences; human: subjects|openstl)"
    ),
    size: Optional[int] = typer.Option(None, "--size", help="videos: frame size in pixels"),
    frames: Optional[str] = typer.Option(None, "--frames", help="videos, arrays: input:target frames, e.g. 10:10"),
    var: List[str] = typer.Option([], "--var", help="arrays: an array or variable of the file (repeat: channels)"),
    target: List[str] = typer.Option(
        [], "--target", help="arrays, weather: predict only these channels from all of them (repeat), e.g. t2m"
    ),
    split: Optional[str] = typer.Option(None, "--split", help="arrays: 0.8,0.1,0.1 or train=A:B,val=C:D,test=E:F"),
    opt: List[str] = typer.Option([], "--opt", help="any other dataset option key=value, e.g. --opt train=512"),
    verify: bool = typer.Option(False, "--verify", help="recompute the checksums of the prepared folder instead"),
    trust_src: bool = typer.Option(
        False, "--trust-src", help="use --src files whose checksum differs from the published one (recorded)"
    ),
) -> None:
    """Download (or take from --src) and prepare a dataset; prints its folder. --verify checks a prepared one.

    Example: svqbench prep kth --src ~/archives/kth   |   svqbench prep videos --src clips/ --name mine --size 64
    --frames 10:10
    |   svqbench prep arrays --src radar.npy --name radar --frames 10:10
    """
    from svqbench import data

    if verify:
        problems = data.verify(folder_name or name, root)
        if problems:
            raise SvqbenchError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        out.print(
            f"{(root or data.default_root()) / (folder_name or name)}: every file matches its checksum", highlight=False
        )
        return
    options = _split_options(opt)
    named = {
        "url": url,
        "protocol": protocol,
        "size": size,
        "frames": frames,
        "var": ",".join(var) or None,
        "targets": ",".join(target) or None,
        "split": split,
    }
    options.update({key: value for key, value in named.items() if value is not None})
    folder = data.prepare(
        name, root=root, src=src, force=force, folder_name=folder_name, trust_src=trust_src, **options
    )
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
def models(
    dataset: str = typer.Option("digits", "--dataset", help="count parameters at this dataset's clip shape"),
    model: List[str] = typer.Option(
        [], "--model", help="also a plugin: package.module:Factory or path/file.py:Factory"
    ),
    recipe: Optional[str] = typer.Option(
        None, "--recipe", help="the parameter count of this recipe's model at its dataset's shape (no data needed)"
    ),
    set_: List[str] = typer.Option([], "--set", help="with --recipe: override a key, e.g. model.hid_T=128"),
    output: str = typer.Option("table", "--format", help="table | json"),
    root: Optional[Path] = ROOT,
) -> None:
    """List every model (built-in, installed through the `svqbench.models` entry points, and --model plugins)
    with its parameter count (default arguments) at a dataset's clip shape; or one recipe's model with --recipe.

    Example: svqbench models --dataset kth --model mymodel.py:MyNet   |   svqbench models --recipe kth/tau --format json
    """
    from svqbench.data import clip_shape
    from svqbench.models import model_catalog
    from svqbench.models.plugins import absolute_name

    if output not in ("table", "json"):
        raise SvqbenchError(f"--format {output!r}: valid: table, json")
    if recipe is not None:
        _recipe_parameters(recipe, set_, output, root)
        return

    shape = clip_shape(dataset, root)
    table = Table(
        "model",
        "kind",
        "parameters",
        "note",
        title=f"models at {dataset}: {shape.frames_in}->{shape.frames_out} frames of "
        f"{shape.channels}x{shape.height}x{shape.width}",
    )
    for row in model_catalog(shape, [absolute_name(name, Path.cwd()) for name in model]):
        count = "-" if row["parameters"] is None else f"{row['parameters']:,}"
        table.add_row(row["name"], row["kind"], count, row["note"])
    out.print(table)


def _recipe_parameters(name: str, overrides: list[str], output: str, root: Optional[Path]) -> None:
    """``models --recipe``: one recipe's model built on the meta device at its dataset's clip shape."""
    import json

    import torch

    from svqbench.config import load_recipe
    from svqbench.data import clip_shape
    from svqbench.models import count_parameters, create_model

    loaded = load_recipe(name, overrides)
    shape = clip_shape(loaded.dataset, root)
    with torch.device("meta"):
        parameters = count_parameters(create_model(loaded.model_name, shape, **loaded.model_args))
    record = {
        "recipe": loaded.name,
        "model": loaded.model_name,
        "dataset": loaded.dataset,
        "shape": {
            "frames_in": shape.frames_in,
            "frames_out": shape.frames_out,
            "channels": shape.channels,
            "height": shape.height,
            "width": shape.width,
        },
        "parameters": parameters,
    }
    if output == "json":
        print(json.dumps(record))
        return
    out.print(
        f"{record['recipe']} ({record['model']}) at {loaded.dataset}: {shape.frames_in}->{shape.frames_out} frames of "
        f"{shape.channels}x{shape.height}x{shape.width}: {parameters:,} parameters",
        highlight=False,
    )


@command
def train(
    recipe: Optional[str] = typer.Argument(None, help="a .yaml path, a dataset (its default recipe) or DATASET/RECIPE"),
    set_: List[str] = typer.Option([], "--set", help="override a key: --set train.lr=1e-3 --set model.hid_S=32"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="where to write (default runs/NAME-TIME)"),
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="continue the run in DIR from its last.pt (no RECIPE)"
    ),
    force: bool = typer.Option(False, "--force", help="replace the run already in --run-dir"),
    root: Optional[Path] = ROOT,
    device: str = DEVICE,
    quiet: bool = typer.Option(False, "--quiet", help="print only the run directory"),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="one run per seed, e.g. 1,2,3 (folders RUN-DIR/seedK)"),
) -> None:
    """Train a recipe (one run per seed with --seeds), or resume a run; prints the run directory. Runs under torchrun
    too.

    Example: svqbench train digits/simvp --set train.epochs=2 --device cuda   |   svqbench train digits/simvp --seeds
    1,2,3   |   svqbench train --resume runs/X
    """
    from svqbench.config import load_recipe, with_seed
    from svqbench.engine.machine import resolve_device
    from svqbench.engine.runs import new_run_dir, resumed_recipe, seeded_run_dir
    from svqbench.engine.train import train as train_recipe
    from svqbench.engine.world import launched_world
    from svqbench.progress import Reporter

    world = launched_world()
    if resume is not None:
        if recipe is not None or seeds is not None or (run_dir is not None and run_dir != resume):
            raise SvqbenchError("--resume DIR takes the recipe and folder from DIR; drop RECIPE, --seeds and --run-dir")
        plan = [(resumed_recipe(resume, set_), resume)]
    else:
        if recipe is None:
            raise SvqbenchError("missing RECIPE (e.g. digits/simvp_svq), or --resume DIR to continue a run")
        if run_dir is None and world.size > 1:
            raise SvqbenchError("under torchrun give --run-dir: every process must write to the same folder")
        cfg = load_recipe(recipe, set_)
        if seeds is None:
            plan = [(cfg, run_dir or new_run_dir(cfg))]
        else:
            plan = [(with_seed(cfg, seed), seeded_run_dir(cfg, seed, run_dir)) for seed in _parse_seeds(seeds)]
    for seeded, target in plan:
        train_recipe(
            seeded,
            target,
            resolve_device(device),
            data_root=root,
            resume=resume is not None,
            force=force,
            reporter=Reporter(quiet),
        )
        if world.is_main:
            out.print(str(target), highlight=False)


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SvqbenchError(f"--seeds {text!r}: expected integers separated by commas, e.g. 1,2,3") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SvqbenchError(f"--seeds {text!r}: expected distinct integers, e.g. 1,2,3")
    return seeds


def _parse_metrics(text: Optional[str]) -> Optional[tuple[str, ...]]:
    from svqbench.metrics.conventions import check_metric_names

    if not text:
        return None
    return check_metric_names(tuple(m.strip().lower() for m in text.split(",") if m.strip()), "--metrics")


def _parse_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise SvqbenchError(f"--range {text!r}: expected LO,HI in physical units, e.g. 200,320") from None
    return low, high


@command(name="eval")
def eval_(
    run_dir: Path = typer.Argument(..., help="a run directory written by `svqbench train`"),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="comma list: mae,mse,rmse,ssim,psnr,lpips,fvd"),
    split: Optional[str] = typer.Option(None, "--split", help="test (default) or val"),
    convention: Optional[str] = typer.Option(None, "--convention", help="standard (default) or openstl"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    lpips_weights: Optional[Path] = typer.Option(None, "--lpips-weights", help="LPIPS weight file"),
    fvd_weights: Optional[Path] = typer.Option(None, "--fvd-weights", help="I3D weight file (i3d-kinetics-400.ckpt)"),
    fvd_frames: str = typer.Option(
        "predicted", "--fvd-frames", help="FVD clips: predicted (frames only) or all (context + predicted)"
    ),
    fvd_videos: Optional[int] = typer.Option(
        None, "--fvd-videos", help="FVD over N windows drawn with seed 0 (default: every window)"
    ),
    value_range: Optional[str] = typer.Option(
        None, "--range", help="LO,HI: physical range mapped to [0,1] for ssim/psnr/lpips on weather"
    ),
    plot: bool = typer.Option(False, "--plot", help="also draw RUN/horizon.png (metric per frame)"),
    svq_stats: bool = typer.Option(False, "--svq-stats", help="add SVQ code-weight statistics to metrics.json"),
    perturb_ratio: Optional[float] = typer.Option(
        None,
        "--perturb",
        help="evaluate on inputs with this share of values multiplied by U[-2,2] (keyed by window: the same for every "
        "model)",
    ),
    frames: Optional[int] = typer.Option(
        None, "--frames", help="predict N frames, rolling out past the training horizon (windows need N targets)"
    ),
    dataset: Optional[str] = typer.Option(
        None, "--dataset", help="evaluate on another prepared dataset of the run's clip shape (default: the run's)"
    ),
    root: Optional[Path] = ROOT,
    device: str = DEVICE,
) -> None:
    """Evaluate a run's selected checkpoint (train.select); writes RUN/metrics.json and a leaderboard row. Runs under
    torchrun too.

    Example: svqbench eval runs/digits-simvp_svq-20261124-120000 --metrics mae,mse,ssim,psnr,lpips
    |   svqbench eval RUN --dataset digits_small_long --frames 30 --plot   (prep digits_small --frames 10:30 --name
    digits_small_long)
    """
    from svqbench.engine.evaluate import evaluate
    from svqbench.engine.machine import resolve_device

    if split not in (None, "test", "val"):
        raise SvqbenchError(f"--split {split!r}: valid: test, val")
    if batch_size is not None and batch_size < 1:
        raise SvqbenchError(
            f"--batch-size {batch_size}: valid: an integer >= 1 (default: the recipe's eval.batch_size)"
        )
    from svqbench.engine.world import launched_world
    from svqbench.metrics.fvd import FvdProtocol

    report = evaluate(
        run_dir,
        resolve_device(device),
        _parse_metrics(metrics),
        split,
        convention,
        root,
        batch_size,
        lpips_weights,
        plot,
        svq_stats=svq_stats,
        value_range=_parse_range(value_range),
        perturb_ratio=perturb_ratio,
        fvd=FvdProtocol(fvd_frames, fvd_videos),
        fvd_weights=fvd_weights,
        dataset=dataset,
        frames=frames,
    )
    if not launched_world().is_main:
        return
    table = Table(title=f"{report['run']} ({report['split']}, {report['convention']})")
    for name in report["overall"]:
        table.add_column(name, justify="right")
    table.add_row(*(f"{v:.5g}" for v in report["overall"].values()))
    out.print(table)
    if "fvd" in report:
        fvd = report["fvd"]
        out.print(
            f"FVD {fvd['value']:.5g} [{fvd['level']:.0%} interval {fvd['low']:.5g}, {fvd['high']:.5g}; "
            f"{fvd['method']}], {fvd['videos_used']} videos; protocol {fvd['protocol']['id']}"
        )


@command
def render(
    run_dirs: List[Path] = typer.Argument(..., help="a run directory (several with --compare)"),
    index: int = typer.Option(0, "--index", help="which test sample"),
    out_file: Optional[Path] = typer.Option(
        None, "--out", help="GIF path (default RUN/render-INDEX.gif, or compare-INDEX.gif)"
    ),
    compare: bool = typer.Option(
        False, "--compare", help="several runs on the same sample, one row each, with |error| maps"
    ),
    split: str = typer.Option("test", "--split"),
    root: Optional[Path] = ROOT,
    device: str = DEVICE,
) -> None:
    """GIF (and PNG strip) of input, ground truth, prediction and |error| for one sample.

    Example: svqbench render runs/digits-simvp_svq-20261124-120000 --index 3 --out pred.gif
    Example: svqbench render --compare runs/digits-simvp-* runs/digits-simvp_svq-* --index 3 --out compare.gif
    """
    from svqbench.engine.machine import resolve_device
    from svqbench.engine.predict import predict_runs, predict_sample
    from svqbench.engine.runs import LoadedRun
    from svqbench.render import compare_frames, compare_strip, comparison_frames, strip, write_gif, write_png

    if len(run_dirs) > 1 and not compare:
        raise SvqbenchError(f"got {len(run_dirs)} run directories: add --compare to show several runs on one sample")
    gif = out_file or Path(run_dirs[0]) / (f"compare-{index}.gif" if compare else f"render-{index}.gif")
    if gif.suffix.lower() != ".gif":
        raise SvqbenchError(f"--out {gif}: must end in .gif")
    if compare:
        inputs, truth, rows = predict_runs(run_dirs, resolve_device(device), index, split, root)
        write_gif(compare_frames(inputs, truth, rows), gif)
        png = write_png(compare_strip(inputs, truth, rows), gif.with_suffix(".png"))
    else:
        run = LoadedRun(run_dirs[0], resolve_device(device))
        inputs, truth, pred = predict_sample(run, index, split, root)
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

    from svqbench.engine.machine import resolve_device
    from svqbench.engine.predict import predict_clip
    from svqbench.engine.runs import LoadedRun
    from svqbench.fileio import atomic_path
    from svqbench.render import to_display, write_gif

    if frames is not None and frames < 1:
        raise SvqbenchError(f"--frames {frames}: valid: an integer >= 1 (default: the dataset's target frames)")
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


@command
def fold(
    run_dir: Path = typer.Argument(..., help="a simvp_svq run directory (linear-output SVQ: out_relu false)"),
    out_dir: Path = typer.Option(..., "--out", help="the new simvp_mlp run directory"),
    force: bool = typer.Option(False, "--force", help="replace --out if it exists"),
    device: str = DEVICE,
) -> None:
    """Fold a trained SimVP+SVQ run into the SimVP+MLP run computing the same predictions.

    Example: svqbench fold runs/digits-simvp_svq-20261124-120000 --out runs/digits-simvp_svq-folded
    """
    from svqbench.engine.fold import fold_run
    from svqbench.engine.machine import resolve_device

    report = fold_run(run_dir, out_dir, resolve_device(device), force)
    params = report["parameters"]
    out.print(
        f"{report['out']}\nparameters {params['svq']:,} -> {params['mlp']:,}; largest relative difference "
        f"of the predictions on a random clip {report['max_relative_difference']:.2e}",
        highlight=False,
    )


@command(name="import-openstl")
def import_openstl(
    checkpoint: Path = typer.Argument(..., help="OpenSTL's .pth state dict or Lightning .ckpt"),
    recipe: str = typer.Option(..., "--recipe", help="the recipe the checkpoint was trained as, e.g. kth/mim"),
    set_: List[str] = typer.Option([], "--set", help="override a key as for train: --set model.num_hidden=[64,64]"),
    run_dir: Path = typer.Option(..., "--run-dir", help="the run folder to write"),
    force: bool = typer.Option(False, "--force", help="replace the run already in --run-dir"),
    root: Optional[Path] = ROOT,
    device: str = DEVICE,
) -> None:
    """Import an OpenSTL checkpoint as a run folder that eval, render, predict, compare and report use.

    Example: svqbench import-openstl mmnist_simvp_gsta.pth --recipe mmnist/simvp --run-dir runs/openstl-simvp
    """
    from svqbench.engine.machine import resolve_device
    from svqbench.interop.openstl import check_forecast, import_checkpoint

    report = import_checkpoint(checkpoint, recipe, run_dir, set_, root, force)
    frames = check_forecast(report["run_dir"], resolve_device(device))
    out.print(
        f"{report['run_dir']}\n{report['model']}: {report['keys']} tensors, {report['parameters']:,} parameters "
        f"from {checkpoint} (sha256 {report['sha256'][:12]}); forecasts {frames} on {device}",
        highlight=False,
    )


@command(name="leaderboard")
def leaderboard_(
    dataset: Optional[str] = typer.Argument(None, help="dataset name (default: every leaderboard)"),
    convention: Optional[str] = typer.Option(None, "--convention", help="only rows of this convention"),
    fmt: str = typer.Option("md", "--format", help="md | csv | json | latex"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="write to this file instead of printing"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="also draw a PNG bar chart per metric (error bars: std)"),
) -> None:
    """Leaderboards: runs grouped by recipe (mean +- std, n) per protocol, convention and split; published numbers
    apart.

    Example: svqbench leaderboard digits --format latex --plot digits.png
    """
    from svqbench.fileio import write_text
    from svqbench.results import leaderboard
    from svqbench.results.views import FORMATS, export
    from svqbench.results.views import plot as plot_leaderboard

    if fmt not in FORMATS:
        raise SvqbenchError(f"--format {fmt!r}: valid: {', '.join(FORMATS)}")
    names = [dataset] if dataset else sorted(p.stem for p in leaderboard.leaderboards_dir().glob("*.csv"))
    if not names:
        raise SvqbenchError(f"no leaderboards in {leaderboard.leaderboards_dir()}; run `svqbench eval RUN` first")
    if (out_file or plot) and len(names) > 1:
        raise SvqbenchError("--out and --plot need one DATASET")
    texts = []
    for name in names:
        table = leaderboard.read(name)
        if convention:
            table = table[table["convention"] == convention]
        texts.append(export(name, table, fmt, leaderboard.reported(name)))
        if plot:
            out.print(str(plot_leaderboard(name, table, plot)), highlight=False)
    if out_file:
        write_text(out_file, "\n".join(texts))
        out.print(str(out_file), highlight=False)
    else:
        out.print("\n".join(texts), highlight=False, markup=False, soft_wrap=True)


@command
def compare(
    runs: List[Path] = typer.Argument(None, help="RUN_A RUN_B (or use --a/--b for groups)"),
    a: List[Path] = typer.Option([], "--a", help="a run of group A (repeat for seeds)"),
    b: List[Path] = typer.Option([], "--b", help="a run of group B (repeat for seeds)"),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="comma list (default: every shared metric)"),
    resamples: int = typer.Option(10_000, "--resamples", help="bootstrap resamples of independent units"),
    seed: int = typer.Option(0, "--seed", help="bootstrap seed"),
    split: str = typer.Option("test", "--split", help="the evaluated split to compare: test or val"),
    perturb_ratio: Optional[float] = typer.Option(
        None, "--perturb", help="compare the evaluations on perturbed inputs (`eval --perturb R`)"
    ),
    convention: Optional[str] = typer.Option(
        None, "--convention", help="standard or openstl (default: the only one evaluated)"
    ),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also save the result as JSON"),
) -> None:
    """Paired comparison of runs (or seed groups): A - B with 95% intervals over independent units of windows
    (source videos, sequences, blocks) and across seeds.

    A difference counts only when both intervals exclude 0 (the one across seeds needs 2+ runs a side).

    Example: svqbench compare runs/simvp-seed1 runs/simvp_svq-seed1   |   svqbench compare --a r/s1 --a r/s2 --b q/s1
    --b q/s2
    """
    from svqbench.fileio import write_json
    from svqbench.results.compare import compare_groups

    runs = list(runs or [])
    if runs and (a or b):
        raise SvqbenchError("give RUN_A RUN_B or --a/--b groups, not both")
    if runs:
        if len(runs) != 2:
            raise SvqbenchError(f"compare needs two runs, got {len(runs)}; use --a/--b for groups")
        a, b = [runs[0]], [runs[1]]
    if split not in ("test", "val"):
        raise SvqbenchError(f"--split {split!r}: valid: test, val")
    if perturb_ratio is not None and not 0.0 < perturb_ratio <= 1.0:
        raise SvqbenchError(
            f"--perturb {perturb_ratio}: valid: the share of input values `eval --perturb` used, in (0, 1]"
        )
    if perturb_ratio:
        split = f"{split}/perturb={perturb_ratio:g}"  # the split name eval --perturb gives its rows and files
    result = compare_groups(a, b, _parse_metrics(metrics), resamples, seed, split, convention)
    table = Table(
        title=f"A - B over {result['windows']} {result['split']} windows in {result['units']} independent "
        f"units ({result['unit']}; {result['convention']})"
    )
    for column in ("metric", "A", "B", "A - B", "95% over units", "95% across seeds", "verdict"):
        table.add_column(column, justify="left" if column in ("metric", "verdict") else "right")
    for name, row in result["metrics"].items():
        diff, seeds = row["difference"], row["seeds"]
        table.add_row(
            name,
            f"{row['a']:.5g}",
            f"{row['b']:.5g}",
            f"{diff['mean']:+.4g}",
            f"[{diff['low']:+.4g}, {diff['high']:+.4g}]" if diff["comparable"] else "-",
            f"[{seeds['low']:+.4g}, {seeds['high']:+.4g}]" if seeds else "-",
            row["verdict"],
        )
    out.print(table)
    out.print(f"A: {', '.join(result['a'])}\nB: {', '.join(result['b'])}", highlight=False)
    if json_out:
        write_json(json_out, result)


@command
def report(
    source: str = typer.Argument(..., help="a dataset with a leaderboard, or a study YAML"),
    out_file: Path = typer.Option(Path("report.html"), "--out", help="the HTML file to write"),
    index: int = typer.Option(0, "--index", help="the test sample every run predicts"),
    root: Optional[Path] = ROOT,
    device: str = DEVICE,
) -> None:
    """One self-contained HTML page (styles and images inline): leaderboard, published numbers, per-frame curves,
    the runs on one test sample, each run's recipe, seed, commit and training time.

    Example: svqbench report digits_small --out report.html   |   svqbench report recipes/studies/digits_small.yaml
    """
    from svqbench.engine.machine import resolve_device
    from svqbench.flows.report import write_report

    out.print(str(write_report(source, out_file, resolve_device(device), root, index)), highlight=False)


@command
def sweep(
    study_file: Path = typer.Argument(..., help="a study YAML, e.g. recipes/studies/digits_small.yaml"),
    shard: str = typer.Option("1/1", "--shard", help="K/N: only every N-th (recipe, seed) run, from the K-th"),
    root: Optional[Path] = ROOT,
    device: str = DEVICE,
) -> None:
    """Train and evaluate every (recipe, seed) of a study, skipping finished runs and resuming interrupted ones.

    Concurrent sweeps of one study (shards or duplicates, on machines sharing the run folders) do each run once.

    Example: svqbench sweep recipes/studies/digits_small.yaml --device cuda --shard 2/4
    """
    from svqbench.engine.machine import resolve_device
    from svqbench.flows.sweep import load_study, parse_shard
    from svqbench.flows.sweep import sweep as run_sweep

    run_sweep(
        load_study(study_file),
        resolve_device(device),
        root,
        echo=lambda line: out.print(line, highlight=False),
        shard=parse_shard(shard),
    )


@command
def tune(
    study_file: Path = typer.Argument(..., help="a study YAML with a tune: section"),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="tune only this recipe of the study (name or label)"),
    trials: Optional[int] = typer.Option(None, "--trials", help="trials per recipe (default: the study's tune.trials)"),
    set_: List[str] = typer.Option([], "--set", help="override a key of every trial, e.g. train.num_workers=2"),
    storage: Optional[str] = typer.Option(
        None, "--storage", help="postgresql://USER@HOST/DB (many machines), or journal:PATH (default: a journal file)"
    ),
    status: bool = typer.Option(False, "--status", help="print the trials so far from the storage; run nothing"),
    then_sweep: bool = typer.Option(False, "--then-sweep", help="then retrain the best recipes over the seeds (sweep)"),
    root: Optional[Path] = ROOT,
    device: str = DEVICE,
) -> None:
    """Tune every trainable recipe of a study with the same Optuna search (trials, steps, pruner) on validation.

    Many workers (processes or machines) share one search through --storage; together they run exactly the
    requested trials. Each recipe's best trial is written as a recipe (tune.best/LABEL.yaml).

    Example: svqbench tune recipes/studies/digits_small_tuned.yaml --then-sweep
    """
    from svqbench.flows.sweep import load_study
    from svqbench.flows.tune import open_storage, plan_search, status_lines
    from svqbench.flows.tune import tune as run_tune

    study = load_study(study_file)
    echo = lambda line: out.print(line, highlight=False, markup=False)  # noqa: E731
    if status:
        searched = plan_search(study, recipe, tuple(set_))
        tuning = study.tune
        for line in status_lines(study, open_storage(storage or tuning.storage, tuning.runs_dir(study.name)), searched):
            echo(line)
        return
    from svqbench.engine.machine import resolve_device

    result = run_tune(study, resolve_device(device), root, recipe, trials, tuple(set_), storage, echo)
    for row in result["effort"]:
        echo(
            f"{row['label']}: {row['trials']} trials ({row['complete']} complete, {row['pruned']} pruned, "
            f"{row['failed']} failed), {row['steps']} steps; best {row['best_value']} with {row['best_params']}"
        )
    if then_sweep:
        from svqbench.flows.sweep import sweep as run_sweep

        run_sweep(study, resolve_device(device), root, echo=echo)


@command
def quickstart(
    root: Optional[Path] = ROOT,
    device: str = DEVICE,
    out_dir: Optional[Path] = typer.Option(
        None, "--out", help="new working folder (default ./quickstart-YYYYmmdd-HHMMSS)"
    ),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 where measured faster) | fp32 | bf16"),
    minutes: float = typer.Option(
        3.0, "--minutes", help="wall-time budget: SVQ trains the steps that fit it, measured on this machine"
    ),
    set_: List[str] = typer.Option(
        [], "--set", help="override a train.* or eval.* key of every quick recipe, e.g. train.max_steps=50"
    ),
    refresh_assets: bool = typer.Option(
        False,
        "--refresh-assets",
        help="also overwrite the repository's assets/quickstart.gif "
        "and leaderboards/digits_small.* (run from the repository root)",
    ),
) -> None:
    """Prep `digits_small`, train and evaluate blank / persistence / SimVP+SVQ within --minutes, render, compare.

    Example: svqbench quickstart   (writes ./quickstart-YYYYmmdd-HHMMSS/, nothing else)   |   svqbench quickstart
    --minutes 10
    """
    from svqbench.engine.machine import resolve_device
    from svqbench.flows import quickstart as qs

    result = qs.run_quickstart(
        resolve_device(device), root, out_dir or qs.default_folder(), out, precision, tuple(set_), minutes
    )
    out.print(qs.results_table(result))
    if result.svq_beats_floors():
        out.print(
            "SimVP+SVQ beats both floors (blank, persistence) on every metric, overall and on frame +1.",
            highlight=False,
        )
    else:
        longer = math.ceil(max(2 * minutes, minutes + 5))
        out.print(
            f"SimVP+SVQ does NOT beat both floors (blank, persistence) on every metric after {result.steps} steps: "
            f"{minutes:g} minutes are too short on this machine. Train longer: svqbench quickstart --minutes {longer}",
            highlight=False,
            soft_wrap=True,
        )
    out.print(f"{result.folder}/{qs.GIF_NAME}  (runs/, leaderboards/ beside it)", highlight=False)
    if refresh_assets:
        for path in qs.refresh_assets(result, Path.cwd()):
            out.print(f"refreshed {path}", highlight=False)


@command
def doctor(root: Optional[Path] = ROOT) -> None:
    """One screen on this installation: torch build, devices, bf16, threads, data, LPIPS weights, leaderboards.

    Example: svqbench doctor
    """
    from svqbench.bench.doctor import diagnose

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
    roofline: bool = typer.Option(
        False, "--roofline", help="also the device's peak FLOP/s in the training precision and the model's share of it"
    ),
    out_file: Optional[Path] = typer.Option(None, "--out", help="also save the results as JSON"),
    device: str = DEVICE,
) -> None:
    """Parameters, FLOPs, inference frames/s and training samples/s of a recipe's model.

    Example: svqbench bench kth/simvp_svq --shape 10,20,1,128,128 --batch-size 4 --svq-layer --compare --roofline
    """
    from svqbench.bench.measure import bench_info, run_bench
    from svqbench.bench.tables import bench_tables
    from svqbench.config import load_recipe
    from svqbench.engine.machine import resolve_device
    from svqbench.fileio import write_json

    cfg = load_recipe(recipe, set_)
    report = run_bench(
        cfg, bench_info(cfg, shape), resolve_device(device), batch_size, repeats, svq_layer, compare, memory, roofline
    )
    for table in bench_tables(report):
        out.print(table)
    if out_file is not None:
        write_json(out_file, report)
        out.print(str(out_file), highlight=False)


def main() -> None:  # pragma: no cover - the console script entry point
    app(prog_name="svqbench")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
