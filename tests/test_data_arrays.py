"""``prep arrays``: .npy/.npz/netCDF/zarr become benchmarks whose splits share no frame, physical values
z-scored with training statistics only; generic recipes train and evaluate on them; bad input is one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from svqbench import data
from svqbench.cli import app

TINY = [
    "--set",
    "model.hid_S=8",
    "--set",
    "model.hid_T=16",
    "--set",
    "model.N_T=2",
    "--set",
    "train.max_steps=2",
    "--set",
    "train.batch_size=4",
    "--set",
    "train.num_workers=0",
    "--set",
    "eval.batch_size=8",
    "--device",
    "cpu",
]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in result.output, result.output


def numbered_series(steps: int = 120, size: int = 8) -> np.ndarray:
    """(steps, 2, size, size) physical values whose frame t reads back as t: channel 0 is 1000 + t, channel 1 a
    pattern."""
    frames = np.zeros((steps, 2, size, size), np.float32)
    frames[:, 0] = 1000 + np.arange(steps)[:, None, None]
    frames[:, 1] = np.linspace(-5, 5, size * size).reshape(size, size) * (1 + np.arange(steps) % 3)[:, None, None]
    return frames


def frame_numbers(root, name: str, split: str) -> np.ndarray:
    """The step of every stored frame of a split, read back through the loader's frames and the manifest."""
    manifest = data.load_manifest(name, root)
    stored = torch.from_numpy(np.load(root / name / split / "frames.npy"))[None]
    physical = data.denormaliser(name, root)(stored)[0] if manifest.get("normalisation") else stored[0]
    return np.round(physical[:, 0].mean(dim=(1, 2)).numpy() - 1000).astype(int)


def test_a_series_splits_into_blocks_one_window_apart_z_scored_with_training_statistics(tmp_path):
    series = numbered_series()
    np.save(tmp_path / "series.npy", series)
    data.prepare(
        "arrays", root=tmp_path, src=tmp_path / "series.npy", folder_name="series", frames="3:2", split="0.7,0.15,0.15"
    )
    steps = {split: frame_numbers(tmp_path, "series", split) for split in ("train", "val", "test")}
    assert steps["train"].max() + 5 < steps["val"].min() and steps["val"].max() + 5 < steps["test"].min()
    assert sorted(np.concatenate(list(steps.values()))) == sorted(set(np.concatenate(list(steps.values()))))
    manifest = json.loads((tmp_path / "series" / "manifest.json").read_text())
    train = series[steps["train"]]
    assert np.allclose(manifest["normalisation"]["mean"], train.mean(axis=(0, 2, 3)), rtol=1e-6, atol=1e-5)
    assert np.allclose(manifest["normalisation"]["std"], train.std(axis=(0, 2, 3)), rtol=1e-5)
    assert manifest["info"]["physical"] and manifest["value_range"] == [float(train.min()), float(train.max())]
    test = data.create("series", "test", tmp_path)
    inputs, targets = test[0]
    assert inputs.shape == (3, 2, 8, 8) and targets.shape == (2, 2, 8, 8) and len(test) == len(steps["test"]) - 4


