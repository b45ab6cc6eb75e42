"""The baseline zoo as OpenSTL counts it: `svqbench models --recipe kth/NAME --format json` gives OpenSTL v0.3's
parameter counts at its KTH configs, and TAU trains with its differential divergence regulariser."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from svqbench.cli import app
from svqbench.config import load_recipe
from svqbench.engine.losses import differential_divergence, training_loss

# OpenSTL v0.3's model classes at configs/kth/*.py (10 -> 20 frames of 1 x 128 x 128), counted in issue 23
OPENSTL_KTH = {
    "predrnn_pp": 38_313_984,
    "mim": 39_813_120,
    "e3d_lstm": 53_510_144,
    "mau": 20_138_372,
    "phydnet": 3_091_732,
    "tau": 14_955_201,
}


# OpenSTL's MetaVP translators at configs/kth/simvp/SimVP_*.py, counted the same way (issue 23's second table)
OPENSTL_KTH_TRANSLATORS = {
    "simvp_convmixer": 1_532_481,
    "simvp_poolformer": 12_376_641,
    "simvp_mlpmixer": 20_262_657,
    "simvp_van": 14_893_761,
    "simvp_vit": 12_699_457,
    "simvp_uniformer": 11_785_793,
    "simvp_hornet": 15_261_441,
}
OPENSTL_KTH.update(OPENSTL_KTH_TRANSLATORS)


@pytest.mark.parametrize("name", sorted(OPENSTL_KTH))
def test_models_recipe_json_prints_openstl_counts(name):
    result = CliRunner().invoke(app, ["models", "--recipe", f"kth/{name}", "--format", "json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["parameters"] == OPENSTL_KTH[name] and record["shape"]["frames_out"] == 20


def test_models_recipe_takes_overrides_and_refuses_a_format():
    wider = CliRunner().invoke(app, ["models", "--recipe", "kth/tau", "--set", "model.hid_T=128", "--format", "json"])
    assert json.loads(wider.output)["parameters"] < OPENSTL_KTH["tau"]
    bad = CliRunner().invoke(app, ["models", "--recipe", "kth/tau", "--format", "xml"])
    assert bad.exit_code == 1 and "--format 'xml': valid: table, json" in bad.output


def reference_divergence(pred: np.ndarray, true: np.ndarray, tau: float = 0.1, eps: float = 1e-12) -> float:
    """TAU's regulariser written out in NumPy: softmax over pixels of frame differences, KL(pred || truth)."""
    b, t = pred.shape[:2]
    gp = (pred[:, 1:] - pred[:, :-1]).reshape(b, t - 1, -1) / tau
    gt = (true[:, 1:] - true[:, :-1]).reshape(b, t - 1, -1) / tau
    p = np.exp(gp - gp.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    q = np.exp(gt - gt.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
    return float((p * np.log(p / (q + eps) + eps)).mean())


def test_differential_divergence_equals_the_formula():
    rng = np.random.default_rng(0)
    pred, true = rng.random((2, 5, 1, 8, 8)), rng.random((2, 5, 1, 8, 8))
    value = differential_divergence(torch.from_numpy(pred), torch.from_numpy(true))
    assert value.item() == pytest.approx(reference_divergence(pred, true), rel=1e-9)
    same = torch.from_numpy(pred)
    assert differential_divergence(same, same).item() == pytest.approx(0.0, abs=1e-9)
    assert differential_divergence(same[:, :2], same[:, :2]).item() == 0.0  # two frames: no pair of differences


def test_tau_recipes_train_with_the_regulariser():
    for name in ("kth/tau", "mmnist/tau"):
        recipe = load_recipe(name)
        assert recipe.train.diff_div_weight == 0.1 and recipe.model_args["translator"] == "tau"
    pred, true = torch.rand(2, 4, 1, 8, 8), torch.rand(2, 4, 1, 8, 8)
    loss = training_loss("mse", 0.1)(pred, true)
    expected = torch.nn.functional.mse_loss(pred, true) + 0.1 * differential_divergence(pred, true)
    assert torch.allclose(loss, expected)
    assert training_loss("mse", 0.0) is torch.nn.functional.mse_loss


@pytest.mark.parametrize("translator", ["convmixer", "poolformer", "mlpmixer", "van", "vit", "uniformer", "hornet"])
def test_metavp_translators_forecast_and_train(translator):
    """Each translator maps a tiny SimVP's latents through to frames of the input's shape, and gradients reach
    every parameter in training (drop path on)."""
    from svqbench.data.base import DatasetInfo
    from svqbench.models import create_model, forecast

    shape = DatasetInfo("tiny", 4, 4, 1, 16, 16)
    model = create_model("simvp", shape, hid_S=8, hid_T=16, N_S=2, N_T=3, translator=translator, drop_path=0.1)
    inputs = torch.rand(2, 4, 1, 16, 16)
    frames = forecast(model, inputs, 4).frames
    assert frames.shape == (2, 4, 1, 16, 16) and torch.isfinite(frames).all()
    frames.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
