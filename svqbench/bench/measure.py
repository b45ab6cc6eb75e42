"""Benchmarks of a recipe's model on one device, on synthetic inputs of the recipe's shapes.

- :func:`profile_model`: parameters, FLOPs of one full prediction (rollout included), inference
  frames/s and training samples/s;
- :func:`compare_svq_forms`: the SVQ layer's fast form against the explicit (B, P, N) form the
  released code computes: forward+backward seconds and peak memory;
- :func:`measure_roofline` (``--roofline``): achieved FLOP/s of a training step and of inference as a
  percentage of the device's peak, measured in the same run (see roofline.py);
- :func:`compare_training`: one training step of plain SimVP, SimVP+SVQ in the explicit form
  (the released code's computation), in the fast form, and with the speed levers (bf16 autocast,
  channels-last), with ratios against plain SimVP measured in the same run.

FLOPs are counted by ``torch.utils.flop_counter`` (matrix products and convolutions only): 2 FLOPs per
multiply-add, for one sample's full test-time prediction of T_out frames (every rollout pass). OpenSTL's
tables (and the SVQ paper's) give fvcore's count instead: multiply-adds, of one forward pass. So a
recurrent model's svqbench FLOPs are twice the table's (KTH: ConvLSTM 2737G vs 1368G, PredRNN 5599G vs
2800G; PredRNN-V2 5599G vs 2815G, the table also counting the adapter of its training loss), and a
SimVP's are four times (KTH SimVP+IncepU 249.5G vs 62.8G: x2 per multiply-add, x2 for the two 10-frame
passes of a 20-frame forecast; the table's 0.4G more are operations fvcore counts and torch's counter
does not, such as normalisation layers).

Every timing keeps the minimum of several repeats after a warm-up step (the machine may be shared).
The comparisons run each candidate in a fresh subprocess, so one candidate's memory (the explicit SVQ
form needs gigabytes at the KTH config) never weighs on another's time or high-water mark; its first
step gives the peak memory: resident memory (VmHWM) on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from svqbench import data
from svqbench.bench.roofline import counted_flops, device_peak, roofline
from svqbench.config import Recipe, validate_recipe
from svqbench.data.base import DatasetInfo
from svqbench.engine.allocator import keep_freed_memory
from svqbench.engine.losses import training_loss
from svqbench.engine.machine import autocast
from svqbench.engine.step import StepSettings, optimiser_step
from svqbench.errors import SvqbenchError
from svqbench.models import count_parameters, create_model, forecast, model_arguments
from svqbench.models.svq import SVQ

MB = 2**20


def bench_info(recipe: Recipe, shape: str | None = None) -> DatasetInfo:
    """The dataset facts: ``shape`` "T_in,T_out,C,H,W" when given, else the registered dataset's."""
    if shape is None:
        try:
            return data.info(recipe.dataset)
        except SvqbenchError as error:
            raise SvqbenchError(f"{error}; or give the shapes with --shape T_in,T_out,C,H,W") from None
    try:
        frames_in, frames_out, channels, height, width = (int(v) for v in shape.split(","))
    except ValueError:
        raise SvqbenchError(
            f"--shape {shape!r}: expected five integers T_in,T_out,C,H,W, e.g. 10,20,1,128,128"
        ) from None
    if min(frames_in, frames_out, channels, height, width) < 1:
        raise SvqbenchError(f"--shape {shape!r}: every size must be >= 1")
    return DatasetInfo(recipe.dataset, frames_in, frames_out, channels, height, width)


