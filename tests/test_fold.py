"""The folded-MLP ablation: SVQ's linear-output forms fold into simvp_mlp with equal predictions; out_relu
and non-SVQ runs are one-line errors; the simvp_mlp recipes mirror their simvp_svq siblings."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import TINY_MODEL
from typer.testing import CliRunner

from svqbench.cli import app
from svqbench.config import list_recipes, load_recipe, validate_recipe
from svqbench.engine.fold import fold_run, relative_difference
from svqbench.engine.runs import LoadedRun, load_checkpoint, save_checkpoint
from svqbench.engine.train import train
from svqbench.errors import SvqbenchError
from svqbench.models import count_parameters, forecast
from svqbench.models.bottleneck import fold_svq
from svqbench.models.simvp import CODEBOOK_ONLY_OPTIONS
from svqbench.models.svq import SVQ
from svqbench.progress import Reporter

CPU = torch.device("cpu")

# Every foldable option set: (post_vq, nonlinear, hid_relu, freeze_codebook); hid_relu only acts when nonlinear.
FOLDABLE = [
    (post_vq, nonlinear, hid_relu, frozen)
    for post_vq in (False, True)
    for nonlinear, hid_relu in ((True, True), (True, False), (False, True))
    for frozen in (False, True)
]


def train_run(root, run_dir, model: dict, steps: int = 2):
    """A tiny run trained for a few steps on the generated digits (lr high enough to move the codebook)."""
    recipe = validate_recipe(
        {
            "dataset": "digits",
            "name": "digits/tiny",
            "model": {**TINY_MODEL, **model},
            "train": {"epochs": 1, "max_steps": steps, "batch_size": 4, "lr": 1e-2, "num_workers": 0},
            "eval": {"batch_size": 4},
        }
    )
    train(recipe, run_dir, CPU, data_root=root, reporter=Reporter(True))
    return run_dir


@pytest.mark.parametrize("nonlinear, hid_relu", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("hidden_dim", [8, 64])  # 64 > N: SVQ caps its width at N, the fold keeps that width
def test_svq_layer_folds_into_an_equal_mlp(nonlinear, hid_relu, hidden_dim):
    torch.manual_seed(0)
    svq = SVQ(6, codebook_size=32, hidden_dim=hidden_dim, nonlinear=nonlinear, hid_relu=hid_relu).double()
    with torch.no_grad():
        svq.to_weights.bias.normal_()  # a zero-ish bias would hide a wrong c
    mlp = fold_svq(svq)
    z = torch.randn(3, 6, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(mlp(z), svq(z), rtol=1e-12, atol=1e-12)
    assert count_parameters(mlp) < count_parameters(svq)


def test_out_relu_layer_cannot_fold():
    with pytest.raises(SvqbenchError, match="out_relu cannot be folded"):
        fold_svq(SVQ(6, codebook_size=32, out_relu=True))


@pytest.mark.parametrize("post_vq, nonlinear, hid_relu, frozen", FOLDABLE)
def test_folded_run_predicts_what_the_svq_run_predicts(tmp_path, digits_root, post_vq, nonlinear, hid_relu, frozen):
    options = {"post_vq": post_vq, "nonlinear": nonlinear, "hid_relu": hid_relu, "freeze_codebook": frozen}
    source = train_run(digits_root, tmp_path / "svq", {"name": "simvp_svq", "codebook_size": 32, **options})
    report = fold_run(source, tmp_path / "mlp", CPU)
    assert report["max_relative_difference"] < 1e-5

    svq_run, mlp_run = LoadedRun(source, CPU), LoadedRun(tmp_path / "mlp", CPU)
    assert mlp_run.recipe.model_name == "simvp_mlp" and mlp_run.recipe.name == "digits/tiny (folded)"
    assert mlp_run.recipe.model_args == {
        **TINY_MODEL,
        "post_vq": post_vq,
        "nonlinear": nonlinear,
        "hid_relu": hid_relu,
        **({"svq_hidden": 32} if nonlinear else {}),
    }  # width min(128, N)
    assert count_parameters(mlp_run.model) < count_parameters(svq_run.model)
    assert report["parameters"] == {"svq": count_parameters(svq_run.model), "mlp": count_parameters(mlp_run.model)}
    inputs = torch.rand(3, 10, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = forecast(svq_run.model, inputs, 10).frames
        folded = forecast(mlp_run.model, inputs, 10).frames
    assert relative_difference(expected, folded) < 1e-5
    with torch.no_grad():  # the comparison can fail: dropping c = M^T b2 from the fold is visible
        mlp_run.model.quantizer.output.bias.zero_()
        assert relative_difference(expected, forecast(mlp_run.model, inputs, 10).frames) > 1e-4


def test_folded_run_directory_is_a_complete_run(tmp_path, digits_root):
    source = train_run(digits_root, tmp_path / "svq", {"name": "simvp_svq", "codebook_size": 32})
    for name in ("best.pt", "last.pt"):  # the run metadata contract: folded runs get their own id
        state = load_checkpoint(source / name)
        meta = {"run_id": "0123456789ab", "seed": 42, "step": state["step"]}
        save_checkpoint(source / name, **{**state, "meta": meta, "extra": {"kept": True}})
    (source / "run.json").write_text(json.dumps({"run_id": "0123456789ab", "recipe_name": "digits/tiny", "seed": 42}))
    out = tmp_path / "mlp"
    fold_run(source, out, CPU)

    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "log.jsonl", "recipe.yaml", "run.json"]
    assert yaml.safe_load((out / "recipe.yaml").read_text())["model"]["name"] == "simvp_mlp"
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["folded_from"] == "0123456789ab" and run_json["seed"] == 42
    assert len(run_json["run_id"]) == 12 and run_json["run_id"] != "0123456789ab"
    assert run_json["recipe_name"] == "digits/tiny (folded)"
    before, after = load_checkpoint(source / "last.pt"), load_checkpoint(out / "last.pt")
    assert after["meta"] == {
        **before["meta"],
        "run_id": run_json["run_id"],
        "folded_from": "0123456789ab",
        "recipe_name": "digits/tiny (folded)",
    }
    assert after["extra"] == {"kept": True} and after["step"] == before["step"] and after["info"] == before["info"]
    assert after["parameters"] == count_parameters(LoadedRun(out, CPU).model) < before["parameters"]

    # The folded run trains on: resume continues the MLP from the folded weights (fresh optimizer moments).
    train(
        load_recipe(str(out / "recipe.yaml"), ["train.epochs=2", "train.max_steps=4"]),
        out,
        CPU,
        data_root=digits_root,
        resume=True,
        reporter=Reporter(True),
    )
    assert load_checkpoint(out / "last.pt")["step"] == 4


runner = CliRunner()


def one_line_error(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.output
    return result.output


def test_cli_folds_refuses_an_existing_out_and_replaces_it_with_force(tmp_path, digits_root):
    source = train_run(digits_root, tmp_path / "svq", {"name": "simvp_svq", "codebook_size": 32}, steps=1)
    out = tmp_path / "mlp"
    folded = runner.invoke(app, ["fold", str(source), "--out", str(out), "--device", "cpu"])
    assert folded.exit_code == 0, folded.output
    assert folded.output.splitlines()[0] == str(out) and "largest relative difference" in folded.output
    assert "already exists" in one_line_error("fold", source, "--out", out, "--device", "cpu")
    assert "is the run itself" in one_line_error("fold", source, "--out", source, "--force")
    forced = runner.invoke(app, ["fold", str(source), "--out", str(out), "--force", "--device", "cpu"])
    assert forced.exit_code == 0, forced.output


@pytest.mark.parametrize(
    "model, needles",
    [
        ({"name": "simvp_svq", "codebook_size": 32, "out_relu": True}, ["out_relu cannot be folded", "commute"]),
        ({"name": "simvp"}, ["model 'simvp' cannot be folded", "simvp_svq"]),
    ],
)
def test_cli_unfoldable_runs_are_one_line_errors(tmp_path, digits_root, model, needles):
    source = train_run(digits_root, tmp_path / "run", model, steps=1)
    output = one_line_error("fold", source, "--out", tmp_path / "mlp", "--device", "cpu")
    assert all(needle in output for needle in needles), output
    assert not (tmp_path / "mlp").exists()


def test_cli_fold_of_a_missing_run(tmp_path):
    assert "does not exist" in one_line_error("fold", tmp_path / "nothing", "--out", tmp_path / "mlp")


SVQ_RECIPES = [name for name in list_recipes() if name.endswith("/simvp_svq")]


def test_every_simvp_svq_recipe_has_an_mlp_sibling():
    assert SVQ_RECIPES and {n.replace("/simvp_svq", "/simvp_mlp") for n in SVQ_RECIPES} <= set(list_recipes())


@pytest.mark.parametrize("svq_name", SVQ_RECIPES)
def test_mlp_recipe_differs_from_its_svq_sibling_only_in_the_codebook(svq_name):
    """After the simvp_svq recipes change (train settings, backbone), copy them into the simvp_mlp ones."""
    svq = load_recipe(svq_name).to_dict()
    mlp = load_recipe(svq_name.replace("/simvp_svq", "/simvp_mlp")).to_dict()
    assert mlp["model"].pop("name") == "simvp_mlp" and svq["model"].pop("name") == "simvp_svq"
    svq["model"] = {k: v for k, v in svq["model"].items() if k not in CODEBOOK_ONLY_OPTIONS}
    for recipe in (svq, mlp):
        del recipe["name"]
    assert mlp == svq


def test_fold_refuses_a_folded_model_that_differs(tmp_path, digits_root, monkeypatch):
    import svqbench.engine.fold as fold

    source = train_run(digits_root, tmp_path / "svq", {"name": "simvp_svq", "codebook_size": 32})
    monkeypatch.setattr(fold, "_check_equal", lambda *args: 2e-5)
    with pytest.raises(SvqbenchError, match=r"differs from the original by 2e-05 \(relative\), above 1e-05"):
        fold_run(source, tmp_path / "mlp", CPU)
    assert not (tmp_path / "mlp").exists()
