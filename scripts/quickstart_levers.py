"""The quickstart's speed levers, timed on this machine: training samples/s of its SVQ model (the real optimiser
step on a fixed batch) in fp32 and bf16, channels-last or not, at 1 thread and at all of them, and under
torch.compile with its compile cost and the steps it needs to repay that cost within the quickstart's budget.
Ratios are against fp32 at all threads, measured in the same run (interleaved rounds, minimum of each).

    PYTHONPATH=. python scripts/quickstart_levers.py [--recipe digits_small/simvp_svq] [--minutes 3] [--repeats 10]

Holding torch and oneDNN to AVX2 kernels (`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`) shows an AVX2-only CPU.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from svqbench import data
from svqbench.bench.measure import Variant, build_variant, interleaved_min_seconds, training_step_runner
from svqbench.config import load_recipe
from svqbench.engine.machine import resolve_device


def runner(recipe, info, device, batch: int, threads: int | None = None, compiled: bool = False, **levers):
    """A training-step closure for one lever setting (the thread count is set around each call)."""
    variant = Variant("x", recipe.model_name, recipe.model_args, **levers)
    model = build_variant(variant, info, device)
    module = torch.compile(model) if compiled else model
    step = training_step_runner(module, variant, recipe.train.loss, info, batch, device)
    if threads is None:
        return step
    everything = torch.get_num_threads()

    def with_threads() -> None:
        torch.set_num_threads(threads)
        try:
            step()
        finally:
            torch.set_num_threads(everything)

    return with_threads


def first_call_seconds(step: Callable[[], None]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="digits_small/simvp_svq")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--minutes", type=float, default=3.0, help="the quickstart budget compile must repay in")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (it needs a C++ compiler)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    recipe = load_recipe(args.recipe)
    info = data.known_shape(recipe.dataset) or data.info(recipe.dataset)
    batch = recipe.train.batch_size
    candidates = {
        "fp32": runner(recipe, info, device, batch),
        "fp32 channels-last": runner(recipe, info, device, batch, channels_last=True),
        "bf16": runner(recipe, info, device, batch, precision="bf16"),
        "bf16 channels-last": runner(recipe, info, device, batch, precision="bf16", channels_last=True),
        "fp32 1 thread": runner(recipe, info, device, batch, threads=1),
    }
    compile_seconds = None
    if not args.no_compile:
        compiled = runner(recipe, info, device, batch, compiled=True)
        compile_seconds = first_call_seconds(compiled)  # tracing and code generation happen on the first call
        candidates["fp32 torch.compile"] = compiled
    seconds = interleaved_min_seconds(candidates, device, args.repeats)
    base = seconds["fp32"]
    print(f"{recipe.name}, batch {batch}, {torch.get_num_threads()} threads, {device}")
    print("| setting | samples/s | speed vs fp32 |")
    print("|---|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {batch / value:.1f} | {base / value:.2f}x |")
    if compile_seconds is not None:
        saved = base - seconds["fp32 torch.compile"]
        budget = args.minutes * 60
        if saved > 0:
            repay = compile_seconds / saved
            verdict = "repaid" if repay * base < budget else "not repaid"
            print(
                f"torch.compile: first call {compile_seconds:.1f} s, {saved * 1000:.1f} ms saved per step: "
                f"repaid after {repay:.0f} steps ({repay * base:.0f} s of fp32 training), "
                f"{verdict} within {args.minutes:g} min"
            )
        else:
            print(f"torch.compile: first call {compile_seconds:.1f} s and no step saved: never repaid")


if __name__ == "__main__":
    main()
