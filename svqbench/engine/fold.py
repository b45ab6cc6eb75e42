"""``svqbench fold``: a trained simvp_svq run -> the simvp_mlp run that computes the same function.

SVQ's linear-output forms compute q = M^T (W2 f + b2) = A f + c (svqbench.models.bottleneck), so the
codebook can be multiplied out after training. The folded run directory is a normal run (recipe.yaml,
best.pt / last.pt, run.json and log.jsonl when the source has them): ``eval``, ``render``, ``predict``
and ``bench`` read it like any other. Each checkpoint is the source's with only what the fold changes
replaced: the weights, the recipe, the parameter count, a new run id in its "meta", and the optimizer
state (the codebook's Adam moments have no counterpart in the MLP: the moments restart at zero, the
hyperparameters stay, so ``train --resume`` continues the MLP from the folded weights).
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from svqbench.config import Recipe, read_yaml_file, validate_recipe
from svqbench.data.base import DatasetInfo
from svqbench.engine.runs import LoadedRun, RunDir, new_run_id, read_run_json, save_checkpoint, save_recipe
from svqbench.errors import SvqbenchError
from svqbench.fileio import atomic_dir, write_json
from svqbench.models import MODELS, count_parameters, create_model
from svqbench.models.bottleneck import fold_svq
from svqbench.models.simvp import CODEBOOK_ONLY_OPTIONS

CHECKPOINTS = RunDir.CHECKPOINTS
COPIED_FILES = (RunDir.LOG,)  # the training history of the weights; metrics and renders are redone by eval


def fold_recipe(recipe: Recipe, source: str = "recipe") -> Recipe:
    """The simvp_mlp recipe equal to a simvp_svq recipe: codebook options dropped, ``svq_hidden`` set to
    SVQ's actual width min(svq_hidden, codebook_size), the name marked "(folded)"."""
    if recipe.model_name != "simvp_svq":
        raise SvqbenchError(
            f"{source}: model {recipe.model_name!r} cannot be folded; fold turns a simvp_svq run into simvp_mlp"
        )
    args = _with_defaults("simvp_svq", recipe.model_args)
    if args["out_relu"]:
        raise SvqbenchError(
            f"{source}: SVQ with out_relu cannot be folded: the ReLU after the code weights does not commute "
            "with the sum over the codebook, so no C -> K -> C MLP computes it"
        )
    model = {"name": "simvp_mlp", **{k: v for k, v in recipe.model_args.items() if k not in CODEBOOK_ONLY_OPTIONS}}
    if args["nonlinear"]:
        model["svq_hidden"] = min(args["svq_hidden"], args["codebook_size"])
    raw = recipe.to_dict()
    raw.update(model=model, name=f"{recipe.name or recipe.dataset + '/simvp_svq'} (folded)")
    return validate_recipe(raw, source)


def _with_defaults(model_name: str, args: dict[str, Any]) -> dict[str, Any]:
    """A model's arguments with its factory's defaults filled in (defaults live only in the factory)."""
    params = inspect.signature(MODELS.get(model_name)).parameters
    return {name: args.get(name, p.default) for name, p in params.items() if name != "shape"}


def fold_model(source: nn.Module, recipe: Recipe, info: DatasetInfo) -> nn.Module:
    """The simvp_mlp of ``recipe`` (already folded) with the SimVP+SVQ ``source``'s backbone weights and
    its SVQ folded into the MLP; the strict load checks that the two layouts line up."""
    folded = create_model(recipe.model_name, info, **recipe.model_args).to(next(source.parameters()).device)
    mlp = fold_svq(source.quantizer)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("quantizer.")}
    state.update({f"quantizer.{k}": v for k, v in mlp.state_dict().items()})
    folded.load_state_dict(state)
    return folded


