"""SwinLSTM: both variants' shapes and OpenSTL's parameter counts, test-time rollout on its own predictions
(beyond the trained horizon too), a training pass that is the test pass, gradients, the shifted-window mask,
and one-line errors for bad options."""

from __future__ import annotations

import pytest
import torch

from svqbench.config import load_recipe
from svqbench.errors import SvqbenchError
from svqbench.models import count_parameters, create_model, forecast, training_forecast
from svqbench.models.shape import ClipShape
from svqbench.models.translators import shifted_window_mask

TOY = ClipShape(4, 4, 2, 16, 16)
TINY = {
    "d": {"embed_dim": 4, "depths_downsample": [1, 3], "depths_upsample": [3, 1], "num_heads": [1, 2]},
    "b": {"embed_dim": 8, "depths": 3, "num_heads": 2},
}
# OpenSTL's SwinLSTM_D_Model / SwinLSTM_B_Model (timm 0.6) at configs/mmnist/SwinLSTM-D.py and
# configs/human/SwinLSTM-B.py, counted with their own classes
OPENSTL = [
    ("mmnist/swinlstm_d", ClipShape(10, 10, 1, 64, 64), 20_191_969),
    ("mmnist/swinlstm_b", ClipShape(10, 10, 1, 64, 64), 2_778_417),
    ("human/swinlstm_b", ClipShape(4, 4, 3, 256, 256), 2_781_747),
]


def build(variant: str, **extra) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("swinlstm", TOY, variant=variant, window_size=2, **TINY[variant], **extra)


def clips(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(2, *TOY.shape_in, generator=generator), torch.rand(2, *TOY.shape_out, generator=generator)


@pytest.mark.parametrize("recipe, shape, parameters", OPENSTL)
def test_recipes_count_openstl_parameters(recipe, shape, parameters):
    loaded = load_recipe(recipe)
    with torch.device("meta"):
        model = create_model(loaded.model_name, shape, **loaded.model_args)
    assert count_parameters(model) == parameters


@pytest.mark.parametrize("variant", ["d", "b"])
def test_forecast_shapes_and_rollout_beyond_the_horizon(variant):
    model = build(variant).eval()
    inputs, _ = clips()
    with torch.no_grad():
        one_pass = model(inputs)
        assert one_pass.frames.shape == (2, *TOY.shape_out) and one_pass.aux_loss == 0
        assert ((one_pass.frames >= 0) & (one_pass.frames <= 1)).all()  # the sigmoid readout
        long = forecast(model, inputs, 9).frames
        assert long.shape == (2, 9, *TOY.shape_out[1:])
        torch.testing.assert_close(long[:, :4], one_pass.frames)
        # frames 5..8 are a second pass on the model's own predictions, never on ground truth
        torch.testing.assert_close(long[:, 4:8], model(one_pass.frames).frames)


@pytest.mark.parametrize("variant", ["d", "b"])
def test_training_pass_is_the_test_pass_and_gradients_flow(variant):
    model = build(variant, drop_path_rate=0.0)
    assert not model.trains_with_targets  # no scheduled sampling, as OpenSTL's
    inputs, targets = clips()
    _, other_targets = clips(seed=1)
    inputs.requires_grad_(True)
    out = training_forecast(model, inputs, targets, step=0)
    with torch.no_grad():  # the targets never enter; the test-time pass computes the same
        torch.testing.assert_close(training_forecast(model, inputs, other_targets, step=0).frames, out.frames)
        torch.testing.assert_close(model.eval()(inputs).frames, out.frames)
    torch.nn.functional.mse_loss(out.frames, targets).backward()
    assert torch.isfinite(inputs.grad).all() and inputs.grad.abs().sum() > 0
    frozen = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        else:
            frozen.append(name)
            assert p.grad is None, name
    # what OpenSTL builds and never calls: odd blocks' fusion and (variant d) the up stack's patch embedding
    assert frozen and all(".fuse." in n or n.startswith("unused.") for n in frozen)
    assert any(n.startswith("unused.") for n in frozen) == (variant == "d")


def test_drop_path_in_training_keeps_shapes():
    model = build("d", drop_path_rate=0.5).train()
    inputs, targets = clips()
    assert training_forecast(model, inputs, targets, step=0).frames.shape == targets.shape


def test_shifted_window_mask_separates_wrapped_regions():
    height, width, window, shift = 8, 4, 4, 2
    mask = shifted_window_mask(height, width, window, shift)
    assert mask.shape == (2, window * window, window * window)

    def band(i: int, size: int) -> int:
        return 0 if i < size - window else 1 if i < size - shift else 2

    labels = torch.tensor([[3 * band(r, height) + band(c, width) for c in range(width)] for r in range(height)])
    windows = labels.view(2, window, 1, window).permute(0, 2, 1, 3).reshape(2, -1)
    expected = torch.where(windows[:, None, :] == windows[:, :, None], 0.0, -100.0)
    assert torch.equal(mask, expected)
    assert (mask[1] == -100).any()


@pytest.mark.parametrize(
    "args, needle",
    [
        ({"variant": "c"}, "model.variant='c'; valid: d, b"),
        ({"variant": "d", "depths": 4}, "model.depths is variant b's"),
        ({"variant": "b", "depths_upsample": [2]}, "model.depths_upsample is variant d's"),
        ({"patch_size": 4}, "model.patch_size=4; valid: 2"),
        ({"depths_downsample": [2], "depths_upsample": [2, 2]}, "one entry per level"),
        ({"depths_downsample": [2, 0]}, "model.depths_downsample=[2, 0]"),
        ({"variant": "b", "num_heads": [2, 2]}, "model.num_heads=[2, 2]; valid: a positive integer"),
        ({"num_heads": [3, 8]}, "128 channels do not split into 3 heads"),
        ({"window_size": 3}, "windows of 3 do not tile a 8x8 token grid"),
        ({"drop_path_rate": 1.0}, "model.drop_path_rate=1.0"),
        ({"depths_downsample": [1, 1, 1, 1], "depths_upsample": [1] * 4, "num_heads": [1] * 4}, "divisible by 16"),
        ({"embed": 3}, "has no argument 'embed'"),
    ],
)
def test_bad_options_are_one_line_errors(args, needle):
    with pytest.raises(SvqbenchError) as info:
        create_model("swinlstm", TOY, **args)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_frames_the_patch_grid_cannot_hold_are_one_line_errors():
    with pytest.raises(SvqbenchError, match="sides divisible by 4") as info:
        create_model("swinlstm", ClipShape(4, 4, 1, 18, 18), variant="b")
    assert "\n" not in str(info.value)
