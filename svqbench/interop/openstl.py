"""``import-openstl``: an OpenSTL checkpoint as a svqbench run folder.

Reads a v0.3 ``.pth`` (the model's state dict, or ``{"state_dict": ...}``) or a Lightning ``.ckpt`` (its
``state_dict`` with the method's ``model.`` prefixes) with ``torch.load(weights_only=True)``, renames every key
by :mod:`svqbench.interop.openstl_keys`, and refuses in one line that names the missing, unexpected or misshapen
keys. The run folder holds the recipe (with ``--set`` overrides), a ``last.pt`` checkpoint of the weights and a
``run.json`` that records ``imported`` (the source file, its sha256, ``format: openstl``); evaluation rows say
``imported_weights`` so imported numbers are never mistaken for ones svqbench trained.

OpenSTL's test-time computation is what svqbench's models compute in evaluation mode (the fixtures in
``tests/data/openstl/`` check it to 1e-5). ConvLSTM imports with ``cell: openstl`` (OpenSTL's cell, svqbench's
default); a recipe that sets ``cell: standard`` is refused, as the weights would then compute another function.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import torch

from svqbench.config import Recipe, load_recipe
from svqbench.data import info as dataset_info
from svqbench.data.checks import file_digest
from svqbench.engine.runs import (
    RunDir,
    holding_run,
    holds_run,
    refuse_links,
    remove_run,
    run_meta,
    save_checkpoint,
    save_recipe,
)
from svqbench.errors import SvqbenchError
from svqbench.fileio import write_json
from svqbench.interop.openstl_keys import KeyMap, key_map, supported
from svqbench.models import count_parameters, create_model, model_factory

LIGHTNING_PREFIX = "model."  # OpenSTL's Lightning methods hold the network as self.model
SHOWN = 4  # keys named per kind in a refusal


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """OpenSTL's state dict from ``path``: a bare state dict, ``{"state_dict": ...}`` (v0.3 and Lightning), with
    a Lightning method's ``model.`` prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise SvqbenchError(f"{path}: no such checkpoint file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, not a torch file, or objects weights_only refuses
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise SvqbenchError(
            f"{path}: not a readable OpenSTL checkpoint ({type(error).__name__}: {reason}); expected a .pth state "
            "dict or a Lightning .ckpt, loadable with torch.load(weights_only=True)"
        ) from None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise SvqbenchError(
            f"{path}: holds no state dict (a mapping of names to tensors, or one under 'state_dict'); "
            "expected OpenSTL's model.state_dict() or a Lightning .ckpt"
        )
    if all(key.startswith(LIGHTNING_PREFIX) for key in state):
        state = {key[len(LIGHTNING_PREFIX) :]: value for key, value in state.items()}
    return state


