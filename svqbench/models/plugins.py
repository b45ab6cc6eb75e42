"""Model plugins: the user's own model named in a recipe's ``model.name``, checked once, recorded in the run.

Three ways in, beside the built-in names::

    model: {name: path/to/mymodel.py:MyNet, hidden: 64}   # a file: relative to the recipe file, or absolute
    model: {name: mypkg.nets:MyNet}                        # an importable module
    model: {name: mynet}                                   # an installed package's entry point in group
                                                           # "svqbench.models" (mynet = "mypkg.nets:MyNet")

The factory (a class or a function) is called as ``Factory(shape, **other model keys)`` with a
:class:`~svqbench.models.shape.ClipShape`; the contract of its model is the one of every model (see
:mod:`svqbench.models`), except that ``forward`` may also return the frames alone, a tensor
``(B, T_pass, C, H, W)``. The first build of a plugin runs one forward pass on zeros to check the
output shape, so a wrong one is a one-line error naming ``model.name``, not a traceback in training.

A run records its plugin (:func:`plugin_record`, in ``run.json`` and the checkpoints' "meta"): the import
path and the sha256 of its source file; a plugin file is also copied to ``RUN/plugins/``, and
:func:`activate_run_plugin` imports that copy, so a run folder evaluates alone, from any folder.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from svqbench.errors import SvqbenchError

PLUGIN_DIR = "plugins"  # inside a run folder: the copies of plugin files
_factories: dict[str, Callable[..., nn.Module]] = {}  # import path -> factory (a run's copy replaces the original)
_checked: set[tuple[str, str]] = set()  # (import path, build arguments) whose output shape was checked
_warned: set[str] = set()  # changed-file warnings already printed by this process


def is_import_path(name: str) -> bool:
    """``module:Factory`` or ``file.py:Factory`` (built-in and entry-point names hold no colon)."""
    return ":" in name


def is_file_path(name: str) -> bool:
    return is_import_path(name) and name.rpartition(":")[0].endswith(".py")


def absolute_name(name: str, base: Path) -> str:
    """``name`` with a relative plugin file resolved against ``base`` (the recipe's folder); others unchanged."""
    if not isinstance(name, str) or not is_file_path(name):
        return name
    path, _, attr = name.rpartition(":")
    file = Path(path).expanduser()
    return f"{(file if file.is_absolute() else Path(base).absolute() / file).resolve()}:{attr}"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_factory(name: str) -> Callable[..., nn.Module]:
    """The factory named by import path ``name`` (``module:Factory`` or ``file.py:Factory``)."""
    if name in _factories:
        return _factories[name]
    where, _, attr = name.rpartition(":")
    if not where or not attr.isidentifier():
        raise SvqbenchError(f"model.name={name!r}: expected package.module:Factory or path/to/file.py:Factory")
    module = _import_file(Path(where), name) if is_file_path(name) else _import_module(where, name)
    factory = getattr(module, attr, None)
    if not callable(factory):
        found = sorted(k for k, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module))
        problem = "is not callable" if hasattr(module, attr) else "does not exist"
        raise SvqbenchError(
            f"model.name={name!r}: {attr!r} in {where} {problem}; expected a model class or function "
            f"taking the clip shape (nn.Module classes there: {', '.join(found) or 'none'})"
        )
    _factories[name] = factory
    return factory


def _first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}".rstrip(": ")


