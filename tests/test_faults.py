"""Faults that lose nothing: a full disk, killed writers' leftovers, torn and garbage files, and bad values each
give one line, leave nothing partial behind and keep what was there."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_MODEL
from test_cli import assert_one_line_error, invoke

from svqbench import fileio
from svqbench.config import load_recipe
from svqbench.engine.runs import load_checkpoint, read_log
from svqbench.engine.train import train
from svqbench.errors import SvqbenchError

CPU = torch.device("cpu")


def recipe_file(folder: Path, **train_keys) -> Path:
    keys = {
        "epochs": 2,
        "max_steps": 2,
        "batch_size": 4,
        "lr": 1.0e-3,
        "num_workers": 0,
        "checkpoint_every": 1,
        **train_keys,
    }
    path = folder / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "dataset": "digits",
                "model": {"name": "simvp", **TINY_MODEL},
                "train": keys,
                "eval": {"metrics": ["mae", "mse"], "batch_size": 4},
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits_root) -> Path:
    folder = tmp_path_factory.mktemp("trained")
    run_dir = folder / "run"
    train(load_recipe(recipe_file(folder)), run_dir, CPU, data_root=digits_root)
    return run_dir


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run copy"))  # a space in the path on purpose


def disk_full_from_now(monkeypatch, where=fileio, name="fsync_file", only: str = "") -> None:
    """Writes (through ``where.name``) fail as on a full disk; ``only``: just those whose path holds it."""
    real = getattr(where, name)

    def full(*args, **kwargs):
        if only and only not in str(args[0]):
            return real(*args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(where, name, full)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and "tmp" in p.name)


def test_full_disk_while_writing_a_checkpoint(run_copy, digits_root, monkeypatch):
    before = load_checkpoint(run_copy / "last.pt")
    disk_full_from_now(monkeypatch, only=".last.")
    result = invoke(
        "train", "--resume", run_copy, "--set", "train.max_steps=3", "--root", digits_root, "--device", "cpu", "--quiet"
    )
    assert_one_line_error(result, "no space left on", "while writing", "last.pt")
    after = load_checkpoint(run_copy / "last.pt")  # the earlier checkpoint is intact
    assert after["step"] == before["step"] == 2
    assert leftovers(run_copy) == []


def test_full_disk_during_prep_leaves_no_partial_folder(tmp_path, monkeypatch):
    import svqbench.data.base as base

    disk_full_from_now(monkeypatch, base.os, "posix_fallocate")
    root = tmp_path / "data"
    result = invoke("prep", "digits", "--root", root, "--opt", "train=4", "--opt", "val=2", "--opt", "test=2")
    assert_one_line_error(result, "no space left on", "while writing", str(root / "digits"))
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []


def test_full_disk_during_eval_writes_nothing(run_copy, digits_root, isolated_leaderboards, monkeypatch):
    disk_full_from_now(monkeypatch)
    result = invoke("eval", run_copy, "--root", digits_root, "--device", "cpu")
    assert_one_line_error(result, "no space left on", "while writing")
    assert not (run_copy / "metrics.json").exists() and not list((run_copy / "eval").glob("*"))
    assert not (isolated_leaderboards / "digits.csv").exists()


def test_writes_are_flushed_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("rename"), real_replace(a, b))[1])
    fileio.write_text(tmp_path / "row.csv", "a,b\n")
    assert events[:2] == ["fsync", "rename"]


def test_the_next_writer_removes_what_a_killed_writer_left(tmp_path):
    dead = tmp_path / ".last.pid999999999.abc123.tmp.pt"  # no such process
    alive = tmp_path / f".last.pid{os.getppid()}.def456.tmp.pt"  # a writer that still runs
    other = tmp_path / ".best.pid999999999.abc123.tmp.pt"  # another file's
    for path in (dead, alive, other):
        path.write_bytes(b"partial")
    fileio.write_text(tmp_path / "last.pt", "x")
    assert not dead.exists() and alive.exists() and other.exists()


def test_a_torn_last_log_line_does_not_block_resume(run_copy, digits_root):
    log = run_copy / "log.jsonl"
    with log.open("a") as f:
        f.write('{"epoch": 2, "step": 3, "train_lo')  # killed mid-write
    assert [r["step"] for r in read_log(log)] == [2]
    result = invoke(
        "train", "--resume", run_copy, "--set", "train.max_steps=3", "--root", digits_root, "--device", "cpu", "--quiet"
    )
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in read_log(log)] == [2, 3]
    text = log.read_text()
    assert text.endswith("\n") and "train_lo\n" not in text and '"train_lo{' not in text


def test_a_garbage_log_line_is_one_line(run_copy):
    log = run_copy / "log.jsonl"
    log.write_text("garbage\n" + log.read_text())
    with pytest.raises(SvqbenchError, match=r"log.jsonl:1: not a log record"):
        read_log(log)


def test_garbage_run_json_is_one_line_and_writes_nothing(run_copy, digits_root, isolated_leaderboards):
    (run_copy / "run.json").write_text("{not json")
    result = invoke("eval", run_copy, "--root", digits_root, "--device", "cpu")
    assert_one_line_error(result, "run.json: not a run record")
    assert not (run_copy / "metrics.json").exists() and not (run_copy / "eval").exists()


def test_an_unparseable_leaderboard_is_one_line_naming_the_line(run_copy, digits_root, isolated_leaderboards):
    isolated_leaderboards.mkdir(parents=True, exist_ok=True)
    (isolated_leaderboards / "digits.csv").write_text('run_id,mse\nabc,0.1\n"unclosed,1,2,3\nx,y,z,w\n')
    board = invoke("leaderboard", "digits")
    assert_one_line_error(board, "digits.csv", "line")
    evaluated = invoke("eval", run_copy, "--root", digits_root, "--device", "cpu")
    assert_one_line_error(evaluated, "digits.csv", "line")
    assert not (run_copy / "metrics.json").exists()


def test_runs_with_spaces_in_their_path_rank_the_same_from_any_folder(
    run_copy, digits_root, isolated_leaderboards, tmp_path, monkeypatch
):
    assert invoke("eval", run_copy, "--root", digits_root, "--device", "cpu").exit_code == 0
    first = invoke("leaderboard", "digits").output
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert invoke("leaderboard", "digits").output == first
    table = (isolated_leaderboards / "digits.csv").read_text()
    assert "../run copy" in table  # relative to the table's folder


@pytest.mark.parametrize(
    "text, needles",
    [
        (b"dataset: digits\nmodel: {name: simvp\n", ("tiny.yaml:3:1", "not valid YAML")),
        (b"dataset: digits\ndataset: kth\nmodel: {name: simvp}\n", ("tiny.yaml:2:1", "'dataset' is given twice")),
        (b"dataset: digits\nmodel: {name: simvp}\ntrain: {epochs: true}\n", ("train.epochs", "expected a number")),
        (b"dataset: digits\nmodel: {name: simvp}\ntrain: {lr: .inf}\n", ("train.lr", "finite number")),
        (b"dataset: digits\nmodel: {name: simvp, hid_S: yes}\n", ("model.hid_S", "expected a number")),
        (b"dataset: digits\nmodel: {name: simvp, drop_path: .nan}\n", ("model.drop_path", "finite number")),
        (b"dataset: digits\nmodel: {name: simvp}\n# caf\xe9\n", ("tiny.yaml", "not UTF-8")),
    ],
)
def test_recipe_faults_are_one_line(tmp_path, text, needles):
    path = tmp_path / "tiny.yaml"
    path.write_bytes(text)
    assert_one_line_error(invoke("train", path, "--run-dir", tmp_path / "run", "--device", "cpu"), *needles)


def test_negative_counts_are_one_line(trained, tmp_path):
    assert_one_line_error(invoke("eval", trained, "--batch-size", "-1"), "--batch-size -1", ">= 1")
    clip = tmp_path / "clip.avi"
    clip.write_text("not a video")
    assert_one_line_error(invoke("predict", trained, clip, "--frames", "-3"), "--frames -3", ">= 1")


def test_predict_on_a_file_that_is_not_a_video_is_one_line(trained, tmp_path, capfd):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(os.urandom(4000))
    result = invoke("predict", trained, clip, "--out", tmp_path / "p.gif", "--device", "cpu")
    assert_one_line_error(result, str(clip), "cannot open this video")
    assert "ERROR" not in capfd.readouterr().err  # no decoder log lines


@pytest.mark.parametrize(
    "override, needle",
    [
        ("train.lr=[1", "not valid YAML"),  # issue 26 fault 1: a ParserError traceback before
        ("train.lr=1\x01e-3", "not valid YAML"),  # fault 2: a ReaderError traceback before
    ],
)
def test_set_value_that_is_not_yaml_is_one_line(override, needle):
    with pytest.raises(SvqbenchError, match="--set") as caught:
        load_recipe("recipes/digits/simvp_svq.yaml", [override])
    assert needle in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "content, needles",
    [
        (b"name: s\x00\xff\xfe\n", ("study.yaml", "not UTF-8")),  # issue 26 fault 4: UnicodeDecodeError traceback
        (b"name: a\nname: b\n", ("study.yaml:2:1", "'name' is given twice")),
    ],
)
def test_study_file_mistakes_are_one_line(tmp_path, content, needles):
    from svqbench.flows.sweep import load_study

    path = tmp_path / "study.yaml"
    path.write_bytes(content)
    with pytest.raises(SvqbenchError) as caught:
        load_study(path)
    for needle in needles:
        assert needle in str(caught.value)