def _named(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return shown + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


def _fits(source: torch.Tensor, target: torch.Tensor) -> bool:
    """Equal shapes, or equal up to singleton axes (a (C,) layer scale for a (C, 1, 1) one)."""
    if source.shape == target.shape:
        return True
    squeeze = lambda shape: [n for n in shape if n != 1]  # noqa: E731
    return source.numel() == target.numel() and squeeze(source.shape) == squeeze(target.shape)


def map_state_dict(
    state: dict[str, torch.Tensor], rules: KeyMap, target: dict[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """OpenSTL's ``state`` renamed to svqbench's keys and shaped as ``target`` (the model's own state dict);
    one line naming the missing, unexpected and misshapen keys when it does not fit exactly."""
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        renamed = rules.rename(key)
        if renamed is not None:
            mapped[renamed], origin[renamed] = value, key
    missing = [key for key in target if key not in mapped]
    unexpected = [origin[key] for key in mapped if key not in target]
    misshapen = [
        f"{origin[key]} {tuple(mapped[key].shape)} (expected {tuple(target[key].shape)})"
        for key in mapped
        if key in target and not _fits(mapped[key], target[key])
    ]
    if missing or unexpected or misshapen:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) for {_named(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s) {_named(unexpected)}")
        if misshapen:
            parts.append(f"misshapen {_named(misshapen)}")
        raise SvqbenchError(
            f"{source}: does not fit the recipe's model ({'; '.join(parts)}); is it a checkpoint of this model, "
            "trained at these widths? (--set model.KEY=VALUE sets them)"
        )
    return {key: mapped[key].reshape(target[key].shape).to(target[key].dtype) for key in target}


def recipe_rules(recipe: Recipe) -> KeyMap:
    """The key map of the recipe's model; one line when OpenSTL has no such model or setting."""
    name, args = recipe.model_name, recipe.model_args
    translator = args.get("translator", _default(name, "translator")) if name == "simvp" else None
    rules = key_map(name, translator)
    if rules is None:
        what = f"simvp with translator {translator!r}" if name == "simvp" else f"model {name!r}"
        raise SvqbenchError(
            f"recipe {recipe.name}: {what} has no OpenSTL counterpart to import; valid: {', '.join(supported())}"
        )
    if name == "convlstm" and args.get("cell", "openstl") != "openstl":
        raise SvqbenchError(
            f"recipe {recipe.name}: model.cell={args['cell']!r}; OpenSTL's weights compute its own cell: "
            "import with model.cell=openstl"
        )
    return rules


def _default(model: str, option: str) -> Any:
    parameter = inspect.signature(model_factory(model)).parameters.get(option)
    return None if parameter is None else parameter.default


def import_checkpoint(
    checkpoint: Path,
    recipe_name: str,
    run_dir: Path,
    overrides: list[str] = (),
    data_root: Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write ``run_dir`` from OpenSTL's ``checkpoint`` for ``recipe_name`` (+ ``overrides``).

    Returns ``{"run_dir", "model", "parameters", "sha256", "keys"}``. Nothing is written unless every key fits.
    """
    checkpoint, run_dir = Path(checkpoint), Path(run_dir)
    recipe = load_recipe(recipe_name, list(overrides))
    rules = recipe_rules(recipe)
    info = dataset_info(recipe.dataset, data_root)
    model = create_model(recipe.model_name, info, **recipe.model_args)
    state = read_checkpoint(checkpoint)
    weights = map_state_dict(state, rules, model.state_dict(), str(checkpoint))
    model.load_state_dict(weights)
    if not all(math.isfinite(float(v.float().abs().sum())) for v in weights.values() if v.is_floating_point()):
        raise SvqbenchError(f"{checkpoint}: holds NaN or infinite weights; not a usable checkpoint")
    refuse_links(run_dir)
    if holds_run(run_dir) and not force:
        raise SvqbenchError(f"--run-dir {run_dir} already holds a run; give another folder, or --force to replace it")
    digest = file_digest(checkpoint)
    with holding_run(run_dir):
        if force:
            remove_run(run_dir)
        meta = run_meta(recipe, world_size=1, val_held_out=False)
        meta["imported"] = {"format": "openstl", "source": str(checkpoint.resolve()), "sha256": digest}
        save_recipe(run_dir, recipe)
        save_checkpoint(
            RunDir(run_dir).last,
            model=weights,
            meta=meta,
            recipe=recipe.to_dict(),
            info=info.to_dict(),
            epoch=0,
            step=0,
            parameters=count_parameters(model),
        )
        write_json(RunDir(run_dir).run_json, meta)
    return {
        "run_dir": run_dir,
        "model": recipe.model_name,
        "parameters": count_parameters(model),
        "sha256": digest,
        "keys": len(weights),
    }


def check_forecast(run_dir: Path, device: torch.device) -> str:
    """Load the imported run as ``eval`` does and forecast one clip of zeros on ``device``: the shape it made."""
    from svqbench.engine.runs import LoadedRun
    from svqbench.models import forecast

    run = LoadedRun(Path(run_dir), device)
    clip = torch.zeros(1, *run.info.shape_in, device=device)
    with torch.no_grad():
        frames = forecast(run.model, clip, run.info.frames_out).frames
    if not torch.isfinite(frames).all():
        raise SvqbenchError(f"{run_dir}: the imported weights forecast NaN or infinite frames")
    return "x".join(str(n) for n in frames.shape[1:]) + " frames"
