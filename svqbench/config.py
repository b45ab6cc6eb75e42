"""Recipes: YAML -> validated, frozen objects. Unknown keys and wrong types are one-line errors.

A recipe names a dataset, a model with its arguments, and the training and evaluation settings::

    dataset: digits
    model: {name: simvp_svq, hid_S: 32, translator: incepu, codebook_size: 1024}
    train: {epochs: 10, batch_size: 16, lr: 1.0e-3, schedule: onecycle, loss: l1}
    eval: {metrics: [mae, mse, ssim, psnr]}

``svqbench train RECIPE`` takes a path or a name: ``digits`` (the dataset's default recipe,
``recipes/digits/simvp_svq.yaml``) or ``digits/simvp``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from svqbench.errors import SvqbenchError

DEFAULT_RECIPE = "simvp_svq"
LOGGERS = ("tensorboard", "wandb", "mlflow")
# settings that only watch training: they change neither the weights nor a leaderboard group
WATCHING_KEYS = ("train.loggers", "train.log_every")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # inf/NaN: refused

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, values: Any) -> Any:
        """YAML's true/false are not 1/0: a bool where a number is expected is refused."""
        if isinstance(values, dict):
            for key, value in values.items():
                field = cls.model_fields.get(key)
                if isinstance(value, bool) and field is not None and field.annotation in (int, float):
                    raise PydanticCustomError(
                        "bool_number", "expected a number, got {value}", {"value": str(value).lower(), "key": key}
                    )
        return values