def _import_module(module_name: str, name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise SvqbenchError(
                f"model.name={name!r}: no module named {e.name!r}; expected an installed or "
                "importable module (on PYTHONPATH), a path/to/file.py, or a built-in model"
            ) from None
        raise SvqbenchError(f"model.name={name!r}: importing {module_name} failed ({_first_line(e)})") from None
    except (Exception, SystemExit) as e:  # the plugin's own error or sys.exit at import time, whatever its type
        raise SvqbenchError(f"model.name={name!r}: importing {module_name} failed ({_first_line(e)})") from None


def _import_file(path: Path, name: str) -> Any:
    """Import a plugin file as a module of its own (named after its content, so two versions can coexist)."""
    if not path.is_file():
        raise SvqbenchError(f"model.name={name!r}: no file {path}; a relative path is read from the recipe's folder")
    stem = re.sub(r"\W", "_", path.stem)
    module_name = f"svqbench_plugin_{stem}_{file_sha256(path)[:12]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # the plugin's own error or sys.exit at import time, whatever its type
        del sys.modules[module_name]
        raise SvqbenchError(f"model.name={name!r}: importing {path} failed ({_first_line(e)})") from None
    return module


def build(name: str, factory: Callable[..., nn.Module], shape: Any, args: dict[str, Any]) -> nn.Module:
    """``factory(shape, **args)``; the first build of each (plugin, arguments) also checks its output shape."""
    call = f"{getattr(factory, '__name__', name)}({shape}{''.join(f', {k}={v!r}' for k, v in args.items())})"
    try:
        model = factory(shape, **args)
    except SvqbenchError:
        raise
    except Exception as e:  # the plugin's own error, whatever its type
        raise SvqbenchError(f"model.name={name!r}: {call} raised {_first_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise SvqbenchError(f"model.name={name!r}: {call} returned {type(model).__name__}, expected a torch.nn.Module")
    key = (name, repr((shape, sorted(args.items()))))
    if key not in _checked and check_output(name, model, shape):
        _checked.add(key)
    return model


def check_output(name: str, model: nn.Module, shape: Any) -> bool:
    """One forward pass on zeros ``(1, T_in, C, H, W)`` must give one pass of frames ``(1, T, C, H, W)``, T >= 1.

    Runs without gradients, in eval mode and with the random state restored, so training is unchanged.
    Returns False when the pass could not run on the meta device (checked again on a real build).
    """
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.get_default_device()
    inputs = torch.zeros(1, *shape.shape_in, device=device)
    expected = f"(1, T, {shape.channels}, {shape.height}, {shape.width}) with T >= 1"
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            out = model(inputs)
    except Exception as e:  # the plugin's own error, whatever its type
        if device.type == "meta" or "meta" in str(e).lower():
            return False  # a limit of meta tensors (an op needing values), not of the plugin
        raise SvqbenchError(
            f"model.name={name!r}: a forward pass on zeros of shape {tuple(inputs.shape)} "
            f"(B, T_in, C, H, W) raised {_first_line(e)}"
        ) from None
    finally:
        model.train(training)
    frames = out if isinstance(out, torch.Tensor) else out[0] if isinstance(out, tuple) and out else None
    if not isinstance(frames, torch.Tensor):
        raise SvqbenchError(
            f"model.name={name!r}: forward returned {type(out).__name__}; expected frames {expected} "
            "(a tensor, or Forecast(frames, aux_loss))"
        )
    got = tuple(frames.shape)
    if len(got) != 5 or got[0] != 1 or got[1] < 1 or got[2:] != tuple(inputs.shape[2:]):
        raise SvqbenchError(
            f"model.name={name!r}: forward on input {tuple(inputs.shape)} returned frames of shape "
            f"{got}; expected {expected} (B, T, C, H, W)"
        )
    return True


def plugin_record(name: str) -> dict[str, Any] | None:
    """What a run records of the plugin behind ``name`` (None for a built-in model): kind, import path,
    source file and its sha256, and for a file the name of its copy in the run folder."""
    from svqbench.models.base import MODELS

    if is_file_path(name):
        file = Path(name.rpartition(":")[0])
        return {
            "kind": "file",
            "name": name,
            "import": name,
            "file": str(file),
            "sha256": file_sha256(file),
            "copy": f"{PLUGIN_DIR}/{file.name}",
        }
    if is_import_path(name):
        load_factory(name)
        return {"kind": "module", "name": name, "import": name, **_module_source(name.rpartition(":")[0])}
    if MODELS.built_in(name) or name not in MODELS.plugin_names():
        return None
    entry = MODELS.plugin(name)
    dist = f"{entry.dist.name} {entry.dist.version}" if entry.dist else ""
    return {
        "kind": "entry_point",
        "name": name,
        "import": entry.value,
        "distribution": dist,
        **_module_source(entry.module),
    }


def _module_source(module_name: str) -> dict[str, Any]:
    file = getattr(sys.modules.get(module_name) or importlib.import_module(module_name), "__file__", None)
    return {"file": file, "sha256": file_sha256(Path(file)) if file and Path(file).is_file() else None}


def label(record: dict[str, Any] | None, name: str) -> str:
    """How tables name the model: the built-in name, or the plugin with the first 12 hex of its sha256."""
    if not record:
        return name
    short = (
        name
        if record["kind"] == "entry_point"
        else (f"{Path(record['file']).name}:{name.rpartition(':')[2]}" if record["kind"] == "file" else name)
    )
    return f"{short}@{record['sha256'][:12]}" if record.get("sha256") else short


def copy_into_run(run_dir: Path, record: dict[str, Any] | None) -> None:
    """Copy a plugin file into ``RUN/plugins/`` (a new run; a resumed one keeps the copy it trained with)."""
    if record and record["kind"] == "file":
        target = Path(run_dir) / record["copy"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record["file"], target)


def activate_run_plugin(run_dir: Path, meta: dict[str, Any]) -> None:
    """Make the run's plugin what its ``model.name`` loads: the run's copy of a plugin file (else the
    original), warning when a source file changed since training; a missing file is a one-line error."""
    record = (meta or {}).get("model_plugin")
    if not record:
        return
    if record["kind"] != "file":
        file = record.get("file")
        if file and record.get("sha256") and Path(file).is_file():
            _warn_if_changed(Path(file), record, f"model plugin {record['name']!r} ({file})")
        return
    copy, original = Path(run_dir) / record["copy"], Path(record["file"])
    if original.is_file() and copy.is_file():
        _warn_if_changed(
            original,
            record,
            f"model plugin file {original}",
            f"; {run_dir} uses its copy {record['copy']}" if copy.is_file() else "",
        )
    if not copy.is_file() and not original.is_file():
        raise SvqbenchError(
            f"{run_dir}: the model plugin file is missing: neither the run's copy {copy} nor {original} "
            f"exists; restore one (sha256 {record['sha256']})"
        )
    used = copy if copy.is_file() else original
    now = file_sha256(used)
    if now != record["sha256"]:  # the file that builds the model is not the one the weights were trained with
        raise SvqbenchError(
            f"{used}: changed since the run trained (sha256 {now}, the run recorded {record['sha256']}); the run's "
            f"model is that file as it was: restore it, or train a new run with the changed plugin"
        )
    attr = record["name"].rpartition(":")[2]
    _factories.pop(record["name"], None)
    _factories[record["name"]] = load_factory(f"{used}:{attr}")


def _warn_if_changed(path: Path, record: dict[str, Any], what: str, note: str = "") -> None:
    now = file_sha256(path)
    message = f"warning: {what} changed since training (sha256 {record['sha256']} then, {now} now){note}"
    if now != record["sha256"] and message not in _warned:
        _warned.add(message)
        print(message, file=sys.stderr)
