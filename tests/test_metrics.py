"""Metric conventions against scikit-image / NumPy references, identities, streaming and errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from svqbench.errors import SvqbenchError
from svqbench.metrics import CONVENTIONS, LAT_WEIGHTED_RMSE, METRIC_NAMES, MetricAccumulator, compute, plot_horizon

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PIXEL_AND_FRAME_METRICS = ("mae", "mse", "rmse", "ssim", "psnr")


def openstl_reference(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """OpenSTL's definitions, frame by frame with scikit-image: (B,T,C,H,W) float64 arrays."""
    mse = np.mean(np.sum((pred - true) ** 2, axis=(2, 3, 4)))
    mae = np.mean(np.sum(np.abs(pred - true), axis=(2, 3, 4)))
    clipped = np.clip(pred, 0, 1)
    ssim, psnr = [], []
    for p, t in zip(clipped.reshape(-1, *pred.shape[2:]), true.reshape(-1, *true.shape[2:])):
        ssim.append(structural_similarity(p, t, channel_axis=0, data_range=2.0))
        psnr.append(20 * np.log10(1 / np.sqrt(np.mean((p - t) ** 2))))
    return {"mae": mae, "mse": mse, "rmse": np.sqrt(mse), "ssim": np.mean(ssim), "psnr": np.mean(psnr)}


