"""WeatherBench's headline scores on a generated WeatherBench stand-in, against a direct xarray/numpy
implementation of WeatherBench 2's formulas: the training years' climatology (day of year and hour, a 61-day
window pooled across years), the anomaly correlation (ACC) and the latitude-weighted MAE, MSE and RMSE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from data_standins import weatherbench_year

from svqbench import data
from svqbench.config import load_recipe
from svqbench.data.climatology import CLIMATOLOGY_FILE
from svqbench.engine.evaluate import evaluate
from svqbench.engine.train import train
from svqbench.errors import SvqbenchError

HOURS = 60
YEARS = {"train": "2010-2011", "val": "2012", "test": "2013"}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def weather(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weather")
    files = [weatherbench_year(folder / "src", "2m_temperature", "t2m", y, HOURS) for y in range(2010, 2014)]
    data.prepare("weather_t2m", root=folder, src=folder / "src", **YEARS)
    return folder, files


def reference_climatology(train: xr.DataArray, day: int, hour: int) -> np.ndarray:
    """WeatherBench 2: the mean of every training step whose day of year is within 30 days of ``day`` (around the
    year) at ``hour``."""
    days = train.time.dt.dayofyear.values - 1
    distance = np.minimum(np.abs(days - day), 366 - np.abs(days - day))
    chosen = (distance <= 30) & (train.time.dt.hour.values == hour)
    return train.values[chosen].astype(np.float64).mean(axis=0)


def test_climatology_is_weatherbench2s(weather):
    folder, files = weather
    train = xr.concat([xr.open_dataset(f)["t2m"] for f in files[:2]], "time")
    stored = np.load(folder / "weather_t2m" / CLIMATOLOGY_FILE)
    assert stored.shape == (366, 24, 1, 32, 64)
    for day, hour in [(0, 0), (1, 13), (2, 11), (20, 5), (340, 7)]:
        np.testing.assert_allclose(stored[day, hour, 0], reference_climatology(train, day, hour), rtol=1e-5)
    assert np.isnan(stored[180, 0]).all()  # no training day within 30 days of July


def test_acc_and_latitude_weighted_errors_equal_the_reference(weather, tmp_path, isolated_leaderboards):
    folder, files = weather
    recipe = tmp_path / "persistence.yaml"
    recipe.write_text("dataset: weather_t2m\nmodel: {name: persistence}\ntrain: {batch_size: 8, num_workers: 0}\n")
    run = train(load_recipe(str(recipe)), tmp_path / "run", CPU, data_root=folder)
    report = evaluate(run, CPU, ("mae", "mse", "rmse", "acc"), data_root=folder, batch_size=8)

    train_years = xr.concat([xr.open_dataset(f)["t2m"] for f in files[:2]], "time")
    test = xr.open_dataset(files[3])["t2m"]
    values, times = test.values.astype(np.float64), test.time
    latitudes = test.lat.values
    weights = np.cos(np.deg2rad(latitudes))[:, None]
    weights = weights / weights.mean()
    normals = {}
    errors, absolute, correlations = [], [], []
    for start in range(HOURS - 24 + 1):  # every 12 -> 12 window of the test year; persistence repeats frame 11
        truth = values[start + 12 : start + 24]
        forecast = np.repeat(values[start + 11][None], 12, axis=0)
        errors.append((weights * (forecast - truth) ** 2).mean(axis=(1, 2)))
        absolute.append((weights * np.abs(forecast - truth)).mean(axis=(1, 2)))
        frame_acc = []
        for t in range(12):
            when = times[start + 12 + t]
            key = (int(when.dt.dayofyear) - 1, int(when.dt.hour))
            if key not in normals:
                normals[key] = reference_climatology(train_years, *key)
            f, o = forecast[t] - normals[key], truth[t] - normals[key]
            frame_acc.append((weights * f * o).sum() / np.sqrt((weights * f**2).sum() * (weights * o**2).sum()))
        correlations.append(frame_acc)
    expected_mse = np.mean(errors, axis=0)  # (12,) per lead time
    overall = report["overall"]
    np.testing.assert_allclose(report["per_frame"]["lat_weighted_mse"], expected_mse, rtol=1e-5)
    np.testing.assert_allclose(overall["lat_weighted_mse"], expected_mse.mean(), rtol=1e-5)
    np.testing.assert_allclose(overall["lat_weighted_mae"], np.mean(absolute), rtol=1e-5)
    np.testing.assert_allclose(overall["lat_weighted_rmse"], np.sqrt(expected_mse.mean()), rtol=1e-5)
    np.testing.assert_allclose(report["per_frame"]["acc"], np.mean(correlations, axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(overall["acc"], np.mean(correlations), rtol=1e-4, atol=1e-6)


def test_acc_without_a_climatology_is_one_line(digits_root, tmp_path):
    recipe = tmp_path / "p.yaml"
    recipe.write_text("dataset: digits\nmodel: {name: persistence}\ntrain: {batch_size: 4, num_workers: 0}\n")
    run = train(load_recipe(str(recipe)), tmp_path / "run", CPU, data_root=digits_root)
    with pytest.raises(SvqbenchError, match="no climatology recorded .needed by acc"):
        evaluate(run, CPU, ("mae", "acc"), data_root=digits_root, update_leaderboard=False)


def test_arrays_with_latitudes_and_times_get_the_same_scores(tmp_path, isolated_leaderboards):
    """``prep arrays`` of a netCDF with lat and time coordinates records both and the climatology: eval's ACC and
    latitude-weighted errors work on it as on WeatherBench."""
    import pandas as pd

    steps = 24 * 6
    rng = np.random.default_rng(0)
    lat = np.linspace(-60.0, 60.0, 16)
    xr.Dataset(
        {"t2m": (("time", "lat", "lon"), (280 + rng.standard_normal((steps, 16, 16))).astype(np.float32))},
        coords={"time": pd.date_range("2021-03-01", periods=steps, freq="h"), "lat": lat, "lon": np.arange(16.0)},
    ).to_netcdf(tmp_path / "field.nc", engine="h5netcdf")
    data.prepare("arrays", root=tmp_path, src=tmp_path / "field.nc", folder_name="field", frames="4:4")
    manifest = data.load_manifest("field", tmp_path)
    assert manifest["latitudes"] == pytest.approx(lat.tolist()) and manifest["climatology"]["kind"] == "day_hour"
    assert (tmp_path / "field" / "test" / "times.npy").is_file()
    recipe = tmp_path / "persistence.yaml"
    recipe.write_text("dataset: field\nmodel: {name: persistence}\ntrain: {batch_size: 8, num_workers: 0}\n")
    run = train(load_recipe(str(recipe)), tmp_path / "run", CPU, data_root=tmp_path)
    report = evaluate(run, CPU, ("mse", "acc"), data_root=tmp_path, update_leaderboard=False)
    assert {"acc", "lat_weighted_mse"} <= set(report["overall"]) and -1 <= report["overall"]["acc"] <= 1


def test_monthly_data_get_a_climatology_per_calendar_month():
    from svqbench.data.climatology import compute

    times = np.arange("2000-01", "2004-01", dtype="datetime64[M]").astype("datetime64[h]")
    frames = np.arange(len(times), dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 2, 2), np.float32)
    normals, hours = compute(frames, times)
    assert hours == () and normals.shape == (12, 1, 1, 2, 2)
    np.testing.assert_allclose(normals[:, 0, 0, 0, 0], [np.mean([m + 12 * y for y in range(4)]) for m in range(12)])
