"""import-openstl: OpenSTL checkpoints forecast OpenSTL's own test-time output (fixtures made with OpenSTL's classes,
tests/data/openstl/README.md), and a damaged checkpoint or one of another model is one line."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

import svqbench
from svqbench import data
from svqbench.cli import app
from svqbench.errors import SvqbenchError
from svqbench.interop.openstl import import_checkpoint

FIXTURES = Path(__file__).parent / "data" / "openstl"
NAMES = sorted(p.name for p in FIXTURES.iterdir() if (p / "fixture.json").is_file())
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A prepared dataset of the fixtures' clip shape (4 -> 4 frames of 1x16x16)."""
    root = tmp_path_factory.mktemp("data")
    series = np.random.default_rng(0).random((80, 1, 16, 16), dtype=np.float32)
    np.save(root / "clips.npy", series)
    data.prepare("arrays", root=root, src=root / "clips.npy", folder_name="clips", frames="4:4", split="0.6,0.2,0.2")
    return root


def checkpoint_of(name: str, folder: Path) -> Path:
    """The fixture's checkpoint; PhyDNet's (3.1M fixed-width parameters) is stored gzipped and unpacked here."""
    packed = FIXTURES / name / "checkpoint.pth.gz"
    if not packed.is_file():
        return FIXTURES / name / "checkpoint.pth"
    target = folder / f"{name}.pth"
    with gzip.open(packed, "rb") as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out)
    return target


def recipe_for(name: str, folder: Path, **model_changes) -> Path:
    fixture = json.loads((FIXTURES / name / "fixture.json").read_text())
    recipe = {"dataset": "clips", "model": {**fixture["model"], **model_changes}, "train": {"epochs": 1}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_every_model_openstl_also_has_has_a_fixture():
    models = {json.loads((FIXTURES / n / "fixture.json").read_text())["model"]["name"] for n in NAMES}
    translators = {n.removeprefix("simvp_") for n in NAMES if n.startswith("simvp_")}
    assert set("convlstm predrnn predrnn_v2 predrnn_pp mim e3d_lstm mau phydnet swinlstm".split()) <= models
    assert set("gsta incepu tau vit mlpmixer convmixer uniformer poolformer van hornet".split()) <= translators


@pytest.mark.parametrize("name", NAMES)
def test_an_imported_openstl_state_dict_forecasts_openstls_output(name, root, tmp_path):
    run_dir = tmp_path / "run"
    import_checkpoint(checkpoint_of(name, tmp_path), str(recipe_for(name, tmp_path)), run_dir, data_root=root)
    clip = np.load(FIXTURES / name / "clip.npz")
    forecaster = svqbench.load_run(run_dir, device="cpu")
    frames = forecaster.forecast(torch.from_numpy(clip["inputs"]), clip["outputs"].shape[1])
    assert float((frames - torch.from_numpy(clip["outputs"])).abs().max()) <= TOLERANCE
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["imported"]["format"] == "openstl" and len(meta["imported"]["sha256"]) == 64


def test_a_lightning_checkpoint_with_model_prefixes_imports_the_same(root, tmp_path):
    state = torch.load(FIXTURES / "predrnn" / "checkpoint.pth", weights_only=True)
    ckpt = tmp_path / "epoch=3.ckpt"
    torch.save({"epoch": 3, "global_step": 120, "state_dict": {f"model.{k}": v for k, v in state.items()}}, ckpt)
    import_checkpoint(ckpt, str(recipe_for("predrnn", tmp_path)), tmp_path / "run", data_root=root)
    clip = np.load(FIXTURES / "predrnn" / "clip.npz")
    frames = svqbench.load_run(tmp_path / "run", device="cpu").forecast(torch.from_numpy(clip["inputs"]), 4)
    assert float((frames - torch.from_numpy(clip["outputs"])).abs().max()) <= TOLERANCE


def one_line_refusal(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_a_checkpoint_of_another_model_a_misshapen_one_and_a_damaged_one_are_one_line(root, tmp_path):
    predrnn = FIXTURES / "predrnn" / "checkpoint.pth"
    common = ["--root", str(root), "--run-dir", str(tmp_path / "run")]
    other = one_line_refusal(["import-openstl", str(predrnn), "--recipe", str(recipe_for("mim", tmp_path)), *common])
    assert "missing" in other and "unexpected" in other and "cell_list.0.conv_x.0.weight" in other
    wider = ["--set", "model.num_hidden=[16,16]"]
    misshapen = one_line_refusal(
        ["import-openstl", str(predrnn), "--recipe", str(recipe_for("predrnn", tmp_path)), *wider, *common]
    )
    assert "misshapen" in misshapen and "(expected" in misshapen
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(predrnn.read_bytes()[:5000])
    assert "not a readable OpenSTL checkpoint" in one_line_refusal(
        ["import-openstl", str(damaged), "--recipe", str(recipe_for("predrnn", tmp_path)), *common]
    )
    assert not (tmp_path / "run").exists()  # nothing written by a refused import


def test_a_model_openstl_does_not_have_is_refused_naming_what_can_be_imported(root, tmp_path):
    recipe = tmp_path / "svq.yaml"
    recipe.write_text(yaml.safe_dump({"dataset": "clips", "model": {"name": "simvp_svq", "hid_S": 8}}))
    with pytest.raises(SvqbenchError, match="no OpenSTL counterpart.*valid: convlstm"):
        import_checkpoint(FIXTURES / "predrnn" / "checkpoint.pth", str(recipe), tmp_path / "run", data_root=root)
    standard = recipe_for("convlstm", tmp_path, cell="standard")
    with pytest.raises(SvqbenchError, match="model.cell='standard'"):
        import_checkpoint(FIXTURES / "convlstm" / "checkpoint.pth", str(standard), tmp_path / "run", data_root=root)


def test_the_imported_run_evaluates_like_a_trained_one_and_its_row_says_imported(root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(FIXTURES / "mau", tmp_path / "mau")
    runner = CliRunner()
    command = ["import-openstl", "mau/checkpoint.pth", "--recipe", str(recipe_for("mau", tmp_path))]
    command += ["--root", str(root), "--run-dir", "runs/mau"]
    result = runner.invoke(app, [*command, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "forecasts 4x1x16x16 frames on cpu" in result.output
    again = one_line_refusal(command)
    assert "already holds a run" in again
    result = runner.invoke(app, ["eval", "runs/mau", "--root", str(root), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "leaderboards" / "clips.csv").read_text()
    assert "imported_weights" in rows.splitlines()[0] and "openstl sha256:" in rows