def standard_reference(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    clipped = np.clip(pred, 0, 1)
    ssim, psnr = [], []
    for p, t in zip(clipped.reshape(-1, *pred.shape[2:]), true.reshape(-1, *true.shape[2:])):
        ssim.append(
            structural_similarity(
                p, t, channel_axis=0, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
            )
        )
        psnr.append(-10 * np.log10(np.mean((p - t) ** 2)))
    mse = np.mean((pred - true) ** 2)
    return {
        "mae": np.mean(np.abs(pred - true)),
        "mse": mse,
        "rmse": np.sqrt(mse),
        "ssim": np.mean(ssim),
        "psnr": np.mean(psnr),
    }


REFERENCES = {"openstl": openstl_reference, "standard": standard_reference}


def noisy_pair(shape, seed=0, noise=0.15):
    """Smooth targets in [0,1] and predictions that overshoot [0,1] (so clipping matters)."""
    generator = torch.Generator().manual_seed(seed)
    true = torch.rand(shape, generator=generator)
    true = torch.nn.functional.avg_pool2d(true.flatten(0, 2), 3, 1, 1).view(shape)
    pred = true + noise * torch.randn(shape, generator=generator)
    return pred, true


def assert_matches(result: dict, reference: dict, names=PIXEL_AND_FRAME_METRICS):
    for name in names:
        assert result[name] == pytest.approx(reference[name], rel=1e-5, abs=1e-5), name


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("channels", [1, 2, 3])
def test_hand_made_cases_match_reference(convention, channels):
    pred, true = noisy_pair((2, 3, channels, 24, 20), seed=channels)
    result = compute(pred, true, PIXEL_AND_FRAME_METRICS, convention)
    assert_matches(result, REFERENCES[convention](pred.double().numpy(), true.double().numpy()))


def read_clip(path: Path) -> np.ndarray:
    cv2 = pytest.importorskip("cv2")
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[:, :, ::-1].transpose(2, 0, 1))
    capture.release()
    return np.stack(frames).astype(np.float32) / 255.0


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_natural_clips_match_reference(convention):
    clips = sorted((SHARED / "reference" / "videos").glob("*.avi"))
    if not clips:
        pytest.skip("../shared/reference/videos is absent")
    frames = read_clip(clips[0])[:21]
    # persistence forecast: every frame predicted by its predecessor, brightened to overshoot 1
    true = torch.from_numpy(frames[1:]).view(4, 5, *frames.shape[1:])
    pred = torch.from_numpy(frames[:-1] * 1.1).view_as(true)
    result = compute(pred, true, PIXEL_AND_FRAME_METRICS, convention)
    assert_matches(result, REFERENCES[convention](pred.double().numpy(), true.double().numpy()))


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_identical_prediction_gives_ideal_values(convention):
    _, true = noisy_pair((2, 2, 3, 16, 16))
    result = compute(true, true, PIXEL_AND_FRAME_METRICS, convention)
    assert result["mae"] == result["mse"] == result["rmse"] == 0.0
    assert result["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert result["psnr"] == (float("inf") if convention == "openstl" else pytest.approx(100.0))


def test_standard_psnr_cap_keeps_the_mean_finite():
    true = torch.rand(1, 2, 1, 16, 16)
    pred = true.clone()
    pred[:, 1] = (pred[:, 1] + 0.1).clamp(0, 1)  # frame 0 exact, frame 1 off
    standard = compute(pred, true, ("psnr",), "standard")["psnr"]
    frame1 = -10 * torch.log10((pred[:, 1].clamp(0, 1) - true[:, 1]).square().mean()).item()
    assert standard == pytest.approx((100.0 + frame1) / 2, rel=1e-5)
    assert compute(pred, true, ("psnr",), "openstl")["psnr"] == float("inf")


def test_known_values():
    true = torch.zeros(1, 2, 1, 16, 16)
    pred = torch.full_like(true, 0.1)
    standard = compute(pred, true, PIXEL_AND_FRAME_METRICS, "standard")
    assert standard["mae"] == pytest.approx(0.1)
    assert standard["mse"] == pytest.approx(0.01)
    assert standard["rmse"] == pytest.approx(0.1)
    assert standard["psnr"] == pytest.approx(20.0)
    openstl = compute(pred, true, ("mae", "mse"), "openstl")
    assert openstl["mae"] == pytest.approx(0.1 * 256)
    assert openstl["mse"] == pytest.approx(0.01 * 256)


def test_pixel_errors_use_unclipped_and_frame_scores_clipped_predictions():
    true = torch.full((1, 1, 1, 8, 8), 1.0)
    pred = torch.full_like(true, 1.5)
    result = compute(pred, true, ("mae", "psnr"), "openstl")
    assert result["mae"] == pytest.approx(0.5 * 64)
    assert result["psnr"] == float("inf")


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_streaming_equals_one_batch_and_tracks_horizon(convention):
    pred, true = noisy_pair((5, 4, 1, 16, 16), seed=3)
    pred[:, 3] += 0.3  # the last horizon step is worse
    accumulator = MetricAccumulator(PIXEL_AND_FRAME_METRICS, convention, frames_out=4, device=torch.device("cpu"))
    for start in range(0, 5, 2):
        accumulator.update(pred[start : start + 2], true[start : start + 2])
    streamed = accumulator.result()
    assert streamed["count"] == 5 and streamed["convention"] == convention
    assert_matches(streamed["overall"], compute(pred, true, PIXEL_AND_FRAME_METRICS, convention))
    for name in PIXEL_AND_FRAME_METRICS:
        assert len(streamed["per_frame"][name]) == 4
    assert streamed["per_frame"]["mse"][3] > max(streamed["per_frame"]["mse"][:3])
    for frame in range(4):
        one_frame = compute(pred[:, frame : frame + 1], true[:, frame : frame + 1], PIXEL_AND_FRAME_METRICS, convention)
        assert_matches({k: v[frame] for k, v in streamed["per_frame"].items()}, one_frame)


def openstl_weather_reference(pred: np.ndarray, true: np.ndarray, variables: int = 1) -> dict:
    """OpenSTL's ``metric(..., spatial_norm=True, channel_names=...)`` on physical (B,T,C,H,W) arrays, written out:
    per variable (an equal block of channels) the mean over samples and frames of the per-pixel mean over
    its C*H*W values, RMSE the root of that mean; overall values are means over the variables."""
    width = pred.shape[2] // variables
    per_variable = []
    for v in range(variables):
        error = (pred - true)[:, :, v * width : (v + 1) * width]
        norm = np.prod(error.shape[2:])
        mse = np.mean(error**2 / norm, axis=(0, 1)).sum()
        mae = np.mean(np.abs(error) / norm, axis=(0, 1)).sum()
        per_variable.append({"mae": mae, "mse": mse, "rmse": np.sqrt(mse)})
    overall = {name: np.mean([values[name] for values in per_variable]) for name in ("mae", "mse", "rmse")}
    return {"overall": overall, "per_variable": per_variable}


def physical_pair(channels: int, seed: int):
    pred, true = noisy_pair((3, 2, channels, 16, 16), seed=seed)
    scale = torch.linspace(1.0, 12.0, channels).view(1, 1, channels, 1, 1)
    return pred, true, lambda x: x * scale.to(x.device) + 273.0  # noqa: E731


def test_denormalised_fields_are_per_pixel_means():
    pred, true, denormalise = physical_pair(2, seed=5)
    error = (denormalise(pred) - denormalise(true)).double()
    standard = compute(pred, true, ("mae", "mse", "rmse"), "standard", denormalise=denormalise)
    openstl = compute(pred, true, ("mae", "mse", "rmse"), "openstl", denormalise=denormalise)
    for result in (standard, openstl):
        assert result["mae"] == pytest.approx(error.abs().mean().item())
        assert result["mse"] == pytest.approx(error.square().mean().item())
    # standard: the RMSE of each channel in its own units, averaged; openstl pools the channels (uv10: u and v together)
    assert standard["rmse"] == pytest.approx(error.square().mean(dim=(0, 1, 3, 4)).sqrt().mean().item())
    assert openstl["rmse"] == pytest.approx(error.square().mean().sqrt().item())
    assert openstl["rmse"] > standard["rmse"]  # the root of a mean exceeds the mean of roots when channels differ


def test_openstl_weather_rmse_matches_openstl_pooling():
    pred, true, denormalise = physical_pair(2, seed=7)
    reference = openstl_weather_reference(denormalise(pred).double().numpy(), denormalise(true).double().numpy())
    result = compute(pred, true, ("mae", "mse", "rmse"), "openstl", denormalise=denormalise)
    assert_matches(result, reference["overall"], ("mae", "mse", "rmse"))


def test_openstl_groups_multi_variable_weather_per_variable():
    """WeatherBench-M: 12 channels = r, t, u, v at three levels; OpenSTL reports mse_r, rmse_t, ... and their means."""
    pred, true, denormalise = physical_pair(12, seed=8)
    variables = ("r", "t", "u", "v")
    reference = openstl_weather_reference(denormalise(pred).double().numpy(), denormalise(true).double().numpy(), 4)
    accumulator = MetricAccumulator(
        ("mae", "mse", "rmse"), "openstl", frames_out=2, device="cpu", denormalise=denormalise, variables=variables
    )
    accumulator.update(pred[:2], true[:2])
    accumulator.update(pred[2:], true[2:])
    result = accumulator.result()
    assert_matches(result["overall"], reference["overall"], ("mae", "mse", "rmse"))
    for name, expected in zip(variables, reference["per_variable"]):
        assert_matches(result["per_variable"][name], expected, ("mae", "mse", "rmse"))
    # pooled per variable, not over all 12 channels
    pooled = (denormalise(pred) - denormalise(true)).double().square().mean().sqrt().item()
    assert result["overall"]["rmse"] != pytest.approx(pooled)


def test_standard_per_variable_averages_its_channels():
    pred, true, denormalise = physical_pair(6, seed=9)
    result = MetricAccumulator(
        ("rmse",), "standard", frames_out=2, device="cpu", denormalise=denormalise, variables=("a", "b")
    )
    result.update(pred, true)
    result = result.result()
    channel_rmse = (denormalise(pred) - denormalise(true)).double().square().mean(dim=(0, 1, 3, 4)).sqrt()
    assert result["per_variable"]["a"]["rmse"] == pytest.approx(channel_rmse[:3].mean().item())
    assert result["per_variable"]["b"]["rmse"] == pytest.approx(channel_rmse[3:].mean().item())
    assert result["overall"]["rmse"] == pytest.approx(channel_rmse.mean().item())


@pytest.mark.parametrize("metric", ["ssim", "psnr", "lpips"])
def test_image_metrics_on_physical_fields_need_a_declared_range(metric):
    pred, true, denormalise = physical_pair(1, seed=10)
    with pytest.raises(SvqbenchError, match="--range LO,HI") as error:
        compute(pred, true, ("mae", metric), "standard", denormalise=denormalise)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_declared_range_maps_physical_values_to_unit_range(convention):
    pred, true, denormalise = physical_pair(1, seed=11)
    low, high = 260.0, 290.0
    result = compute(pred, true, ("ssim", "psnr"), convention, denormalise=denormalise, value_range=(low, high))
    mapped = [(denormalise(x) - low) / (high - low) for x in (pred, true)]
    assert_matches(result, compute(*mapped, ("ssim", "psnr"), convention), ("ssim", "psnr"))
    clipped_z_scores = compute(pred, true, ("ssim",), convention)["ssim"]
    assert result["ssim"] != pytest.approx(clipped_z_scores)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"value_range": (1.0, 1.0)}, "expected LO < HI"),
        ({"value_range": (0.0, 1.0, 2.0)}, "two numbers"),
        ({"variables": ("a", "b", "c")}, "do not split into the 3 variables"),
    ],
)
def test_bad_physical_options(options, message):
    pred, true, denormalise = physical_pair(2, seed=12)
    metrics = ("mae", "ssim") if "value_range" in options else ("mae",)
    with pytest.raises(SvqbenchError, match=message):
        compute(pred, true, metrics, denormalise=denormalise, **options)