class TrainConfig(_Strict):
    epochs: int = Field(10, ge=1)
    max_steps: int = Field(0, ge=0, description="stop after this many optimiser steps (0: no limit)")
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up before a cosine schedule")
    loss: Literal["l1", "mse", "mse_l1"] = "mse"  # mse_l1: MSE + 0.5 L1
    # TAU's differential divergence regulariser, added to the training loss with this weight (OpenSTL's TAU: 0.1)
    diff_div_weight: float = Field(0.0, ge=0)
    seed: int = Field(42, ge=0, le=2**32 - 1, description="numpy and torch take seeds in 0..2**32-1")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="fp16 scales the loss (CUDA only)")
    clip_grad: float = Field(0.0, ge=0, description="max gradient norm (0: no clipping)")
    num_workers: int = Field(2, ge=0)
    train_samples: int = Field(0, ge=0, description="use only the first N training windows (0: all)")
    checkpoint_every: int = Field(
        500, ge=0, description="write last.pt every N steps, besides each epoch end (0: epoch ends only)"
    )
    val_every: int = Field(0, ge=0, description="validate every N steps (0: at each epoch end)")
    val_samples: int = Field(0, ge=0, description="validate on N evenly spaced val windows (0: all)")
    patience: int = Field(0, ge=0, description="stop after N validations without improvement (0: never)")
    select: Literal["best", "last"] = Field("best", description="the checkpoint eval uses")
    perturb_ratio: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of input values multiplied by U[-2, 2] "
        "in training (the released SVQ noise ablation; 0: off)",
    )
    loggers: tuple[Literal[LOGGERS], ...] = Field((), description="tensorboard, wandb, mlflow (besides log.jsonl)")
    log_every: int = Field(10, ge=1, description="steps between two records of the loggers")

    @field_validator("loggers", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        """``--set train.loggers=tensorboard,wandb`` arrives as one string."""
        return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value

    deterministic: bool = Field(
        False, description="bitwise reproducible on CUDA (slower); see svqbench/engine/machine.py"
    )
    compile: bool = Field(False, description="torch.compile the model for training")
    channels_last: bool = Field(
        False, description="the model's 4-D weights in channels-last memory order (faster convolutions on CPUs)"
    )


class EvalConfig(_Strict):
    metrics: tuple[str, ...] = ("mae", "mse", "ssim", "psnr")
    convention: str = "standard"
    batch_size: int = Field(32, ge=1)
    split: Literal["test", "val"] = "test"
    value_range: Optional[tuple[float, float]] = Field(
        None, description="physical LO, HI mapped to [0, 1] for ssim/psnr/lpips on physical fields (refused without it)"
    )
    precision: Literal["fp32", "bf16"] = "fp32"
    perturb_ratio: float = Field(
        0.0,
        ge=0,
        le=1,
        description="evaluate on inputs perturbed as train.perturb_ratio "
        "does, with draws keyed by test window (the same for every model; 0: clean)",
    )


class Recipe(_Strict):
    dataset: str
    model: dict[str, Any]
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    name: str = ""
    overrides: tuple[str, ...] = Field((), description="the --set KEY=VALUE strings applied to the named recipe")

    @property
    def model_name(self) -> str:
        return self.model["name"]

    @property
    def model_args(self) -> dict[str, Any]:
        return {k: v for k, v in self.model.items() if k != "name"}

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def recipes_dir() -> Path:
    """Where named recipes live: ``$SVQBENCH_RECIPES``, ``./recipes``, the copy installed inside the
    package (``svqbench/recipes``, from a wheel), or the repository's ``recipes/`` (a checkout or an
    editable install)."""
    if "SVQBENCH_RECIPES" in os.environ:
        return Path(os.environ["SVQBENCH_RECIPES"])
    local = Path("recipes")
    if local.is_dir():
        return local
    packaged = Path(str(resources.files("svqbench").joinpath("recipes")))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / "recipes"


def list_recipes() -> list[str]:
    """Names ``dataset/recipe`` of every recipe file under :func:`recipes_dir`."""
    base = recipes_dir()
    return sorted(
        str(p.relative_to(base).with_suffix("")) for p in base.glob("*/*.yaml") if p.parent.name != "studies"
    )  # recipes/studies/ holds study files for `svqbench sweep`


def find_recipe(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise SvqbenchError(f"recipe file {path} does not exist")
        return path
    name = name_or_path if "/" in name_or_path else f"{name_or_path}/{DEFAULT_RECIPE}"
    candidate = recipes_dir() / f"{name}.yaml"
    if not candidate.is_file():
        raise SvqbenchError(f"unknown recipe {name_or_path!r}; valid: {', '.join(list_recipes())} (or a .yaml path)")
    return candidate


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping (the last would silently win)."""

    source = "recipe"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise SvqbenchError(f"{self.source}:{mark.line + 1}:{mark.column + 1}: key {key!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str, source: str) -> Any:
    """YAML ``text`` (safe types only); errors name ``source``, the line and the column."""
    try:
        return yaml.load(text, Loader=type("Loader", (_UniqueKeyLoader,), {"source": source}))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise SvqbenchError(f"{where}: not valid YAML ({e.problem or e.context})") from None
    except yaml.YAMLError as e:
        raise SvqbenchError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None


def read_yaml_file(path: Path, what: str) -> Any:
    """The YAML in file ``path`` (a ``what``: "recipe", "study"): one reader, so every file refuses duplicate keys
    and non-UTF-8 bytes with the same one-line message."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SvqbenchError(f"{path}: not UTF-8 text (byte {e.start}); save the {what} as UTF-8") from None
    return load_yaml(text, str(path))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-3"`` -> (["train", "lr"], 0.001); the value is read as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SvqbenchError(f"--set {text!r}: expected key.sub=value, e.g. train.lr=1e-3")
    return key.split("."), load_yaml(value, f"--set {text!r}") if value else ""


def _apply_override(raw: dict[str, Any], keys: list[str], value: Any) -> None:
    from svqbench.models import accepts_any_argument, model_arguments
    from svqbench.models.plugins import absolute_name

    dotted = ".".join(keys)
    section = keys[0]
    if section in ("train", "eval"):
        schema = TrainConfig if section == "train" else EvalConfig
        if len(keys) != 2 or keys[1] not in schema.model_fields:
            valid = ", ".join(f"{section}.{k}" for k in schema.model_fields)
            raise SvqbenchError(f"--set {dotted}: no such key; valid: {valid}")
        raw.setdefault(section, {})[keys[1]] = value
    elif section == "model":
        model = raw.setdefault("model", {})
        if len(keys) != 2:
            raise SvqbenchError(f"--set {dotted}: expected model.<argument>")
        if keys[1] == "name":
            value = absolute_name(value, Path.cwd())  # a plugin file given on the command line: from here
        else:
            valid = model_arguments(model.get("name", ""))
            if keys[1] not in valid and not accepts_any_argument(model.get("name", "")):
                raise SvqbenchError(
                    f"--set {dotted}: model {model.get('name')!r} has no argument {keys[1]!r}; "
                    f"valid: {', '.join(valid)}"
                )
        model[keys[1]] = value
    elif section in ("dataset", "name") and len(keys) == 1:
        raw[section] = value
    else:
        raise SvqbenchError(f"--set {dotted}: no such key; valid sections: dataset, model.*, train.*, eval.*")


def _format_validation_error(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    if first["type"] == "bool_number":
        return f"{source}: {where}.{first['ctx']['key']}: {first['msg']} (true/false is not a number)"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key {where!r}"
    if first["type"] == "missing":
        return f"{source}: missing key {where!r}"
    return f"{source}: {where}: {first['msg']} (got {first.get('input')!r})"


def load_recipe(name_or_path: str, overrides: list[str] = ()) -> Recipe:
    """Read, override (``key.sub=value`` strings) and validate a recipe."""
    path = find_recipe(name_or_path)
    raw = read_yaml_file(path, "recipe") or {}
    if not isinstance(raw, dict):
        raise SvqbenchError(f"{path}: expected a mapping of keys (dataset, model, train, eval)")
    raw.setdefault("name", f"{path.parent.name}/{path.stem}")
    if isinstance(raw.get("model"), dict) and "name" in raw["model"]:
        from svqbench.models.plugins import absolute_name

        raw["model"]["name"] = absolute_name(raw["model"]["name"], path.parent)  # a plugin file: from the recipe
    for text in overrides:
        _apply_override(raw, *parse_override(text))
    if overrides:
        raw["overrides"] = [*raw.get("overrides", ()), *overrides]
    return validate_recipe(raw, str(path))


def validate_recipe(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    from svqbench.metrics.conventions import CONVENTIONS, check_metric_names
    from svqbench.models import check_model_args

    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as e:
        raise SvqbenchError(_format_validation_error(source, e)) from None
    if "name" not in recipe.model:
        raise SvqbenchError(f"{source}: missing key 'model.name'")
    try:
        check_model_args(recipe.model_name, recipe.model_args, source)
    except SvqbenchError as e:
        raise SvqbenchError(str(e) if str(e).startswith(source) else f"{source}: {e}") from None
    check_model_builds(recipe, source)
    check_metric_names(recipe.eval.metrics, f"{source}: eval.metrics")
    if recipe.eval.convention not in CONVENTIONS:
        raise SvqbenchError(
            f"{source}: eval.convention: unknown {recipe.eval.convention!r}; valid: {', '.join(CONVENTIONS)}"
        )
    return recipe


def check_model_builds(recipe: Recipe, source: str = "recipe") -> None:
    """Build the recipe's model on the meta device (no weights: milliseconds) for its dataset's clip
    shape, so a shape the model cannot take fails now, in one line naming the model keys, not in a
    traceback once training starts. Skipped when the shape is unknown (a dataset whose prep options
    decide it, not prepared under the default root)."""
    import torch

    from svqbench.data import known_shape
    from svqbench.models import create_model

    shape = known_shape(recipe.dataset)
    if shape is None:
        return
    try:
        with torch.device("meta"):
            create_model(recipe.model_name, shape, **recipe.model_args)
    except SvqbenchError as e:
        named = "" if "model." in str(e) else f" ({_model_keys(recipe)})"
        raise SvqbenchError(f"{source}: {e}{named}") from None
    except (ValueError, RuntimeError, AssertionError, TypeError, ZeroDivisionError) as e:
        message = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if isinstance(e, NotImplementedError) or "meta" in message.lower():
            return  # a limit of meta tensors (a library calling .item()), not of the recipe
        raise SvqbenchError(f"{source}: model: {message} ({_model_keys(recipe)})") from None


def _model_keys(recipe: Recipe) -> str:
    """The model keys to blame: those set with --set when there are any, else all of the recipe's."""
    overridden = [text.partition("=")[0].split(".", 1)[1] for text in recipe.overrides if text.startswith("model.")]
    keys = [k for k in recipe.model_args if k in overridden] or list(recipe.model_args)
    return ", ".join(f"model.{k}={recipe.model_args[k]!r}" for k in keys)


def with_seed(recipe: Recipe, seed: int) -> Recipe:
    """``recipe`` trained from ``seed``: a seed is a repetition, not an override (rows keep it in their ``seed``)."""
    return recipe.model_copy(update={"train": recipe.train.model_copy(update={"seed": int(seed)})})


def with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A recipe stored by an earlier svqbench, with the keys added since filled with their defaults
    (so a run does not look changed because the schema grew); a dict that no longer validates is returned as is."""
    try:
        return Recipe.model_validate(saved).to_dict()
    except ValidationError:
        return saved
