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
    for name, variable in (("relative_humidity", "r"), ("temperature", "t"), ("u_component_of_wind", "u"), ("v_component_of_wind", "v")):
        write_variable(src, name, variable, levels=[150, 500, 850, 1000])
    data.prepare("weather_mv", root=tmp_path, src=src, **YEARS)
    manifest = data.load_manifest("weather_mv", tmp_path)
    assert len(manifest["normalisation"]["mean"]) == 12
    assert manifest["splits"]["test"]["windows"] == HOURS // 6 - 8 + 1
    x, y = data.create("weather_mv", "train", tmp_path)[0]
    assert x.shape == (4, 12, 32, 64) and y.shape == (4, 12, 32, 64)


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