def test_explicit_ranges_keep_one_window_apart_and_sequences_split_whole(tmp_path):
    np.save(tmp_path / "series.npy", numbered_series())
    data.prepare(
        "arrays",
        root=tmp_path,
        src=tmp_path / "series.npy",
        folder_name="ranged",
        frames="2:2",
        split="train=0:60,val=60:80,test=100:120",
    )
    manifest = data.load_manifest("ranged", tmp_path)
    assert frame_numbers(tmp_path, "ranged", "val").tolist() == list(range(64, 80))
    assert manifest["trimmed"] == ["val starts at 64, not 60: one window (4) after train"]

    sequences = np.zeros((10, 6, 1, 4, 4), np.uint8)
    sequences[:] = (np.arange(10) * 20)[:, None, None, None, None]
    np.save(tmp_path / "sequences.npy", sequences)
    data.prepare(
        "arrays",
        root=tmp_path,
        src=tmp_path / "sequences.npy",
        folder_name="seq",
        frames="2:2",
        split="0.6,0.2,0.2",
        stride=2,
    )
    seen = {}
    for split in ("train", "val", "test"):
        frames = np.load(tmp_path / "seq" / split / "frames.npy")
        assert frames.dtype == np.uint8  # stored as they are
        seen[split] = set((frames[:, 0, 0, 0] // 20).tolist())
        windows = data.create("seq", split, tmp_path)
        units = np.load(tmp_path / "seq" / split / "units.npy")
        assert len(units) == len(windows) == 2 * len(seen[split])  # starts 0 and 2 in each sequence of 6
        assert set(units.tolist()) == seen[split]
    assert seen == {"train": set(range(6)), "val": {6, 7}, "test": {8, 9}}
    assert data.create("seq", "train", tmp_path)[0][0].max() <= 1.0  # uint8 read back in [0, 1]


def test_npz_arrays_and_unit_floats_are_stored_as_they_are(tmp_path):
    unit = np.random.default_rng(0).random((40, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "two.npz", a=unit, b=unit * 0.5)
    data.prepare("arrays", root=tmp_path, src=tmp_path / "two.npz", folder_name="two", frames="2:1", var="a,b")
    manifest = data.load_manifest("two", tmp_path)
    assert manifest["values"] == "unit" and "normalisation" not in manifest and manifest["info"]["channels"] == 2
    assert np.array_equal(
        np.load(tmp_path / "two" / "train" / "frames.npy")[:, 1],
        unit[: len(np.load(tmp_path / "two" / "train" / "frames.npy"))] * 0.5,
    )


def write_netcdf(path, steps: int = 96, size: int = 8) -> None:
    import xarray as xr

    series = numbered_series(steps, size)
    xr.Dataset(
        {"t2m": (("time", "lat", "lon"), series[:, 0]), "u10": (("time", "lat", "lon"), series[:, 1])},
        coords={
            "time": pd.date_range("2020-01-01", periods=steps, freq="h"),
            "lat": np.arange(float(size)),
            "lon": np.arange(float(size)),
        },
    ).to_netcdf(path, engine="h5netcdf")


def test_npy_and_netcdf_train_and_evaluate_with_the_generic_recipes(tmp_path, monkeypatch, isolated_leaderboards):
    monkeypatch.chdir(tmp_path)
    np.save("series.npy", numbered_series(size=16))  # SSIM's 11x11 window needs 11+ pixels a side
    write_netcdf(tmp_path / "field.nc", size=16)
    assert (
        invoke(
            "prep", "arrays", "--root", "data", "--src", "series.npy", "--name", "series", "--frames", "4:4"
        ).exit_code
        == 0
    )
    prepped = invoke(
        "prep",
        "arrays",
        "--root",
        "data",
        "--src",
        "field.nc",
        "--name",
        "field",
        "--frames",
        "4:4",
        "--var",
        "t2m",
        "--var",
        "u10",
        "--split",
        "train=2020-01-01T00:2020-01-03T05,val=2020-01-03T06:2020-01-03T23,test=2020-01-04:2020-01-04",
    )
    assert prepped.exit_code == 0, prepped.output
    manifest = data.load_manifest("field", tmp_path / "data")
    assert manifest["info"]["variables"] == ["t2m", "u10"] and manifest["splits"]["val"]["first"] == 54 + 8
    assert (
        manifest["splits"]["test"]["first_time"] == "2020-01-04T08:00:00" and manifest["splits"]["test"]["frames"] == 16
    )
    for name, recipe in (("series", "videos/simvp"), ("field", "videos/simvp_svq")):
        trained = invoke(
            "train",
            recipe,
            "--set",
            f"dataset={name}",
            "--root",
            "data",
            "--run-dir",
            f"runs/{name}",
            *TINY,
            *(["--set", "model.codebook_size=16"] if "svq" in recipe else []),
        )
        assert trained.exit_code == 0, trained.output
        evaluated = invoke("eval", f"runs/{name}", "--root", "data")
        assert evaluated.exit_code == 0, evaluated.output
        metrics = json.loads((tmp_path / "runs" / name / "metrics.json").read_text())["overall"]
        assert {"mae", "mse", "ssim", "psnr"} <= set(metrics)
        assert (isolated_leaderboards / f"{name}.csv").is_file()
    field = json.loads((tmp_path / "runs" / "field" / "metrics.json").read_text())
    assert "t2m" in json.dumps(field) and "u10" in json.dumps(field)  # per-variable metrics of the two channels


@pytest.mark.filterwarnings("ignore:Consolidated metadata")  # zarr 3 writing the store, not svqbench
def test_a_zarr_store_is_read_through_xarray(tmp_path):
    pytest.importorskip("zarr")
    import xarray as xr

    write_netcdf(tmp_path / "field.nc")
    with xr.open_dataset(tmp_path / "field.nc") as field:
        field.to_zarr(tmp_path / "field.zarr", mode="w")
    data.prepare("arrays", root=tmp_path, src=tmp_path / "field.zarr", folder_name="store", frames="4:4", var="t2m")
    assert frame_numbers(tmp_path, "store", "test").tolist() == list(range(88, 96))  # 64 train, 8, 8, 8 val, 8, 8 test


def test_bad_arrays_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("flat.npy", np.zeros((10, 8), np.float32))
    with_nan = numbered_series(100)
    with_nan[30, 0, 1, 1] = np.nan
    np.save("nan.npy", with_nan)
    np.save("short.npy", numbered_series(12))
    np.save("tiny.npy", numbered_series(5))
    np.save("series.npy", numbered_series(40))
    write_netcdf(tmp_path / "field.nc", 40)
    prep = ("prep", "arrays", "--root", "data", "--name", "x", "--frames", "4:4", "--src")
    one_line_error(invoke(*prep, "flat.npy"), "flat.npy", "shape (10, 8) (rank 2)", "(T, C, H, W)")
    one_line_error(invoke(*prep, "nan.npy"), "NaN", "train split", "step 30")
    one_line_error(invoke(*prep, "field.nc", "--var", "sst"), "--var sst: not in", "t2m, u10")
    one_line_error(invoke(*prep, "tiny.npy"), "tiny.npy: 5 frames, fewer than one window of 8 (--frames 4:4)")
    one_line_error(
        invoke(*prep, "short.npy"), "12 frames cannot make three splits of at least 8 frames, 8 apart (40 needed)"
    )
    one_line_error(invoke(*prep, "series.npy", "--split", "train=0:20,val=15:30,test=32:40"), "overlap")
    one_line_error(invoke(*prep, "series.npy", "--split", "0.9,0.05,0.05"), "split 'val'", "fewer than one window")
    one_line_error(invoke(*prep, "series.npy", "--split", "train=2020-01:2020-02,val=0:1,test=1:2"), "time coordinate")
    one_line_error(invoke(*prep, "series.npy", "--split", "0.8,0.3"), "three fractions")
    one_line_error(invoke(*prep, "missing.npy"), "--src missing.npy: no such file")
    one_line_error(invoke(*prep, "series.npy", "--var", "a"), "--var is for .npz")


def write_three_variables(path, steps: int = 96, size: int = 16) -> None:
    import xarray as xr

    rng = np.random.default_rng(0)
    fields = {
        name: (("time", "lat", "lon"), (base + rng.standard_normal((steps, size, size))).astype(np.float32))
        for name, base in (("t2m", 280.0), ("u10", 0.0), ("v10", 2.0))
    }
    xr.Dataset(
        fields,
        coords={
            "time": pd.date_range("2020-01-01", periods=steps, freq="h"),
            "lat": np.linspace(-40, 40, size),
            "lon": np.arange(float(size)),
        },
    ).to_netcdf(path, engine="h5netcdf")


def test_a_model_reads_three_variables_and_predicts_one_target(tmp_path, monkeypatch, isolated_leaderboards):
    """``prep arrays --var t2m --var u10 --var v10 --target t2m``: SimVP reads 3 channels and predicts t2m; metrics,
    floors and units follow the target; a recurrent model refuses it."""
    monkeypatch.chdir(tmp_path)
    write_three_variables(tmp_path / "field.nc")
    prepped = invoke(
        "prep",
        "arrays",
        "--root",
        "data",
        "--src",
        "field.nc",
        "--name",
        "field",
        "--frames",
        "4:4",
        "--var",
        "t2m",
        "--var",
        "u10",
        "--var",
        "v10",
        "--target",
        "t2m",
    )
    assert prepped.exit_code == 0, prepped.output
    info = data.info("field", tmp_path / "data")
    assert info.channels == 3 and info.targets == (0,)
    inputs, targets = data.create("field", "test", tmp_path / "data")[0]
    assert inputs.shape[1] == 3 and targets.shape[1] == 1
    trained = invoke(
        "train", "videos/simvp", "--set", "dataset=field", "--root", "data", "--run-dir", "runs/field", *TINY
    )
    assert trained.exit_code == 0, trained.output
    assert invoke("eval", "runs/field", "--root", "data", "--metrics", "mae,mse,rmse").exit_code == 0
    report = json.loads((tmp_path / "runs" / "field" / "metrics.json").read_text())
    assert list(report["per_variable"]) == ["t2m"]  # the one predicted variable, in kelvin
    floor = invoke(
        "train",
        "videos/persistence",
        "--set",
        "dataset=field",
        "--root",
        "data",
        "--run-dir",
        "runs/floor",
        "--device",
        "cpu",
    )
    assert floor.exit_code == 0, floor.output
    assert invoke("eval", "runs/floor", "--root", "data", "--metrics", "mae").exit_code == 0
    from svqbench.engine.runs import LoadedRun
    from svqbench.models import forecast

    run = LoadedRun(tmp_path / "runs" / "floor", torch.device("cpu"))
    batch = inputs[None]
    repeated = forecast(run.model, batch, 4).frames
    assert repeated.shape == (1, 4, 1, 16, 16) and torch.equal(repeated[0, 0, 0], batch[0, -1, 0])
    (tmp_path / "predrnn.yaml").write_text(
        "dataset: field\nmodel: {name: predrnn, num_hidden: [8, 8], patch_size: 4}\n"
        "train: {max_steps: 1, batch_size: 4, num_workers: 0}\n"
    )
    refused = invoke("train", "predrnn.yaml", "--root", "data", "--run-dir", "runs/recurrent", "--device", "cpu")
    one_line_error(refused, "feeds its own predictions back", "1 target channel(s) of 3")
    unknown = invoke(
        "prep",
        "arrays",
        "--root",
        "data",
        "--src",
        "field.nc",
        "--name",
        "bad",
        "--frames",
        "4:4",
        "--var",
        "t2m",
        "--target",
        "q",
    )
    one_line_error(unknown, "--target q: not a channel of field.nc; valid: t2m")
