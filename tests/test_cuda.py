"""The GPU path (skipped without CUDA): training in fp32, bf16 and fp16, CUDA evaluation equal to the CPU's,
deterministic kill-and-resume to the bitwise same weights, train.compile, and DDP over nccl at world size 1."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from test_train_engine import assert_same_weights, cli, write_recipe

from svqbench.config import load_recipe
from svqbench.engine.evaluate import evaluate
from svqbench.engine.runs import load_checkpoint
from svqbench.engine.train import CRASH_AT_STEP, train
from svqbench.progress import Reporter

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU = torch.device("cuda", 0)
CPU = torch.device("cpu")


def quiet_train(recipe_file, run_dir, root, device=GPU, overrides=(), **kwargs):
    return train(
        load_recipe(str(recipe_file), list(overrides)), run_dir, device, root, reporter=Reporter(quiet=True), **kwargs
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_few_steps_in_each_precision(tmp_path, digits_root, precision):
    if precision == "bf16" and torch.cuda.get_device_capability(GPU) < (8, 0):
        pytest.skip("bf16 is emulated below compute capability 8.0")
    run_dir = quiet_train(write_recipe(tmp_path, max_steps=4, precision=precision), tmp_path / "run", digits_root)
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert load_checkpoint(run_dir / "last.pt")["step"] == 4
    assert all(line["train_loss"] is None or line["train_loss"] < 1 for line in log)


def test_cuda_evaluation_equals_the_cpu_evaluation(tmp_path, digits_root):
    run_dir = quiet_train(write_recipe(tmp_path, max_steps=2), tmp_path / "run", digits_root)
    on_gpu = evaluate(run_dir, GPU, data_root=digits_root, update_leaderboard=False)
    on_cpu = evaluate(run_dir, CPU, data_root=digits_root, update_leaderboard=False)
    for group in ("overall", "per_frame"):
        for name, value in on_cpu[group].items():
            assert on_gpu[group][name] == pytest.approx(value, rel=1e-5, abs=1e-5), (group, name)


def test_deterministic_kill_and_resume_is_bitwise(tmp_path, digits_root):
    recipe_file = write_recipe(tmp_path, checkpoint_every=2, deterministic=True)
    crashed = tmp_path / "crashed"
    process = cli(
        "train",
        recipe_file,
        "--root",
        digits_root,
        "--run-dir",
        crashed,
        "--device",
        "cuda",
        "--quiet",
        env={CRASH_AT_STEP: "5"},
    )
    process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL
    resumed = cli("train", "--resume", crashed, "--root", digits_root, "--device", "cuda", "--quiet")
    assert resumed.wait(timeout=300) == 0, resumed.communicate()[1]
    straight = cli(
        "train", recipe_file, "--root", digits_root, "--run-dir", tmp_path / "straight", "--device", "cuda", "--quiet"
    )
    assert straight.wait(timeout=300) == 0, straight.communicate()[1]
    assert_same_weights(crashed / "last.pt", tmp_path / "straight" / "last.pt")


def test_compiled_training_matches_eager(tmp_path, digits_root):
    recipe_file = write_recipe(tmp_path, max_steps=3)
    compiled = quiet_train(recipe_file, tmp_path / "compiled", digits_root, overrides=["train.compile=true"])
    eager = quiet_train(recipe_file, tmp_path / "eager", digits_root)
    for name, tensor in load_checkpoint(eager / "last.pt")["model"].items():
        torch.testing.assert_close(
            load_checkpoint(compiled / "last.pt")["model"][name], tensor, rtol=1e-4, atol=1e-5, msg=name
        )


def test_ddp_over_nccl_at_world_size_1(tmp_path, digits_root):
    recipe_file = write_recipe(tmp_path, max_steps=3, deterministic=True)
    process = cli(
        "train",
        recipe_file,
        "--root",
        digits_root,
        "--run-dir",
        tmp_path / "ddp",
        "--device",
        "cuda",
        "--quiet",
        launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"),
    )
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    single = quiet_train(recipe_file, tmp_path / "single", digits_root)
    ddp = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ddp["meta"]["world_size"] == 1 and ddp["step"] == 3
    for name, tensor in load_checkpoint(single / "last.pt")["model"].items():
        torch.testing.assert_close(ddp["model"][name].cpu(), tensor.cpu(), rtol=0, atol=1e-6, msg=name)
