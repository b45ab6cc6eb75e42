"""train.loggers: TensorBoard, W&B and MLflow read back with each tool's own reader, across a SIGKILL and a
resume; a missing package is a one-line error with the pip command; without loggers nothing more is written."""

from __future__ import annotations

import importlib.util
import io
import json
import signal
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import assert_one_line_error, invoke
from test_train_engine import cli, write_recipe

from svqbench.config import load_recipe
from svqbench.engine.loggers import PACKAGES
from svqbench.engine.train import CRASH_AT_STEP, train
from svqbench.progress import Reporter
from svqbench.results.leaderboard import group_overrides

CPU = torch.device("cpu")
ALL_STEPS = list(range(1, 9))  # max_steps 8, log_every 1
VAL_STEPS = [3, 6, 8]  # val_every 3, and the last step


INSTALLED = [name for name, module in PACKAGES.items() if importlib.util.find_spec(module) is not None]


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, digits_root) -> tuple[Path, dict]:
    """One run with every installed logger: 8 steps logging every step, SIGKILLed after step 5 (last.pt at
    step 4), then resumed. W&B offline with its caches in the test folder; MLflow on the run's file store."""
    if not INSTALLED:
        pytest.skip("no logger package installed (pip install 'svqbench[tensorboard,wandb,mlflow]')")
    folder = tmp_path_factory.mktemp("logged")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
            patch.setenv(name, str(folder / "wandb-home"))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        recipe_file = write_recipe(folder, checkpoint_every=4, val_every=3, log_every=1, loggers=INSTALLED)
        run_dir = folder / "run"
        process = cli(
            "train",
            recipe_file,
            "--root",
            digits_root,
            "--run-dir",
            run_dir,
            "--device",
            "cpu",
            "--quiet",
            env={CRASH_AT_STEP: "5"},
        )
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == -signal.SIGKILL, stderr
        train(
            load_recipe(str(run_dir / "recipe.yaml")),
            run_dir,
            CPU,
            digits_root,
            resume=True,
            reporter=Reporter(quiet=True),
        )
        yield run_dir, json.loads((run_dir / "run.json").read_text())


def assert_strip_image(image: np.ndarray) -> None:
    """The validation strip: 4 labelled rows (input, truth, prediction, |error|), not blank."""
    assert image.ndim == 3 and image.shape[2] in (3, 4) and image.shape[0] > 4 * 32, image.shape
    assert image[..., :3].std() > 5


def test_tensorboard_reads_back_scalars_image_and_hyperparameters_once_per_step(logged_run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir, meta = logged_run
    folder = run_dir / meta["loggers"]["tensorboard"]
    assert folder.name == meta["run_id"] and len(list(folder.glob("events.out.tfevents.*"))) == 2  # one per process
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    for tag in ("train/loss", "train/lr", "train/grad_norm", "train/samples_per_s", "train/memory_mb"):
        values = events.Scalars(tag)
        assert [v.step for v in values] == ALL_STEPS, tag  # the crashed process's step 5 was purged
        assert all(np.isfinite(v.value) and v.value > 0 for v in values), tag
    assert [v.step for v in events.Scalars("val/loss")] == VAL_STEPS
    images = events.Images("val/sample")
    assert [i.step for i in images] == VAL_STEPS
    assert_strip_image(np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string))))
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["train.lr"].number_value == pytest.approx(1e-3)
    assert hparams["run_id"].string_value == meta["run_id"]
    assert hparams["model.name"].string_value == "simvp_svq"


