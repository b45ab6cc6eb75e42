"""`svqbench bench`: the explicit SVQ form equals the fast one, FLOPs count the rollout, timings interleave,
the report and its JSON; `svqbench eval --svq-stats`; bad input as one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_MODEL
from typer.testing import CliRunner

from svqbench import data
from svqbench.bench import measure as bench
from svqbench.cli import app
from svqbench.config import load_recipe
from svqbench.data.base import DatasetInfo
from svqbench.engine.runs import LoadedRun
from svqbench.errors import SvqbenchError
from svqbench.models import create_model, forecast
from svqbench.models.svq import SVQ, svq_statistics

CPU = torch.device("cpu")
runner = CliRunner()


@pytest.fixture
def tiny_bench_recipe(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "dataset: not_registered\n"
        "model: {name: simvp_svq, hid_S: 8, hid_T: 16, N_S: 2, N_T: 2, translator: incepu, codebook_size: 32}\n"
        "train: {batch_size: 2, loss: l1}\n"
    )
    return path


@pytest.mark.parametrize("options", [{}, {"out_relu": True}, {"nonlinear": False}, {"hid_relu": False}])
def test_explicit_form_matches_fast_form_and_its_gradients(options):
    torch.manual_seed(0)
    svq = SVQ(6, 40, hidden_dim=16, **options)
    z = torch.randn(3, 6, 4, 5, requires_grad=True)
    upstream = torch.randn(3, 6, 4, 5)
    results = []
    for layer in (svq, bench.ExplicitSVQ(svq)):
        svq.zero_grad()
        z.grad = None
        out = layer(z)
        out.backward(upstream)
        results.append((out.detach(), z.grad.clone(), svq.codebook.grad.clone(), svq.to_weights.weight.grad.clone()))
    for fast, explicit in zip(*results):
        torch.testing.assert_close(fast, explicit, rtol=1e-4, atol=1e-5)


def test_flops_count_every_rollout_pass():
    one_pass = DatasetInfo("toy", 4, 4, 1, 16, 16)
    two_passes = DatasetInfo("toy", 4, 8, 1, 16, 16)
    model = create_model("simvp_svq", one_pass, **TINY_MODEL, codebook_size=16)
    flops = bench.count_flops(model, one_pass, CPU)
    assert flops > 0
    assert bench.count_flops(model, two_passes, CPU) == 2 * flops


def test_timings_interleave_candidates_and_keep_the_minimum():
    calls = []
    candidates = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    seconds = bench.interleaved_min_seconds(candidates, CPU, repeats=3)
    assert calls == ["a", "b"] * 4  # one warm-up round, then three interleaved rounds
    assert set(seconds) == {"a", "b"} and all(0 <= s < 1 for s in seconds.values())


def test_shape_option_and_unregistered_datasets(tiny_bench_recipe):
    recipe = load_recipe(str(tiny_bench_recipe))
    info = bench.bench_info(recipe, "4,8,1,16,16")
    assert (info.frames_in, info.frames_out, info.channels, info.height, info.width) == (4, 8, 1, 16, 16)
    with pytest.raises(SvqbenchError, match="--shape T_in,T_out,C,H,W"):
        bench.bench_info(recipe)
    for bad in ("4,8,1,16", "4,8,1,16,x", "0,8,1,16,16"):
        with pytest.raises(SvqbenchError, match="--shape"):
            bench.bench_info(recipe, bad)


def test_report_with_svq_layer_and_compare(tiny_bench_recipe):
    recipe = load_recipe(str(tiny_bench_recipe))
    info = bench.bench_info(recipe, "4,8,1,16,16")
    report = bench.run_bench(recipe, info, CPU, repeats=1, svq_forms=True, compare=True, memory=False)
    profile = report["profile"]
    assert profile["parameters"] > 0 and profile["flops"] > 0
    assert profile["inference_frames_per_s"] > 0 and profile["train_samples_per_s"] > 0
    assert report["batch_size"] == 2 and report["shape"] == [4, 8, 1, 16, 16]
    assert report["svq_layer"]["latent_shape"] == [2 * 4, 8, 8, 8]
    assert set(report["svq_layer"]["forms"]) == {"fast", "explicit"}
    variants = report["compare"]["variants"]
    assert report["compare"]["baseline"] == "simvp fp32"
    assert variants["simvp fp32"]["time_vs_baseline"] == 1.0
    assert variants["simvp+svq explicit fp32 (released)"]["svq_form"] == "explicit"
    levers = variants["simvp+svq fast bf16 channels-last reuse-memory"]
    assert levers["precision"] == "bf16" and levers["channels_last"] and levers["reuse_memory"]
    assert all(row["step_s"] > 0 for row in variants.values())
    assert "codebook_size" not in variants["simvp fp32"]["model_args"]


def test_peak_memory_grows_with_the_explicit_weights(tiny_bench_recipe):
    """The explicit form holds (B, P, N) weights: with 16384 codes it needs far more memory than the fast one."""
    recipe = load_recipe(str(tiny_bench_recipe), ["model.codebook_size=16384"])
    info = bench.bench_info(recipe, "4,4,1,32,32")
    result = bench.compare_svq_forms(recipe, info, CPU, batch_size=2, repeats=1)
    explicit = result["forms"]["explicit"]
    weights_mb = 2 * 4 * 16 * 16 * 16384 * 4 / 2**20  # one (B*T, P, N) float32 tensor: 128 MiB
    assert explicit["extra_mb"] > weights_mb
    assert result["memory_ratio"] > 2 and explicit["peak_mb"] > explicit["extra_mb"]


def test_compare_needs_an_svq_recipe():
    with pytest.raises(SvqbenchError, match="--compare needs a simvp_svq recipe"):
        bench.training_variants(load_recipe("digits/simvp_quick"))


def test_bench_command_prints_tables_and_writes_json(tmp_path, tiny_bench_recipe):
    out = tmp_path / "bench.json"
    result = runner.invoke(
        app,
        [
            "bench",
            str(tiny_bench_recipe),
            "--shape",
            "4,4,1,16,16",
            "--repeats",
            "1",
            "--svq-layer",
            "--no-memory",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "GFLOPs" in result.output and "SVQ form" in result.output
    report = json.loads(out.read_text())
    assert report["recipe"].endswith("/tiny") and report["svq_layer"]["speedup"] > 0


def test_roofline_prints_percentages_of_the_peak_measured_alongside(tmp_path, tiny_bench_recipe):
    out = tmp_path / "bench.json"
    result = runner.invoke(
        app,
        [
            "bench",
            str(tiny_bench_recipe),
            "--shape",
            "4,4,1,16,16",
            "--repeats",
            "1",
            "--roofline",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "roofline in fp32" in result.output and "% of peak" in result.output
    roof = json.loads(out.read_text())["roofline"]
    assert roof["peak"] == max(roof["matmul"], roof["conv"]) > 0
    profile = json.loads(out.read_text())["profile"]
    assert roof["inference_flops_per_s"] == pytest.approx(profile["flops"] * 2 / profile["inference_s"])
    assert roof["train_percent"] == pytest.approx(100 * roof["train_flops_per_s"] / roof["peak"])
    assert 0 < roof["train_percent"] < 100 and 0 < roof["inference_percent"] < 100


def test_training_step_flops_count_forward_and_backward(tiny_bench_recipe):
    recipe = load_recipe(str(tiny_bench_recipe))
    info = bench.bench_info(recipe, "4,4,1,16,16")
    variant = bench.Variant("recipe", recipe.model_name, recipe.model_args)
    model = bench.build_variant(variant, info, CPU)
    train_flops = bench.counted_flops(bench.training_step_runner(model, variant, "l1", info, 2, CPU))
    # backward costs about twice the forward pass (gradients of inputs and of weights): at least 2.5x its batch's
    # prediction (the first layer's input gradient is not needed)
    assert train_flops > 2.5 * 2 * bench.count_flops(model, info, CPU)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--shape", "4,4,1,16"], "--shape"),
        (["--shape", "4,4,1,17,16"], "model.N_S=2"),
        (["--shape", "4,4,1,16,16", "--repeats", "0"], "--repeats 0"),
        (["--shape", "4,4,1,16,16", "--set", "model.translator=lstm"], "unknown translator 'lstm'"),
        ([], "unknown dataset 'not_registered'"),
    ],
)
def test_bench_bad_input_is_one_line(tiny_bench_recipe, args, needle):
    result = runner.invoke(app, ["bench", str(tiny_bench_recipe), "--device", "cpu", *args])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in result.output, result.output


def _trained_run(tmp_path, digits_root, model_line):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"dataset: digits\nmodel: {model_line}\n"
        "train: {epochs: 1, max_steps: 1, batch_size: 4, num_workers: 0}\n"
        "eval: {metrics: [mae], batch_size: 2}\n"
    )
    run_dir = tmp_path / "run"
    result = runner.invoke(
        app, ["train", str(recipe), "--root", str(digits_root), "--run-dir", str(run_dir), "--device", "cpu", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    return run_dir


def test_eval_svq_stats_matches_the_statistics_of_the_latents(tmp_path, digits_root):
    run_dir = _trained_run(
        tmp_path,
        digits_root,
        "{name: simvp_svq, hid_S: 8, hid_T: 16, N_S: 2, N_T: 2, translator: incepu, codebook_size: 32}",
    )
    result = runner.invoke(app, ["eval", str(run_dir), "--svq-stats", "--root", str(digits_root), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    stats = json.loads((run_dir / "metrics.json").read_text())["svq_stats"]

    # The same statistics computed directly from the latents each rollout pass feeds the SVQ layer.
    run = LoadedRun(run_dir, CPU)
    latents = []
    handle = run.model.quantizer.register_forward_pre_hook(lambda module, args: latents.append(args[0].clone()))
    with torch.no_grad():
        for inputs, _ in torch.utils.data.DataLoader(data.create("digits", "test", digits_root), batch_size=2):
            forecast(run.model, inputs, run.info.frames_out)
    handle.remove()
    expected = svq_statistics(run.model.quantizer, latents)
    assert stats.keys() == expected.keys()
    for key in expected:
        assert stats[key] == pytest.approx(expected[key], rel=1e-6), key


def test_eval_svq_stats_on_a_model_without_svq(tmp_path, digits_root):
    run_dir = _trained_run(
        tmp_path, digits_root, "{name: simvp, hid_S: 8, hid_T: 16, N_S: 2, N_T: 2, translator: incepu}"
    )
    result = runner.invoke(app, ["eval", str(run_dir), "--svq-stats", "--root", str(digits_root), "--device", "cpu"])
    assert result.exit_code == 1
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "--svq-stats" in lines[0] and "has no SVQ layer" in lines[0], result.output


@pytest.mark.parametrize("model_name", ["predrnn", "predrnn_v2"])
def test_bench_times_the_training_step_of_a_recurrent_model(model_name):
    """bench's training step is training's own (engine.step.optimiser_step): a recurrent model sees the targets
    (scheduled sampling), and each timed call is the next step, from the same weights to the same weights."""
    from svqbench.engine.losses import LOSSES
    from svqbench.engine.step import StepSettings, optimiser_step

    info = DatasetInfo("tiny", frames_in=4, frames_out=4, channels=1, height=16, width=16)
    args = {"num_hidden": [8, 8], "patch_size": 4}
    calls = []

    def build():
        torch.manual_seed(3)
        model = create_model(model_name, info, **args)
        original = model.forward

        def spy(inputs, targets=None, step=0):
            calls.append((targets is not None, step))
            return original(inputs, targets=targets, step=step)

        model.forward = spy
        return model

    benched = build()
    runner = bench.training_step_runner(benched, bench.Variant("recipe", model_name, args), "mse", info, 2, CPU)
    runner()
    runner()
    assert calls == [(True, 0), (True, 1)]
    trained = build()
    inputs, targets = bench.synthetic_batch(info, 2, CPU)
    optimizer = torch.optim.Adam([p for p in trained.parameters() if p.requires_grad], lr=1e-4)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    for step in range(2):
        optimiser_step(trained, trained, optimizer, scaler, LOSSES["mse"], inputs, targets, StepSettings(0), step)
    for a, b in zip(benched.state_dict().values(), trained.state_dict().values()):
        assert torch.equal(a, b)