def test_a_range_is_refused_for_image_data():
    pred, true = noisy_pair((1, 2, 1, 16, 16))
    with pytest.raises(SvqbenchError, match="for physical fields"):
        compute(pred, true, ("ssim",), value_range=(0.0, 255.0))


def test_latitude_weighted_rmse():
    pred, true = noisy_pair((2, 3, 1, 4, 8), seed=6)
    latitudes = torch.tensor([-60.0, -20.0, 20.0, 60.0])
    result = compute(pred, true, ("rmse",), "standard", denormalise=lambda x: x, latitudes=latitudes)
    weights = torch.cos(torch.deg2rad(latitudes.double()))
    weights = (weights / weights.mean()).view(4, 1)
    expected = ((pred.double() - true.double()).square() * weights).mean().sqrt()
    assert result[LAT_WEIGHTED_RMSE] == pytest.approx(expected.item())
    assert result[LAT_WEIGHTED_RMSE] != pytest.approx(result["rmse"])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p, t: compute(p, t, ("mae", "fid")), "unknown metric 'fid'; valid: mae, mse"),
        (lambda p, t: compute(p, t, ("mae",), "paper"), "unknown metric convention 'paper'; valid: standard, openstl"),
        (lambda p, t: compute(p, t[:, :1]), "same (B,T,C,H,W) shape"),
        (lambda p, t: compute(p[0], t[0]), "(B,T,C,H,W)"),
        (lambda p, t: compute(p[..., :5, :5], t[..., :5, :5], ("ssim",)), "at least 11x11"),
        (lambda p, t: compute(p, t, ("rmse",), latitudes=[0.0, 1.0]), "2 latitudes for frames of height 16"),
    ],
)
def test_user_mistakes_raise_one_line_errors(call, message):
    pred, true = noisy_pair((1, 2, 1, 16, 16))
    with pytest.raises(SvqbenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(pred, true)


def test_accumulator_rejects_wrong_horizon_and_empty_result():
    accumulator = MetricAccumulator(("mae",), frames_out=3, device="cpu")
    with pytest.raises(SvqbenchError, match="no samples"):
        accumulator.result()
    pred, true = noisy_pair((1, 2, 1, 8, 8))
    with pytest.raises(SvqbenchError, match="expected 3 predicted frames, got 2"):
        accumulator.update(pred, true)


def test_metric_names_are_the_public_contract():
    assert METRIC_NAMES == ("mae", "mse", "rmse", "ssim", "psnr", "lpips", "fvd", "acc")
    assert CONVENTIONS == ("standard", "openstl")


def test_plot_horizon_writes_png(tmp_path):
    target = tmp_path / "plots" / "horizon.png"
    plot_horizon({"mse": [0.1, 0.2, 0.4], "ssim": [0.9, 0.85, 0.8]}, target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in target.parent.iterdir()] == ["horizon.png"]


def _evaluate_shard(rank: int, store: str, results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        pred, true = noisy_pair((4, 2, 1, 16, 16), seed=7)
        accumulator = MetricAccumulator(PIXEL_AND_FRAME_METRICS, frames_out=2, device="cpu")
        accumulator.update(pred[rank * 2 : rank * 2 + 2], true[rank * 2 : rank * 2 + 2])
        accumulator.all_reduce()
        results[rank] = accumulator.result()
    finally:
        dist.destroy_process_group()


def test_all_reduce_combines_the_shards_of_all_processes(tmp_path):
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_evaluate_shard, args=(str(tmp_path / "store"), results), nprocs=2)
        shards = [results[0], results[1]]
    pred, true = noisy_pair((4, 2, 1, 16, 16), seed=7)
    whole = compute(pred, true, PIXEL_AND_FRAME_METRICS)
    for shard in shards:
        assert shard["count"] == 4
        assert_matches(shard["overall"], whole)
