import zipfile

import numpy as np
import pytest
import torch
import xarray as xr
from data_standins import weatherbench_year

from svqbench import data
from svqbench.errors import SvqbenchError

YEARS = {"train": "2010-2011", "val": "2012", "test": "2013"}
HOURS = 60


def write_variable(src, name, variable, levels=None):
    return [weatherbench_year(src, name, variable, year, HOURS, levels) for year in range(2010, 2014)]


def test_t2m_is_zscored_with_training_statistics(tmp_path):
    src = tmp_path / "src"
    files = write_variable(src, "2m_temperature", "t2m")
    data.prepare("weather_t2m", root=tmp_path, src=src, **YEARS)
    manifest = data.load_manifest("weather_t2m", tmp_path)
    raw_train = np.concatenate([xr.open_dataset(f)["t2m"].values for f in files[:2]])
    assert np.allclose(manifest["normalisation"]["mean"], [raw_train.mean()], rtol=1e-6)
    assert np.allclose(manifest["normalisation"]["std"], [raw_train.std()], rtol=1e-5)
    # a window never spans the gap between two yearly files: (60 - 24 + 1) per year
    assert manifest["splits"]["train"]["windows"] == 2 * (HOURS - 24 + 1)
    assert len(data.latitudes("weather_t2m", tmp_path)) == 32
    test = data.create("weather_t2m", "test", tmp_path)
    x, y = test[0]
    assert x.shape == (12, 1, 32, 64) and y.shape == (12, 1, 32, 64)
    physical = data.denormaliser("weather_t2m", tmp_path)(x[None])
    raw_test = xr.open_dataset(files[3])["t2m"].values[:12]
    assert torch.allclose(physical[0, :, 0], torch.from_numpy(raw_test), atol=1e-3)


def test_uv10_from_zips_and_r_last_level(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name, variable in (("10m_u_component_of_wind", "u10"), ("10m_v_component_of_wind", "v10")):
        files = write_variable(tmp_path / "raw", name, variable)
        with zipfile.ZipFile(src / f"{name}_5.625deg.zip", "w") as zf:
            for f in files:
                zf.write(f, f.name)
    data.prepare("weather_uv10", root=tmp_path / "root", src=src, **YEARS)
    x, _ = data.create("weather_uv10", "val", tmp_path / "root")[0]
    assert x.shape == (12, 2, 32, 64)
    assert data.load_manifest("weather_uv10", tmp_path / "root")["channels"] == ["u10", "v10"]
    write_variable(src, "relative_humidity", "r", levels=[500, 850, 1000])
    data.prepare("weather_r", root=tmp_path / "root", src=src, **YEARS)
    assert data.load_manifest("weather_r", tmp_path / "root")["channels"] == ["r_last"]


def test_weather_mv_six_hourly_twelve_channels(tmp_path):
    src = tmp_path / "src"
    for name, variable in (
        ("relative_humidity", "r"),
        ("temperature", "t"),
        ("u_component_of_wind", "u"),
        ("v_component_of_wind", "v"),
    ):
        write_variable(src, name, variable, levels=[150, 500, 850, 1000])
    data.prepare("weather_mv", root=tmp_path, src=src, **YEARS)
    manifest = data.load_manifest("weather_mv", tmp_path)
    assert len(manifest["normalisation"]["mean"]) == 12
    assert manifest["splits"]["test"]["windows"] == HOURS // 6 - 8 + 1
    x, y = data.create("weather_mv", "train", tmp_path)[0]
    assert x.shape == (4, 12, 32, 64) and y.shape == (4, 12, 32, 64)
    assert data.variables("weather_mv", tmp_path) == ("r", "t", "u", "v")  # OpenSTL's per-variable metrics


def test_missing_variable_and_years_are_one_line_errors(tmp_path):
    src = tmp_path / "src"
    write_variable(src, "2m_temperature", "tcc")
    with pytest.raises(SvqbenchError, match="2m_temperature_2010_5.625deg.nc: no variable 't2m'"):
        data.prepare("weather_t2m", root=tmp_path, src=src, **YEARS)
    with pytest.raises(SvqbenchError, match="total_cloud_cover_5.625deg.zip not found in --src"):
        data.prepare("weather_tcc", root=tmp_path, src=src, **YEARS)
    with pytest.raises(SvqbenchError, match="option train='2015-2010'"):
        data.prepare("weather_tcc", root=tmp_path, src=src, train="2015-2010")
    assert not list(tmp_path.glob("weather_*"))


def test_eval_refuses_image_metrics_on_physical_fields_unless_a_range_is_declared(tmp_path):
    from svqbench.config import load_recipe
    from svqbench.engine.evaluate import evaluate
    from svqbench.engine.train import train

    write_variable(tmp_path / "src", "2m_temperature", "t2m")
    data.prepare("weather_t2m", root=tmp_path, src=tmp_path / "src", **YEARS)
    recipe = tmp_path / "t2m.yaml"
    recipe.write_text(
        "dataset: weather_t2m\n"
        "model: {name: simvp, hid_S: 8, hid_T: 16, N_S: 2, N_T: 2, translator: incepu}\n"
        "train: {epochs: 1, max_steps: 1, batch_size: 2, num_workers: 0}\n"
        "eval: {metrics: [rmse, ssim, psnr], batch_size: 8}\n"
    )
    run = train(load_recipe(str(recipe)), tmp_path / "run", torch.device("cpu"), data_root=tmp_path)
    with pytest.raises(SvqbenchError, match="ssim, psnr need images in \\[0, 1\\].*--range LO,HI"):
        evaluate(run, torch.device("cpu"), data_root=tmp_path, update_leaderboard=False)
    # the synthetic field is ~N(280, 10) K: a declared physical range makes SSIM/PSNR meaningful
    report = evaluate(
        run, torch.device("cpu"), data_root=tmp_path, update_leaderboard=False, value_range=(230.0, 330.0)
    )
    assert 0.0 < report["overall"]["ssim"] <= 1.0 and report["overall"]["psnr"] > 0.0
    assert "per_variable" not in report  # t2m names no variables
