"""Every registered model: output shapes, rollout, finite values, and gradients reach its parameters."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_MODEL

from svqbench.data.base import DatasetInfo
from svqbench.errors import SvqbenchError
from svqbench.models import MODELS, count_parameters, create_model, forecast

INFO = DatasetInfo("toy", frames_in=4, frames_out=4, channels=2, height=16, width=16)
RECURRENT_TINY = {"num_hidden": [8, 8], "filter_size": 3, "patch_size": 2}
SMALL_ARGS = {
    "simvp": TINY_MODEL,
    "simvp_svq": {**TINY_MODEL, "codebook_size": 16},
    "convlstm": RECURRENT_TINY,
    "predrnn": RECURRENT_TINY,
    "predrnn_v2": RECURRENT_TINY,
    "predrnn_pp": RECURRENT_TINY,
    "mim": RECURRENT_TINY,
    "e3d_lstm": RECURRENT_TINY,
    "mau": {**RECURRENT_TINY, "sr_size": 2, "tau": 2},
    "phydnet": {"patch_size": 2},
    "swinlstm": {"embed_dim": 4, "depths_downsample": [1, 2], "depths_upsample": [2, 1], "num_heads": [1, 2]},
    "simvp_mlp": {**TINY_MODEL, "svq_hidden": 16},
}


@pytest.mark.parametrize("name", MODELS.names())
def test_model_shapes_and_backward(name):
    torch.manual_seed(0)
    model = create_model(name, INFO, **SMALL_ARGS.get(name, {}))
    inputs = torch.rand(2, *INFO.shape_in, requires_grad=True)
    out = forecast(model, inputs, INFO.frames_out)
    assert out.frames.shape == (2, INFO.frames_out, INFO.channels, INFO.height, INFO.width)
    assert torch.isfinite(out.frames).all() and torch.isfinite(out.aux_loss)
    if not out.frames.requires_grad:  # a fitted constant (blank): nothing to differentiate
        assert count_parameters(model) == 0
        return
    (out.frames.square().mean() + out.aux_loss).backward()
    assert torch.isfinite(inputs.grad).all()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("frames_out", [1, 3, 4, 9])
def test_rollout_truncates_and_extends(frames_out):
    model = create_model("simvp", INFO, **TINY_MODEL)
    inputs = torch.rand(1, *INFO.shape_in)
    frames = forecast(model, inputs, frames_out).frames
    assert frames.shape[1] == frames_out
    one_pass = model(inputs).frames
    torch.testing.assert_close(frames[:, : min(frames_out, 4)], one_pass[:, : min(frames_out, 4)])
    if frames_out > 4:  # the second pass is fed the first pass's prediction
        torch.testing.assert_close(frames[:, 4:8], model(one_pass).frames)


def test_persistence_repeats_last_frame():
    inputs = torch.rand(3, *INFO.shape_in)
    frames = forecast(create_model("persistence", INFO), inputs, 6).frames
    assert frames.shape[1] == 6
    assert torch.equal(frames, inputs[:, -1:].expand(-1, 6, -1, -1, -1))


def test_published_kth_parameter_counts():
    kth = DatasetInfo("kth", frames_in=10, frames_out=20, channels=1, height=128, width=128)
    args = {"hid_S": 64, "hid_T": 256, "N_S": 2, "N_T": 6}
    assert round(count_parameters(create_model("simvp", kth, translator="incepu", **args)) / 1e6, 1) == 12.2
    assert round(count_parameters(create_model("simvp", kth, translator="gsta", **args)) / 1e6, 1) == 15.6


def test_svq_sits_before_translator_or_after():
    pre = create_model("simvp_svq", INFO, **TINY_MODEL, codebook_size=16)
    post = create_model("simvp_svq", INFO, **TINY_MODEL, codebook_size=16, post_vq=True)
    assert pre.post_vq is False and post.post_vq is True
    assert pre.quantizer.codebook.shape == (16, TINY_MODEL["hid_S"])


@pytest.mark.parametrize("post_vq", [False, True])
@pytest.mark.parametrize("nonlinear, extra", [(True, 8 * 12 + 12 + 12 * 8 + 8), (False, 8 * 8 + 8)])
def test_mlp_is_a_bottleneck_in_svqs_place(post_vq, nonlinear, extra):
    """simvp_mlp = simvp + C -> K -> C (C = hid_S 8, K = svq_hidden 12), or one C -> C map when linear."""
    mlp = create_model("simvp_mlp", INFO, **TINY_MODEL, svq_hidden=12, nonlinear=nonlinear, post_vq=post_vq)
    assert mlp.post_vq is post_vq
    assert count_parameters(mlp) == count_parameters(create_model("simvp", INFO, **TINY_MODEL)) + extra


@pytest.mark.parametrize(
    "name, args, key",
    [
        ("nope", {}, "unknown model 'nope'"),
        ("simvp", {"hid_Z": 3}, "no argument 'hid_Z'"),
        ("simvp", {**TINY_MODEL, "translator": "lstm"}, "unknown translator 'lstm'"),
        ("simvp", {**TINY_MODEL, "N_S": 6}, "model.N_S=6"),
    ],
)
def test_bad_model_arguments_are_one_line_errors(name, args, key):
    odd = DatasetInfo("odd", 4, 4, 1, 20, 20)
    with pytest.raises(SvqbenchError, match=key.replace("(", r"\(")):
        create_model(name, odd, **args)


def test_blank_predicts_the_median_target_frame():
    """fit() takes the per-pixel median of training targets; the buffer travels in the state_dict."""
    frames = torch.zeros(5, 8, *INFO.shape_in[1:])
    frames[:3, 4:, 0, 2, 3] = 0.5  # 3 of 5 windows light the pixel in every target frame: median 0.5
    frames[:, 4:, 1, 7, 7] = torch.linspace(0, 1, 5)[:, None]
    windows = [(f[:4], f[4:]) for f in frames]
    model = create_model("blank", INFO)
    model.fit(windows)
    expected = torch.zeros(INFO.channels, INFO.height, INFO.width)
    expected[0, 2, 3], expected[1, 7, 7] = 0.5, 0.5
    torch.testing.assert_close(model.median, expected)
    out = forecast(model, torch.rand(2, *INFO.shape_in), 6).frames
    assert out.shape == (2, 6, *INFO.shape_in[1:]) and torch.equal(out[1, 5], expected)
    assert count_parameters(model) == 0
    reloaded = create_model("blank", INFO)
    reloaded.load_state_dict(model.state_dict())
    assert torch.equal(reloaded.median, expected)
