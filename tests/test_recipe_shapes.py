"""A recipe whose model cannot be built for its dataset's clips fails when it is loaded, in one line naming the key."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from svqbench.cli import app
from svqbench.config import load_recipe
from svqbench.errors import SvqbenchError

runner = CliRunner()


@pytest.mark.parametrize(
    "recipe, overrides, needles",
    [
        # the encoder's GroupNorm(2, hid_S): once a raw "num_channels (7) must be divisible by num_groups (2)"
        ("digits/simvp", ["model.hid_S=7"], ["model.hid_S=7", "even"]),
        # IncepU's grouped convs: hid_T/2 = 8 splits into 8 groups, hid_T = 17 does not
        ("digits/simvp_svq_quick", ["model.hid_T=17"], ["hid_T = 17", "8 GroupNorm groups"]),
        # T*hid_S = 10*6 = 60 channels into IncepU's 8 groups
        ("kth/simvp", ["model.hid_S=6"], ["T*hid_S = 60"]),
        # 2**(14//2) = 128 > 64: the encoder's stride does not divide the frame
        ("digits/simvp", ["model.N_S=14"], ["model.N_S=14", "64x64"]),
        # Swin's heads: hid_T = 100 is not a multiple of 8
        ("digits/simvp", ["model.translator=swin", "model.hid_T=100"], ["8 heads", "model.hid_T=100"]),
        # no explicit check: the model's own construction error, named with the key that was set
        ("digits/simvp", ["model.drop=1.5"], ["model: dropout probability", "(model.drop=1.5)"]),
    ],
)
def test_unbuildable_model_is_a_one_line_cli_error(recipe, overrides, needles, tmp_path):
    args = ["train", recipe, "--run-dir", str(tmp_path / "run"), "--device", "cpu"]
    for override in overrides:
        args += ["--set", override]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: recipes/"), result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_model_keys_are_named_when_none_was_overridden(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "dataset: digits\nmodel: {name: simvp, translator: gsta, hid_S: 8, hid_T: 16, N_T: 2, mlp_ratio: -1}\n"
    )
    with pytest.raises(
        SvqbenchError, match=r"bad.yaml: model: .*negative.*\(model\.translator='gsta', .*model\.mlp_ratio=-1\)"
    ):
        load_recipe(str(path))


def test_meta_device_limits_of_libraries_are_not_blamed_on_the_recipe(tmp_path):
    """FSQ computes its codebook size with .item(), which meta tensors cannot do: the recipe is still fine."""
    path = tmp_path / "fsq.yaml"
    path.write_text(
        "dataset: digits\n"
        "model: {name: simvp_vq, quantizer: fsq, translator: incepu, hid_S: 16, hid_T: 64, N_S: 2, N_T: 2}\n"
    )
    assert load_recipe(str(path)).model["quantizer"] == "fsq"


def test_unknown_shape_is_not_checked(tmp_path, monkeypatch):
    """A dataset made with `prep videos --name` has no shape until prepared: its recipe is checked at training."""
    monkeypatch.setenv("SVQBENCH_DATA", str(tmp_path))
    path = tmp_path / "mine.yaml"
    path.write_text("dataset: mine\nmodel: {name: simvp, N_S: 14}\n")
    assert load_recipe(str(path)).model["N_S"] == 14