def wandb_records(path: Path) -> list:
    """The records of one W&B run file (``run-ID.wandb``): W&B's protobuf ``Record``s, each framed as in its
    write-ahead log (7-byte file header, then 32 KiB blocks of records with a 7-byte header: crc, length, type)."""
    from wandb.proto import wandb_internal_pb2

    raw, block, position, pending, records = path.read_bytes(), 32768, 7, b"", []
    assert raw[:4] == b":W&B", path
    while position + 7 <= len(raw):
        left = block - position % block
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", raw[position : position + 7])
        if length == 0 and kind == 0:  # the rest of the block is padding
            position += left
            continue
        pending += raw[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def test_wandb_offline_run_keeps_its_id_across_resume(logged_run):
    pytest.importorskip("wandb")
    run_dir, meta = logged_run
    run_id = meta["loggers"]["wandb"]
    assert run_id == meta["run_id"]
    files = sorted(run_dir.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 2  # the killed process's and the resumed one's, both of run id RUN_ID
    histories = []
    for path in files:
        records = wandb_records(path)
        deadline = time.monotonic() + 60
        while (
            path == files[-1]
            and (not records or records[-1].WhichOneof("record_type") != "exit")
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)  # W&B's writer process may still be flushing the finished run's file
            records = wandb_records(path)
        for run in [r.run for r in records if r.WhichOneof("record_type") == "run"]:  # none if killed before a write
            assert run.run_id == run_id and run.display_name == run_id
            config = {item.key: json.loads(item.value_json) for item in run.config.update}
            assert config["train.lr"] == pytest.approx(1e-3) and config["run_id"] == run_id
        assert path != files[-1] or any(r.WhichOneof("record_type") == "run" for r in records)
        rows = {}
        for record in records:
            if record.WhichOneof("record_type") == "history":
                row = {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item
                }
                rows[record.history.step.num] = row
        histories.append(rows)
    killed, resumed = histories
    # W&B's writer process buffers and dies with a SIGKILLed trainer: the killed file holds some prefix of 1..5
    assert set(killed) <= {1, 2, 3, 4, 5}
    assert sorted(resumed) == [5, 6, 7, 8]  # the resumed process starts after the checkpoint at step 4
    for step in set(killed) & set(resumed):  # exact resume: a step logged twice holds the same values
        assert killed[step]["train/loss"] == pytest.approx(resumed[step]["train/loss"], rel=1e-6)
    for step in resumed:
        assert resumed[step]["train/loss"] > 0 and resumed[step]["train/grad_norm"] > 0
        assert resumed[step]["train/samples_per_s"] > 0 and resumed[step]["train/memory_mb"] > 0
    assert [s for s in sorted(resumed) if "val/loss" in resumed[s]] == [6, 8]
    assert_strip_image(np.asarray(Image.open(files[1].parent / "files" / resumed[8]["val/sample/path"])))


def test_mlflow_file_store_holds_one_run_without_duplicated_steps(logged_run, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    run_dir, meta = logged_run
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").resolve().as_uri())
    run = client.get_run(meta["loggers"]["mlflow"])
    assert run.info.run_name == meta["run_id"] and run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.001" and run.data.params["run_id"] == meta["run_id"]
    for key in ("train/loss", "train/lr", "train/grad_norm", "train/samples_per_s", "train/memory_mb"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == ALL_STEPS, key
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")] == VAL_STEPS
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images") if a.path.endswith(".png")]
    assert sorted(int(p.split("+step+")[1].split("+")[0]) for p in images) == VAL_STEPS
    local = client.download_artifacts(run.info.run_id, images[0], str(tmp_path / "download"))
    assert_strip_image(np.asarray(Image.open(local)))
    experiments = [e for e in client.search_experiments() if e.name == "svqbench"]
    assert len(client.search_runs([experiments[0].experiment_id])) == 1  # the resume continued the same run


def test_without_loggers_only_log_jsonl_is_written(tmp_path, digits_root):
    run_dir = tmp_path / "run"
    train(
        load_recipe(str(write_recipe(tmp_path, max_steps=3))), run_dir, CPU, digits_root, reporter=Reporter(quiet=True)
    )
    assert not any((run_dir / name).exists() for name in ("tensorboard", "wandb", "mlruns"))
    assert "loggers" not in json.loads((run_dir / "run.json").read_text())


def test_missing_package_is_a_one_line_error_with_the_pip_command(tmp_path, digits_root, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    recipe_file = write_recipe(tmp_path)
    result = invoke(
        "train",
        recipe_file,
        "--root",
        digits_root,
        "--run-dir",
        tmp_path / "run",
        "--device",
        "cpu",
        "--set",
        "train.loggers=tensorboard,mlflow",
    )
    assert_one_line_error(result, "train.loggers=mlflow", 'pip install "svqbench[mlflow]"')
    assert not (tmp_path / "run").exists()  # refused before the run folder is claimed


def test_unknown_logger_and_bad_log_every_are_one_line_errors(tmp_path, digits_root):
    recipe_file = write_recipe(tmp_path)
    result = invoke("train", recipe_file, "--root", digits_root, "--set", "train.loggers=tensorbord")
    assert_one_line_error(result, "train.loggers", "'tensorboard', 'wandb' or 'mlflow'", "tensorbord")
    result = invoke("train", recipe_file, "--root", digits_root, "--set", "train.log_every=0")
    assert_one_line_error(result, "train.log_every")


def test_loggers_change_neither_leaderboard_groups_nor_what_a_resume_may_set():
    assert group_overrides("train.loggers=wandb train.seed=2 model.hid_S=8 train.log_every=5") == "model.hid_S=8"
    from svqbench.engine.runs import RESUMABLE_KEYS

    assert {"train.loggers", "train.log_every"} <= set(RESUMABLE_KEYS)