def synthetic_batch(info: DatasetInfo, batch_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Random (inputs (B, T_in, C, H, W), targets (B, T_out, C, H, W)) in [0, 1]."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(batch_size, *info.shape_in, generator=generator)
    targets = torch.rand(batch_size, info.frames_out, info.channels, info.height, info.width, generator=generator)
    return inputs.to(device), targets.to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_min_seconds(
    candidates: dict[str, Callable[[], object]], device: torch.device, repeats: int
) -> dict[str, float]:
    """Minimum wall time of each candidate over ``repeats`` rounds, after one warm-up call each.

    Every round runs every candidate once, so slow phases of a shared machine hit all of them.
    """
    for run in candidates.values():
        run()
    best = {name: float("inf") for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            synchronize(device)
            started = time.perf_counter()
            run()
            synchronize(device)
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def count_flops(model: nn.Module, info: DatasetInfo, device: torch.device) -> int:
    """FLOPs (2 per multiply-add; OpenSTL's tables count 1) of one full prediction of one sample, rollout
    passes included (see the module docstring)."""
    inputs, _ = synthetic_batch(info, 1, device)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        forecast(model, inputs, info.frames_out)
    model.train(was_training)
    return counter.get_total_flops()


@dataclass(frozen=True)
class Variant:
    """One way to run a recipe's model: which model, SVQ form, precision and memory format."""

    label: str
    model_name: str
    model_args: dict[str, Any]
    svq_form: str = "fast"  # fast | explicit
    precision: str = "fp32"
    channels_last: bool = False
    reuse_memory: bool = False  # svqbench.engine.allocator.keep_freed_memory


class ExplicitSVQ(nn.Module):
    """An SVQ computed as the released code does: explicit (B, P, N) code weights, then w @ M.

    Same parameters and the same result as the wrapped SVQ; memory grows with P*N.
    """

    def __init__(self, svq: SVQ):
        super().__init__()
        self.svq = svq

    def forward(self, z: Tensor) -> Tensor:
        """(B, C, H, W) -> quantized (B, C, H, W)."""
        batch, channels, height, width = z.shape
        quantized = torch.matmul(self.svq.code_weights(z), self.svq.codebook)  # (B, P, C)
        return quantized.transpose(1, 2).reshape(batch, channels, height, width)


def build_variant(variant: Variant, info: DatasetInfo, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(variant.model_name, info, **variant.model_args)
    if variant.svq_form == "explicit":
        model.quantizer = ExplicitSVQ(svq_layer(model, variant.model_name))
    model = model.to(device)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.train()


def svq_layer(model: nn.Module, model_name: str) -> SVQ:
    quantizer = getattr(model, "quantizer", None)
    if not isinstance(quantizer, SVQ):
        raise SvqbenchError(f"model {model_name!r} has no SVQ layer; use a simvp_svq recipe")
    return quantizer


def training_step_runner(
    model: nn.Module,
    variant: Variant,
    loss_name: str,
    info: DatasetInfo,
    batch_size: int,
    device: torch.device,
    seed: int = 0,
    diff_div_weight: float = 0.0,
) -> Callable[[], None]:
    """A closure running training's own optimiser step (:func:`~svqbench.engine.step.optimiser_step`: the
    training forward with scheduled sampling, keyed draws, auxiliary loss, grad scaler) with Adam on a fixed
    synthetic batch; each call is the next step, as in training."""
    inputs, targets = synthetic_batch(info, batch_size, device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=variant.precision == "fp16")
    settings = StepSettings(seed, variant.precision)
    steps = iter(range(1 << 62))
    loss = training_loss(loss_name, diff_div_weight)  # what training minimises, regularisers included

    def step() -> None:
        optimiser_step(model, model, optimizer, scaler, loss, inputs, targets, settings, next(steps))

    return step


def svq_layer_runner(svq: nn.Module, shape: tuple[int, ...], device: torch.device) -> Callable[[], None]:
    """A closure running the layer forward and backward on a fixed random latent (B, C, H, W)."""
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(shape, generator=generator).to(device).requires_grad_()
    upstream = torch.randn(shape, generator=generator).to(device)

    def step() -> None:
        svq.zero_grad(set_to_none=True)
        latent.grad = None
        svq(latent).backward(upstream)

    return step


def profile_model(
    recipe: Recipe, info: DatasetInfo, device: torch.device, batch_size: int, repeats: int
) -> dict[str, Any]:
    """Parameters, FLOPs, inference frames/s and training samples/s of the recipe's model as configured."""
    variant = Variant("recipe", recipe.model_name, recipe.model_args, precision=recipe.train.precision)
    model = build_variant(variant, info, device)
    inputs, _ = synthetic_batch(info, batch_size, device)

    def infer() -> None:
        model.eval()
        with torch.no_grad(), autocast(device, variant.precision):
            forecast(model, inputs, info.frames_out)
        model.train()

    runners = {"inference": infer}
    trainable = any(p.requires_grad for p in model.parameters())  # blank, persistence: nothing to train
    if trainable:
        runners["train"] = training_step_runner(
            model, variant, recipe.train.loss, info, batch_size, device, diff_div_weight=recipe.train.diff_div_weight
        )
    seconds = interleaved_min_seconds(runners, device, repeats)
    profile = {
        "parameters": count_parameters(model),
        "flops": count_flops(model, info, device),
        "inference_s": seconds["inference"],
        "inference_frames_per_s": batch_size * info.frames_out / seconds["inference"],
    }
    if trainable:
        profile.update(train_step_s=seconds["train"], train_samples_per_s=batch_size / seconds["train"])
    return profile


def latent_shape(model: nn.Module, info: DatasetInfo, batch_size: int) -> tuple[int, int, int, int]:
    """(B*T_in, hid_S, H/s, W/s): what a SimVP's SVQ layer sees in one pass."""
    stride = 2 ** (len(model.encoder.layers) // 2)
    hid = model.quantizer.codebook.shape[1]
    return (batch_size * info.frames_in, hid, info.height // stride, info.width // stride)


def compare_svq_forms(
    recipe: Recipe, info: DatasetInfo, device: torch.device, batch_size: int, repeats: int, memory: bool = True
) -> dict[str, Any]:
    """Forward+backward seconds (and peak memory) of the SVQ layer in its fast and explicit forms."""
    model = create_model(recipe.model_name, info, **recipe.model_args)
    svq = svq_layer(model, recipe.model_name)
    shape = latent_shape(model, info, batch_size)
    forms = {
        name: measure_in_subprocess(
            {
                "task": "svq_layer",
                "form": name,
                "recipe": recipe.to_dict(),
                "info": info.to_dict(),
                "batch_size": batch_size,
                "device": str(device),
                "repeats": repeats,
                "memory": memory,
            }
        )
        for name in ("fast", "explicit")
    }
    result: dict[str, Any] = {"latent_shape": list(shape), "codebook_size": svq.codebook_size, "forms": forms}
    if all("seconds" in row for row in forms.values()):
        result["speedup"] = forms["explicit"]["seconds"] / forms["fast"]["seconds"]
    if all("extra_mb" in row for row in forms.values()):
        result["memory_ratio"] = forms["explicit"]["extra_mb"] / max(forms["fast"]["extra_mb"], 1e-9)
    return result


def training_variants(recipe: Recipe) -> list[Variant]:
    """Plain SimVP (the baseline), SVQ explicit (the released computation), SVQ fast, and both with the levers."""
    if recipe.model_name != "simvp_svq":
        raise SvqbenchError(
            f"--compare needs a simvp_svq recipe; {recipe.name or 'this recipe'} uses {recipe.model_name!r}"
        )
    plain_args = {k: v for k, v in recipe.model_args.items() if k in model_arguments("simvp")}
    svq_args = recipe.model_args
    levers = {"precision": "bf16", "channels_last": True, "reuse_memory": True}
    return [
        Variant("simvp fp32", "simvp", plain_args),
        Variant("simvp+svq explicit fp32 (released)", "simvp_svq", svq_args, svq_form="explicit"),
        Variant("simvp+svq fast fp32", "simvp_svq", svq_args),
        Variant("simvp fp32 reuse-memory", "simvp", plain_args, reuse_memory=True),
        Variant("simvp+svq fast fp32 reuse-memory", "simvp_svq", svq_args, reuse_memory=True),
        Variant("simvp bf16 channels-last reuse-memory", "simvp", plain_args, **levers),
        Variant("simvp+svq fast bf16 channels-last reuse-memory", "simvp_svq", svq_args, **levers),
    ]


def compare_training(
    recipe: Recipe, info: DatasetInfo, device: torch.device, batch_size: int, repeats: int, memory: bool = True
) -> dict[str, Any]:
    """Training-step seconds (and peak memory) of every variant, with ratios to plain SimVP fp32."""
    variants = training_variants(recipe)
    measured = {
        variant.label: measure_in_subprocess(
            {
                "task": "train_step",
                "variant": asdict(variant),
                "loss": recipe.train.loss,
                "diff_div_weight": recipe.train.diff_div_weight,
                "info": info.to_dict(),
                "batch_size": batch_size,
                "device": str(device),
                "repeats": repeats,
                "memory": memory,
            }
        )
        for variant in variants
    }
    baseline = measured[variants[0].label].get("seconds")
    rows = {}
    for variant in variants:
        row = {**measured[variant.label], **asdict(variant)}
        if "seconds" in row:
            row["step_s"] = row.pop("seconds")
            row["samples_per_s"] = batch_size / row["step_s"]
            if baseline:
                row["time_vs_baseline"] = row["step_s"] / baseline
        rows[variant.label] = row
    return {"baseline": variants[0].label, "variants": rows}


def measure_in_subprocess(job: dict[str, Any]) -> dict[str, Any]:
    """Run one benchmark job in a fresh interpreter: {"seconds", "peak_mb", "extra_mb"}, or {"error"}.

    ``extra_mb`` is the peak of the first step minus what the process held just before it
    (interpreter, model, inputs), i.e. what the step itself needed. A failed job (e.g. killed for
    lack of memory) is reported, not raised, so that the other candidates still come out.
    """
    completed = subprocess.run(
        [sys.executable, "-m", "svqbench.bench.measure", json.dumps(job)], capture_output=True, text=True, check=False
    )
    if completed.returncode < 0:
        return {"error": f"killed by signal {-completed.returncode} (out of memory?)"}
    if completed.returncode != 0:
        return {"error": (completed.stderr.strip().splitlines() or ["failed without output"])[-1]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _process_memory_mb(field: str) -> float:
    """This process's resident memory from /proc: "VmRSS" (now) or "VmHWM" (peak since exec or reset).

    Not ru_maxrss: on Linux a child inherits its parent's ru_maxrss across fork and exec.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SvqbenchError(f"/proc/self/status has no {field}; CPU peak memory needs Linux (use --no-memory)")


def _reset_peak_memory(device: torch.device) -> float:
    """Start a fresh high-water mark; returns the memory held now (MiB)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / MB
    if not Path("/proc/self/status").is_file():
        raise SvqbenchError("CPU peak memory is read from /proc/self/status, which needs Linux (use --no-memory)")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    return _process_memory_mb("VmRSS")


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MB
    return _process_memory_mb("VmHWM")


def _run_job(job: dict[str, Any]) -> dict[str, float]:
    """The subprocess side of :func:`measure_in_subprocess`: first step for memory, then timed repeats."""
    device = torch.device(job["device"])
    info = DatasetInfo.from_dict(job["info"])
    if job["task"] == "svq_layer":
        recipe = validate_recipe(job["recipe"])
        model = create_model(recipe.model_name, info, **recipe.model_args)
        svq = svq_layer(model, recipe.model_name).to(device)
        layer = svq if job["form"] == "fast" else ExplicitSVQ(svq)
        step = svq_layer_runner(layer, latent_shape(model, info, job["batch_size"]), device)
    else:
        variant = Variant(**job["variant"])
        if variant.reuse_memory:
            keep_freed_memory()
        model = build_variant(variant, info, device)
        step = training_step_runner(
            model, variant, job["loss"], info, job["batch_size"], device, diff_div_weight=job["diff_div_weight"]
        )
    result: dict[str, float] = {}
    before = _reset_peak_memory(device) if job["memory"] else 0.0
    step()
    synchronize(device)
    if job["memory"]:
        peak = _peak_memory_mb(device)
        result.update(peak_mb=peak, extra_mb=peak - before)
    timings = []
    for _ in range(job["repeats"]):  # the step above was the warm-up
        synchronize(device)
        started = time.perf_counter()
        step()
        synchronize(device)
        timings.append(time.perf_counter() - started)
    result["seconds"] = min(timings)
    return result


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def measure_roofline(
    recipe: Recipe, info: DatasetInfo, device: torch.device, batch_size: int, repeats: int, profile: dict[str, Any]
) -> dict[str, Any]:
    """The device's peak in the training precision, and the profile's timings as FLOP/s and percentages of it."""
    precision = recipe.train.precision
    peak = device_peak(device, precision, repeats, interleaved_min_seconds)
    train_flops = None
    if "train_step_s" in profile:
        variant = Variant("recipe", recipe.model_name, recipe.model_args, precision=precision)
        model = build_variant(variant, info, device)
        train_flops = counted_flops(
            training_step_runner(
                model,
                variant,
                recipe.train.loss,
                info,
                batch_size,
                device,
                diff_div_weight=recipe.train.diff_div_weight,
            )
        )
    return roofline(
        peak, train_flops, profile.get("train_step_s"), profile["flops"] * batch_size, profile["inference_s"]
    )


def run_bench(
    recipe: Recipe,
    info: DatasetInfo,
    device: torch.device,
    batch_size: int | None = None,
    repeats: int = 3,
    svq_forms: bool = False,
    compare: bool = False,
    memory: bool = True,
    with_roofline: bool = False,
) -> dict[str, Any]:
    """Everything ``svqbench bench`` reports, as one JSON-ready dict."""
    if repeats < 1:
        raise SvqbenchError(f"--repeats {repeats}: valid: an integer >= 1")
    batch_size = batch_size or recipe.train.batch_size
    if batch_size < 1:
        raise SvqbenchError(f"--batch-size {batch_size}: valid: an integer >= 1")
    report: dict[str, Any] = {
        "recipe": recipe.name,
        "model": recipe.model_name,
        "device": str(device),
        "device_name": device_description(device),
        "torch": torch.__version__,
        "batch_size": batch_size,
        "shape": [info.frames_in, info.frames_out, info.channels, info.height, info.width],
        "repeats": repeats,
    }
    # The subprocess comparisons run first, while this process is still small: the explicit SVQ
    # form alone needs most of a 24 GB machine at the KTH config.
    if svq_forms:
        report["svq_layer"] = compare_svq_forms(recipe, info, device, batch_size, repeats, memory)
    if compare:
        report["compare"] = compare_training(recipe, info, device, batch_size, repeats, memory)
    report["profile"] = profile_model(recipe, info, device, batch_size, repeats)
    if with_roofline:
        report["roofline"] = measure_roofline(recipe, info, device, batch_size, repeats, report["profile"])
    return report


if __name__ == "__main__":  # the memory worker: one JSON job in argv, one JSON line out
    print(json.dumps(_run_job(json.loads(sys.argv[1]))))