def _fresh_optimizer_state(optimizer: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """The source's optimizer hyperparameters over the folded model's trainable parameters, no moments."""
    if not optimizer:
        return optimizer
    groups = optimizer["param_groups"]
    if len(groups) != 1:
        raise SvqbenchError(f"cannot fold an optimizer state with {len(groups)} parameter groups (expected 1)")
    trainable = sum(1 for p in model.parameters() if p.requires_grad)
    return {"state": {}, "param_groups": [{**groups[0], "params": list(range(trainable))}]}


def relative_difference(reference: torch.Tensor, other: torch.Tensor) -> float:
    """max |reference - other| / max |reference|: a difference on the scale of the predictions."""
    scale = reference.abs().max().clamp_min(torch.finfo(reference.dtype).tiny)
    return float((reference - other).abs().max() / scale)


@torch.no_grad()
def _check_equal(source: nn.Module, folded: nn.Module, info: DatasetInfo, device: torch.device) -> float:
    """Largest relative difference of one pass of both models on a fixed random clip (2, T_in, C, H, W)."""
    generator = torch.Generator().manual_seed(0)
    clip = torch.rand(2, info.frames_in, info.channels, info.height, info.width, generator=generator).to(device)
    source.eval()
    folded.eval()
    return relative_difference(source(clip).frames, folded(clip).frames)


FOLD_TOLERANCE = 1e-5  # relative: float32 rounding is about 1e-7; more means the fold is wrong


def _folded_meta(meta: dict[str, Any], run_id: str, source_dir: Path, recipe_name: str) -> dict[str, Any]:
    return {**meta, "run_id": run_id, "folded_from": meta.get("run_id") or str(source_dir), "recipe_name": recipe_name}


def fold_run(run_dir: Path, out_dir: Path, device: torch.device | str = "cpu", force: bool = False) -> dict[str, Any]:
    """Write the simvp_mlp run equal to the simvp_svq run ``run_dir`` into ``out_dir`` (atomically).

    Returns {"out", "checkpoints", "parameters": {"svq", "mlp"}, "max_relative_difference"}: the last
    is measured on a random clip, per checkpoint, and is float32 rounding (about 1e-7).
    """
    run_dir, out_dir, device = Path(run_dir), Path(out_dir), torch.device(device)
    checkpoints = _checked_paths(run_dir, out_dir, force)
    run_id = new_run_id()
    folded_states: dict[str, dict[str, Any]] = {}
    parameters: dict[str, int] = {}
    difference = 0.0
    for path in checkpoints:
        state, parameters, measured = _fold_checkpoint(LoadedRun(run_dir, device, which=path.stem), run_id)
        difference = max(difference, measured)
        folded_states[path.name] = state
    recipe_file = RunDir(run_dir).recipe
    if recipe_file.is_file():
        saved = read_yaml_file(recipe_file, "recipe")
        recipe = fold_recipe(validate_recipe(saved, str(recipe_file)), str(run_dir))
    else:
        recipe = validate_recipe(next(iter(folded_states.values()))["recipe"])
    _write_folded(run_dir, out_dir, recipe, folded_states, run_id)
    return {
        "out": str(out_dir),
        "checkpoints": list(folded_states),
        "parameters": parameters,
        "max_relative_difference": difference,
    }


def _checked_paths(run_dir: Path, out_dir: Path, force: bool) -> list[Path]:
    """The run's checkpoints, after refusing a missing run and an ``--out`` that is the run or exists."""
    if not run_dir.is_dir():
        raise SvqbenchError(f"run directory {run_dir} does not exist")
    if out_dir.resolve() == run_dir.resolve():
        raise SvqbenchError(f"--out {out_dir} is the run itself; fold writes a new run directory")
    if out_dir.exists() and not force:
        raise SvqbenchError(f"--out {out_dir} already exists; pass --force to replace it")
    checkpoints = [run_dir / name for name in CHECKPOINTS if (run_dir / name).is_file()]
    if not checkpoints:
        raise SvqbenchError(f"{run_dir}: no checkpoint ({' or '.join(CHECKPOINTS)}); train it with `svqbench train`")
    return checkpoints


def _fold_checkpoint(run: LoadedRun, run_id: str) -> tuple[dict[str, Any], dict[str, int], float]:
    """The folded checkpoint of one loaded checkpoint, both models' parameter counts and their measured
    relative difference; refuses a difference above :data:`FOLD_TOLERANCE`."""
    source, info = run.model, run.info
    folded_recipe = fold_recipe(run.recipe, str(run.dir))
    folded = fold_model(source, folded_recipe, info)
    measured = _check_equal(source, folded, info, run.device)
    if not measured <= FOLD_TOLERANCE:  # NaN included
        raise SvqbenchError(
            f"{run.checkpoint_file}: the folded model differs from the original by {measured:.3g} "
            f"(relative), above {FOLD_TOLERANCE:g}; nothing was written"
        )
    parameters = {"svq": count_parameters(source), "mlp": count_parameters(folded)}
    state = {**run.state, "model": folded.state_dict(), "recipe": folded_recipe.to_dict()}
    if "parameters" in state:
        state["parameters"] = parameters["mlp"]
    if "optimizer" in state:
        state["optimizer"] = _fresh_optimizer_state(state["optimizer"], folded)
    if isinstance(state.get("meta"), dict):
        state["meta"] = _folded_meta(state["meta"], run_id, run.dir, folded_recipe.name)
    return state, parameters, measured


def _write_folded(run_dir: Path, out_dir: Path, recipe: Recipe, states: dict[str, dict[str, Any]], run_id: str) -> None:
    """The folded run folder, written atomically: recipe, checkpoints, run.json and the training log."""
    with atomic_dir(out_dir) as tmp:
        save_recipe(tmp, recipe)
        for name, state in states.items():
            save_checkpoint(tmp / name, **state)
        meta = read_run_json(run_dir)
        if meta is not None:
            write_json(RunDir(tmp).run_json, _folded_meta(meta, run_id, run_dir, recipe.name))
        for name in COPIED_FILES:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, tmp / name)
