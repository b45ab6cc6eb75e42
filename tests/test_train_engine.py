"""The training engine: exact resume after SIGKILL, Ctrl-C, protected run folders, validation settings,
torchrun training and evaluation equal to one process, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_cli import assert_one_line_error, invoke

from svqbench import data
from svqbench.config import load_recipe
from svqbench.engine.batches import rank_batches
from svqbench.engine.evaluate import evaluate
from svqbench.engine.runs import LoadedRun, load_checkpoint
from svqbench.engine.train import CRASH_AT_STEP, make_setup, train
from svqbench.engine.world import World
from svqbench.errors import SvqbenchError
from svqbench.progress import Reporter

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def write_recipe(folder: Path, **train_keys) -> Path:
    train_cfg = {"epochs": 3, "max_steps": 8, "batch_size": 4, "lr": 1.0e-3, "num_workers": 0, **train_keys}
    path = folder / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "dataset": "digits",
                "model": {
                    "name": "simvp_svq",
                    "hid_S": 8,
                    "hid_T": 16,
                    "N_S": 2,
                    "N_T": 2,
                    "translator": "incepu",
                    "codebook_size": 32,
                },
                "train": train_cfg,
                "eval": {"metrics": ["mae", "mse", "ssim", "psnr"], "batch_size": 4},
            }
        )
    )
    return path


def cli(*args, env: dict | None = None, launcher: tuple[str, ...] = ()) -> subprocess.Popen:
    """``svqbench ARGS`` in a fresh process (optionally under a launcher such as torchrun)."""
    command = [sys.executable, *(launcher or ("-m",)), *(("-m",) if launcher else ()), "svqbench", *map(str, args)]
    # as many threads as this process uses, so the two halves of a run compute alike
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
        **(env or {}),
    }
    return subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def assert_same_weights(a: Path, b: Path) -> None:
    left, right = load_checkpoint(a), load_checkpoint(b)
    assert left["step"] == right["step"]
    for name, tensor in left["model"].items():
        assert torch.equal(tensor, right["model"][name]), name
    for key, state in left["optimizer"]["state"].items():
        for name, tensor in state.items():
            assert torch.equal(tensor, right["optimizer"]["state"][key][name]), (key, name)


@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_then_resume_gives_bitwise_identical_weights(tmp_path, digits_root, workers):
    recipe_file = write_recipe(tmp_path, checkpoint_every=2, num_workers=workers)
    crashed = tmp_path / "crashed"
    process = cli(
        "train",
        recipe_file,
        "--root",
        digits_root,
        "--run-dir",
        crashed,
        "--device",
        "cpu",
        "--quiet",
        env={CRASH_AT_STEP: "5"},
    )
    process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL
    assert load_checkpoint(crashed / "last.pt")["step"] == 4  # mid-epoch: epoch 2, batch 1 of 3 done
    assert load_checkpoint(crashed / "last.pt")["position"] == 1

    train(
        load_recipe(str(crashed / "recipe.yaml")), crashed, CPU, digits_root, resume=True, reporter=Reporter(quiet=True)
    )
    train(load_recipe(str(recipe_file)), tmp_path / "straight", CPU, digits_root, reporter=Reporter(quiet=True))
    assert_same_weights(crashed / "last.pt", tmp_path / "straight" / "last.pt")
    steps = [json.loads(line)["step"] for line in (crashed / "log.jsonl").read_text().splitlines()]
    assert steps == [3, 6, 8]  # the lines after the checkpoint were dropped and written again once
    assert json.loads((crashed / "run.json").read_text())["step"] == 8


def test_ctrl_c_writes_a_checkpoint_and_exits_130(tmp_path, digits_root):
    recipe_file = write_recipe(tmp_path, epochs=200, max_steps=0, checkpoint_every=0, num_workers=2)
    run_dir = tmp_path / "run"
    process = cli("train", recipe_file, "--root", digits_root, "--run-dir", run_dir, "--device", "cpu", "--quiet")
    deadline = time.monotonic() + 120
    while not (run_dir / "log.jsonl").is_file():  # past the first epoch: the loop is running
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    os.killpg(os.getpgid(process.pid), signal.SIGINT)  # as a terminal does: the loader's workers get it too
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted at step" in lines[0] and "--resume" in lines[0], stderr
    step = int(lines[0].split("interrupted at step ")[1].split(";")[0])
    assert load_checkpoint(run_dir / "last.pt")["step"] == step > 0


def test_run_folders_are_never_clobbered(tmp_path, digits_root):
    recipe_file = write_recipe(tmp_path, max_steps=2)
    run_dir = tmp_path / "run"
    base = ("--root", digits_root, "--device", "cpu", "--quiet")
    assert invoke("train", recipe_file, "--run-dir", run_dir, *base).exit_code == 0
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    assert_one_line_error(
        invoke("train", recipe_file, "--run-dir", run_dir, *base),
        str(run_dir),
        "already holds a run",
        "--resume",
        "--force",
    )
    assert json.loads((run_dir / "run.json").read_text())["run_id"] == run_id

    assert_one_line_error(
        invoke("train", "--resume", run_dir, "--set", "model.hid_S=16", *base),
        "--set model.hid_S",
        "train.epochs",
        "train.max_steps",
    )
    assert_one_line_error(invoke("train", recipe_file, "--resume", run_dir, *base), "drop RECIPE")
    assert_one_line_error(invoke("train", "--resume", tmp_path / "none", *base), "no run there")
    with pytest.raises(SvqbenchError, match="train.lr differs"):
        train(
            load_recipe(str(recipe_file), ["train.lr=0.5"]),
            run_dir,
            CPU,
            digits_root,
            resume=True,
            reporter=Reporter(quiet=True),
        )

    resumed = invoke("train", "--resume", run_dir, "--set", "train.max_steps=4", *base)
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(run_dir / "last.pt")["step"] == 4
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["train"]["max_steps"] == 4

    forced = invoke("train", recipe_file, "--run-dir", run_dir, "--force", *base)
    assert forced.exit_code == 0, forced.output
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["run_id"] != run_id and meta["step"] == 2
    assert len((run_dir / "log.jsonl").read_text().splitlines()) == 1


def test_validation_every_steps_on_a_subset_with_early_stop(tmp_path, digits_root):
    recipe = load_recipe(
        str(
            write_recipe(
                tmp_path, epochs=50, max_steps=0, val_every=1, val_samples=2, patience=2, lr=1e-9, select="last"
            )
        )
    )
    run_dir = train(recipe, tmp_path / "run", CPU, digits_root, reporter=Reporter(quiet=True))
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert all(line["val_loss"] is not None for line in log) and log[0]["step"] == 1
    assert len(log) < 50 * 3  # stopped early: a learning rate of 1e-9 cannot keep improving
    assert LoadedRun(run_dir, CPU).checkpoint_file.name == "last.pt"
    assert LoadedRun(run_dir, CPU).meta["selection"] == "last"


def test_val_not_held_out_selects_last(tmp_path):
    root = tmp_path / "data"
    data.prepare("digits", root=root, train=8, val=4, test=4)
    manifest = root / "digits" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "val_held_out": False}))
    run_dir = train(
        load_recipe(str(write_recipe(tmp_path, max_steps=2))),
        tmp_path / "run",
        CPU,
        root,
        reporter=Reporter(quiet=True),
    )
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["val_held_out"] is False and meta["selection"] == "last"
    run = LoadedRun(run_dir, CPU)
    assert run.selection == "last" and run.checkpoint_file.name == "last.pt" and run.meta["val_held_out"] is False


def test_every_world_size_sees_the_same_global_batches():
    single = rank_batches(13, 4, seed=7, epoch=2, start=1, count=2, world=World())
    halves = [rank_batches(13, 4, seed=7, epoch=2, start=1, count=2, world=World(rank, 2)) for rank in range(2)]
    assert [a + b for a, b in zip(*halves)] == single
    assert rank_batches(13, 4, 7, 3, 0, 3, World()) != rank_batches(13, 4, 7, 2, 0, 3, World())  # new epoch order


def test_one_line_errors_for_fp16_on_cpu_and_a_world_that_does_not_divide_the_batch(tmp_path, digits_root):
    fp16 = load_recipe(str(write_recipe(tmp_path, precision="fp16")))
    with pytest.raises(SvqbenchError, match="fp16 needs a CUDA GPU"):
        make_setup(fp16, tmp_path / "run", CPU, World(), digits_root, Reporter(quiet=True))
    recipe = load_recipe(str(write_recipe(tmp_path)))
    with pytest.raises(SvqbenchError, match="batch_size=4 is the global batch; 3 processes"):
        make_setup(recipe, tmp_path / "run", CPU, World(0, 3), digits_root, Reporter(quiet=True))


def test_out_of_memory_is_a_one_line_error(tmp_path, digits_root, monkeypatch):
    import svqbench.engine.train as engine

    def exhausted(*args):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
            "to allocate 123456789 bytes"
        )

    monkeypatch.setattr(engine, "train_step", exhausted)
    with pytest.raises(SvqbenchError, match=r"out of memory at train.batch_size=4 .*lower it"):
        train(
            load_recipe(str(write_recipe(tmp_path))), tmp_path / "run", CPU, digits_root, reporter=Reporter(quiet=True)
        )


@pytest.fixture(scope="module")
def uneven_root(tmp_path_factory) -> Path:
    """Digits with 5 test windows: two processes get shares of 3 and 2."""
    root = tmp_path_factory.mktemp("uneven")
    data.prepare("digits", root=root, train=12, val=4, test=5)
    return root


def torchrun(*args) -> subprocess.CompletedProcess:
    process = cli(*args, launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"))
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr[:3000]
    return stdout


def test_torchrun_two_processes_train_and_evaluate_like_one(tmp_path, uneven_root):
    recipe_file = write_recipe(tmp_path, epochs=7, max_steps=20)
    base = ("--root", uneven_root, "--device", "cpu")
    stdout = torchrun("train", recipe_file, "--run-dir", tmp_path / "ddp", "--quiet", *base)
    assert stdout.strip() == str(tmp_path / "ddp")  # rank 0 alone prints
    single = train(load_recipe(str(recipe_file)), tmp_path / "single", CPU, uneven_root, reporter=Reporter(quiet=True))
    ddp_state, single_state = load_checkpoint(tmp_path / "ddp" / "last.pt"), load_checkpoint(single / "last.pt")
    assert ddp_state["step"] == single_state["step"] == 20 and ddp_state["meta"]["world_size"] == 2
    for name, tensor in single_state["model"].items():
        torch.testing.assert_close(ddp_state["model"][name], tensor, rtol=0, atol=1e-4, msg=name)

    torchrun("eval", single, *base)
    together = json.loads((single / "metrics.json").read_text())
    alone = evaluate(single, CPU, data_root=uneven_root, update_leaderboard=False)
    assert together["count"] == alone["count"] == 5  # every window exactly once
    for group in ("overall", "per_frame"):
        for name, value in alone[group].items():
            assert together[group][name] == pytest.approx(value, rel=1e-6, abs=1e-6), (group, name)


def test_channels_last_trains_the_same_model_and_resumes(tmp_path, digits_root, monkeypatch):
    """train.channels_last keeps every 4-D weight channels-last during training (what makes it faster on CPUs),
    trains the model of the default layout up to float rounding, and its checkpoints resume and evaluate."""
    from svqbench.engine import train as engine

    seen = []
    build = engine.build_state
    monkeypatch.setattr(engine, "build_state", lambda s, model, meta: seen.append(model) or build(s, model, meta))
    plain = train(
        load_recipe(str(write_recipe(tmp_path, schedule="constant"))),
        tmp_path / "plain",
        CPU,
        digits_root,
        reporter=Reporter(quiet=True),
    )
    recipe = load_recipe(str(write_recipe(tmp_path, schedule="constant", channels_last=True)), ["train.max_steps=4"])
    half = train(recipe, tmp_path / "cl", CPU, digits_root, reporter=Reporter(quiet=True))
    weights = [p for p in seen[-1].parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    assert not all(p.is_contiguous() for p in weights)  # really another layout (not 1x1 kernels only)
    resumed = load_recipe(str(tmp_path / "cl" / "recipe.yaml"), ["train.max_steps=8"])
    train(resumed, half, CPU, digits_root, resume=True, reporter=Reporter(quiet=True))
    left, right = load_checkpoint(plain / "last.pt")["model"], load_checkpoint(half / "last.pt")["model"]
    assert load_checkpoint(half / "last.pt")["step"] == 8
    floats = [key for key, value in left.items() if value.is_floating_point()]
    difference = sum(float((left[k].double() - right[k].double()).square().sum()) for k in floats)
    relative = (difference / sum(float(left[k].double().square().sum()) for k in floats)) ** 0.5
    print(f"channels-last vs default layout after 8 steps: {relative:.2e}")
    assert relative < 1e-3
    assert evaluate(half, CPU, ["mae"], data_root=digits_root)["overall"]["mae"] > 0
