"""Hostile inputs to the CLI (issue 26, "Faults found"): each ends in exit 1 and exactly one ``error:`` line on
stderr, never a traceback. Each case runs ``python -m svqbench`` in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY_MODEL

REPO = Path(__file__).resolve().parents[1]


def svqbench(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "svqbench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def assert_one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr + result.stdout
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def _truncated_npy(folder: Path) -> Path:
    path = folder / "huge.npy"
    np.save(path, np.zeros((1000, 1, 16, 16), np.uint8))
    with path.open("r+b") as handle:  # keep the header, drop nearly all the data it declares
        handle.truncate(path.stat().st_size - 1000 * 16 * 16 + 100)
    return path


def _object_npy(folder: Path) -> Path:
    path = folder / "objects.npy"
    array = np.empty((20, 1, 4, 4), dtype=object)
    array[...] = 0
    np.save(path, array, allow_pickle=True)
    return path


def _object_npz(folder: Path) -> Path:
    path = folder / "objects.npz"
    array = np.empty((20, 1, 4, 4), dtype=object)
    array[...] = 0
    np.savez(path, frames=array)
    return path


def _empty_file(folder: Path) -> Path:
    path = folder / "empty.npy"
    path.write_bytes(b"")
    return path


def _complex_npy(folder: Path) -> Path:
    path = folder / "complex.npy"
    np.save(path, np.ones((20, 1, 4, 4), np.complex64))
    return path


def _good_npy(folder: Path) -> Path:
    path = folder / "good.npy"
    np.save(path, np.random.default_rng(0).integers(0, 255, (40, 1, 8, 8), dtype=np.uint8))
    return path


def _recipe(folder: Path) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "dataset": "digits",
                "model": {"name": "simvp", **TINY_MODEL},
                "train": {"epochs": 1, "max_steps": 1, "batch_size": 4, "num_workers": 0},
                "eval": {"metrics": ["mae"], "batch_size": 4},
            }
        )
    )
    return path


def _prep_arrays(source, *extra: str):
    return lambda folder: [
        "prep",
        "arrays",
        "--src",
        str(source(folder)),
        "--name",
        "mine",
        "--frames",
        "2:2",
        "--root",
        str(folder / "data"),
        *extra,
    ]


def _train_seed(seed: str):
    return lambda folder: [
        "train",
        str(_recipe(folder)),
        "--run-dir",
        str(folder / "run"),
        "--root",
        str(folder / "data"),
        "--device",
        "cpu",
        "--set",
        f"train.seed={seed}",
    ]


def _prep_named(name: str):
    return lambda folder: [
        "prep",
        "arrays",
        "--src",
        str(_good_npy(folder)),
        "--name",
        name,
        "--frames",
        "2:2",
        "--root",
        str(folder / "data"),
    ]


def _exiting_plugin(folder: Path) -> list[str]:
    plugin = folder / "quits.py"
    plugin.write_text("import sys\nsys.exit(3)\n")
    recipe = folder / "plugin.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "dataset": "digits",
                "model": {"name": "quits.py:Model"},
                "train": {"epochs": 1, "max_steps": 1, "batch_size": 4, "num_workers": 0},
            }
        )
    )
    return ["train", str(recipe), "--run-dir", str(folder / "run"), "--root", str(folder / "data"), "--device", "cpu"]


# ----- faults on prepared data and trained runs: built in this process (fast), then the CLI in a subprocess


def _digits(folder: Path) -> Path:
    from svqbench import data

    root = folder / "data"
    if not (root / "digits").exists():
        data.prepare("digits", root=root, train=12, val=4, test=4)
    return root


def _trained(folder: Path, steps: int = 1, model: dict | None = None) -> Path:
    """A run folder ``folder/trained`` of a tiny recipe (``folder/run`` stays unclaimed, as the checks expect)."""
    import torch

    from svqbench.config import load_recipe
    from svqbench.engine.train import train

    recipe = folder / "trained.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "dataset": "digits",
                "model": model or {"name": "simvp", **TINY_MODEL},
                "train": {"epochs": 5, "max_steps": steps, "batch_size": 4, "num_workers": 0},
                "eval": {"metrics": ["mae"], "batch_size": 4},
            }
        )
    )
    train(load_recipe(str(recipe)), folder / "trained", torch.device("cpu"), data_root=_digits(folder))
    return folder / "trained"


def _eval(folder: Path) -> list[str]:
    return ["eval", str(folder / "trained"), "--root", str(folder / "data"), "--device", "cpu"]


def _train_into(folder: Path, *extra: str) -> list[str]:
    return ["train", str(_recipe(folder)), "--root", str(folder / "data"), "--device", "cpu", *extra]


def _damaged_header(folder: Path) -> list[str]:
    """Fault 9: the .npy header of a prepared file damaged (its brackets opened, never closed)."""
    _trained(folder)
    path = folder / "data" / "digits" / "test" / "frames.npy"
    raw = bytearray(path.read_bytes())
    end = raw.index(b"}")
    raw[end] = ord(" ")
    raw[raw.index(b")", 0, end)] = ord(" ")
    path.write_bytes(bytes(raw))
    return _eval(folder)


def _altered_starts(folder: Path) -> list[str]:
    """Fault 10: window starts past the end of the frames (same size and header as before)."""
    import numpy as np

    path = _digits(folder) / "digits" / "train" / "starts.npy"
    starts = np.load(path)
    np.save(path, np.full_like(starts, 10**6))
    return _train_into(folder, "--run-dir", str(folder / "run"))


def _redirect_loop(folder: Path) -> list[str]:
    """Fault 11: a mirror that redirects to itself (served by this test process)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Loop(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", self.path)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Loop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return ["prep", "taxibj", "--root", str(folder / "data"), "--url", f"http://127.0.0.1:{server.server_port}/loop/x"]


def _linked_run_dir(folder: Path) -> list[str]:
    """Fault 12: --run-dir a symbolic link to a run folder, with --force."""
    _trained(folder)
    (folder / "link").symlink_to(folder / "trained")
    return _train_into(folder, "--run-dir", str(folder / "link"), "--force")


def _leaderboard_without_columns(folder: Path) -> list[str]:
    """Fault 13: $SVQBENCH_LEADERBOARDS holds a CSV without the convention column."""
    _trained(folder)
    (folder / "boards").mkdir()
    (folder / "boards" / "digits.csv").write_text("run_id,run,recipe,model,split,mae\nabc,r,x,simvp,test,0.1\n")
    return _eval(folder)


def _flipped_training_byte(folder: Path) -> list[str]:
    """Fault 15: one byte of the training frames flipped after prep."""
    path = _digits(folder) / "digits" / "train" / "frames.npy"
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF
    path.write_bytes(bytes(raw))
    return _train_into(folder, "--run-dir", str(folder / "run"))


def _other_dataset_in_place(folder: Path) -> list[str]:
    """Fault 16: another dataset's prepared folder moved into digits' place."""
    import shutil

    from svqbench import data

    root = _digits(folder)
    data.prepare("digits_small", root=root, train=12, val=4, test=4)
    shutil.rmtree(root / "digits")
    (root / "digits_small").rename(root / "digits")
    return _train_into(folder, "--run-dir", str(folder / "run"))


def _run_dir_held(folder: Path) -> list[str]:
    """Fault 17: a second train on a run folder another process is training (its lock held, here by this test)."""
    from svqbench.engine.runs import holding_run

    _digits(folder)
    held = holding_run(folder / "busy")
    held.__enter__()  # held until this test process ends (the next case gets a fresh folder)
    _HELD.append(held)
    return _train_into(folder, "--run-dir", str(folder / "busy"), "--force")


_HELD: list = []


def _edited_plugin_copy(folder: Path) -> list[str]:
    """Fault 18: the run's own copy of its plugin file edited after training."""
    plugin = folder / "tinynet.py"
    plugin.write_text(
        "import torch\nfrom torch import nn\n\n\nclass TinyNet(nn.Module):\n"
        "    def __init__(self, shape):\n        super().__init__()\n"
        "        self.scale = nn.Parameter(torch.ones(1))\n\n"
        "    def forward(self, inputs):\n        return inputs * self.scale\n"
    )
    run = _trained(folder, model={"name": f"{plugin}:TinyNet"})
    copy = run / "plugins" / "tinynet.py"
    copy.write_text(copy.read_text().replace("inputs * self.scale", "inputs * self.scale * 2"))
    return _eval(folder)


def _resume_shorter(folder: Path) -> list[str]:
    """Fault 19: resuming a finished 5-step run with train.max_steps=2."""
    _trained(folder, steps=5)
    return [
        "train",
        "--resume",
        str(folder / "trained"),
        "--set",
        "train.max_steps=2",
        "--root",
        str(folder / "data"),
        "--device",
        "cpu",
    ]


def _garbage_run_json(folder: Path) -> list[str]:
    """Fault 20: a run.json that is an object of the wrong fields."""
    _trained(folder)
    (folder / "trained" / "run.json").write_text('{"run_id": [1, 2], "step": "many"}')
    return _eval(folder)


def _linked_eval_folder(folder: Path) -> list[str]:
    """Fault 26: train --force into a run folder whose eval/ is a symbolic link."""
    _trained(folder)
    (folder / "elsewhere").mkdir()
    (folder / "trained" / "eval").symlink_to(folder / "elsewhere")
    return _train_into(folder, "--run-dir", str(folder / "trained"), "--force")


CASES = {
    "3 seed too big": (_train_seed("100000000000000000000000"), "train.seed"),
    "3 seed negative": (_train_seed("-5"), "train.seed"),
    "5 npy header beyond file": (_prep_arrays(_truncated_npy), "huge.npy"),
    "6 object npy": (_prep_arrays(_object_npy), "objects.npy"),
    "7 object npz": (_prep_arrays(_object_npz), "objects.npz"),
    "8 nan split": (_prep_arrays(_good_npy, "--split", "nan,nan,nan"), "nan,nan,nan"),
    "27 empty file": (_prep_arrays(_empty_file), "empty.npy"),
    "28 complex array": (_prep_arrays(_complex_npy), "complex"),
    "14 name climbing out": (_prep_named("../../escape"), "../../escape"),
    "14 name absolute": (_prep_named("/tmp/elsewhere"), "/tmp/elsewhere"),
    "29 plugin sys.exit": (_exiting_plugin, "model.name"),
    "9 damaged npy header": (_damaged_header, "test/frames.npy: damaged .npy header"),
    "10 window starts past the frames": (_altered_starts, "train/starts.npy"),
    "11 redirect loop": (_redirect_loop, "redirects in a loop"),
    "12 run dir is a link": (_linked_run_dir, "is a symbolic link"),
    "13 leaderboard lacks columns": (_leaderboard_without_columns, "lacks the column convention"),
    "15 flipped training byte": (_flipped_training_byte, "train/frames.npy: checksum differs"),
    "16 another dataset in place": (_other_dataset_in_place, "holds the prepared dataset 'digits_small'"),
    "17 run dir held by another process": (_run_dir_held, "another svqbench process is working on this run"),
    "18 plugin copy edited": (_edited_plugin_copy, "changed since the run trained"),
    "19 resume shorter than trained": (_resume_shorter, "the run has trained 5 steps"),
    "20 run.json of wrong fields": (_garbage_run_json, "run.json: run_id is [1, 2]"),
    "26 eval folder is a link": (_linked_eval_folder, "eval is a symbolic link"),
}
ENV = {"13 leaderboard lacks columns": lambda folder: {"SVQBENCH_LEADERBOARDS": str(folder / "boards")}}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_ends_in_one_line(case, tmp_path, isolated_leaderboards):
    command, named = CASES[case]
    env = {"SVQBENCH_LEADERBOARDS": str(isolated_leaderboards), **ENV.get(case, lambda _: {})(tmp_path)}
    trained = tmp_path / "trained"
    before = {p.name: p.stat().st_mtime_ns for p in trained.iterdir()} if trained.is_dir() else None
    line = assert_one_error_line(svqbench(*command(tmp_path), cwd=tmp_path, env=env))
    assert named in line
    assert not (tmp_path / "run").exists(), "a refused run must not claim its folder"
    assert not (tmp_path / "data" / "mine").exists(), "a refused prep must leave no dataset behind"
    if trained.is_dir() and before is None:  # a run built by the case: nothing of it rewritten or deleted
        assert not (trained / "metrics.json").exists() and not (trained / "eval" / "test-standard.npz").exists()
        assert (trained / "last.pt").is_file() and (trained / "recipe.yaml").is_file()


def test_names_never_leave_the_data_root(tmp_path):
    """Fault 14: nothing is written beside or above the data root."""
    svqbench(*_prep_named("../escape")(tmp_path), cwd=tmp_path)
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("module, dataset", [("mmnist", "mmnist"), ("weather", "weather_t2m")])
def test_mirror_url_without_trailing_slash_is_joined(module, dataset, tmp_path, monkeypatch):
    """Fault 22: ``--url http://mirror/folder`` names files inside the folder, not ``folderFILE``."""
    import importlib

    from svqbench import data
    from svqbench.errors import SvqbenchError

    asked = []

    def fetch(source, target, src, url):
        asked.append(url)
        raise SvqbenchError("stop after the first URL")

    monkeypatch.setattr(importlib.import_module(f"svqbench.data.{module}"), "fetch", fetch)
    with pytest.raises(SvqbenchError):
        data.prepare(dataset, root=tmp_path, url="http://mirror.example/folder")
    assert asked and asked[0].startswith("http://mirror.example/folder/"), asked


def test_report_never_embeds_what_a_linked_recipe_points_at(tmp_path):
    """Fault 23: a run whose recipe.yaml is a symbolic link to another file (a secret)."""
    import pandas as pd

    from svqbench.flows.report import runs_html

    secret = tmp_path / "secret.txt"
    secret.write_text("password: hunter2\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").symlink_to(secret)
    table = pd.DataFrame(
        [{"run": "run", "recipe": "r", "seed": 1, "path": str(run), "git_commit": "", "train_seconds": 1.0}]
    )
    page = runs_html(table)
    assert "hunter2" not in page and "symbolic link; not embedded" in page


def test_leaderboard_cells_cannot_become_spreadsheet_formulas(tmp_path):
    """Fault 24: cells starting with =, @, + or - are stored behind a quote (numbers stay numbers) and read back."""
    import pandas as pd

    from svqbench.results import leaderboard

    rows = {"run_id": ["a", "b"], "run": ['=HYPERLINK("http://x")', "+cmd"], "recipe": ["@SUM(1)", "-x"]}
    rows.update({"model": ["m", "m"], "convention": ["standard"] * 2, "split": ["test"] * 2, "mse": [-0.5, 0.1]})
    text = leaderboard.to_csv_text(pd.DataFrame(rows), tmp_path)
    for line in text.splitlines()[1:]:
        assert not any(cell.lstrip('"').startswith(("=", "@", "+")) for cell in line.split(","))
    assert ",-0.5" in text  # a negative number is not text
    (tmp_path / "board.csv").write_text(text)
    back = leaderboard.read("board", tmp_path)
    assert list(back["run"]) == rows["run"] and list(back["recipe"]) == rows["recipe"]


def test_markdown_leaderboards_escape_html_in_names(tmp_path):
    """Fault 25: run names with <script> or <img onerror> are text in the Markdown leaderboard."""
    import pandas as pd

    from svqbench.results.views import to_markdown

    row = {"run_id": "a", "run": "<script>alert(1)</script>", "recipe": '"><img src=x onerror=alert(1)>', "model": "m"}
    row.update({"overrides": "", "seed": 1, "convention": "standard", "split": "test", "mse": 0.1, "path": ""})
    markdown = to_markdown("d", pd.DataFrame([row]))
    assert "<script>" not in markdown and "<img" not in markdown
    assert "&lt;script&gt;" in markdown and "&lt;img src=x onerror=alert(1)&gt;" in markdown
