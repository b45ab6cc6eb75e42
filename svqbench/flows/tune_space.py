"""The ``tune:`` section of a study file: the search space, the budget per trial, the objective, the pruner.

Torch-free and Optuna-free: it is validated with the rest of the study file, before anything is imported. ::

    tune:
      trials: 16                 # per recipe: every trainable recipe of the study gets the same number
      steps: 250                 # train.max_steps of each trial (the study's full budget is for the re-runs)
      val_every: 50              # validations per trial, each one reported to the pruner
      objective: val_loss        # or {metric: ssim} (direction from the metric) on the validation split
      pruner: median             # median | successive_halving | hyperband | none
      sampler: tpe               # tpe | random, seeded by `seed`
      seed: 0
      set: [train.val_samples=256]   # overrides of every trial only (not of the best recipes)
      space:
        train.lr: {log_uniform: [1.0e-4, 1.0e-2]}
        train.loss: {choice: [mse, mse_l1]}
        model.hid_S: {int: [8, 32], step: 8}
        model.codebook_size: {choice: [256, 1024, 4096], recipes: [simvp_svq]}   # only where the model has it
      runs: runs/tune/NAME       # default: runs/tune/<study name>; trial K of recipe R in RUNS/R/trial-K
      best: runs/tune/NAME/best  # default: RUNS/best; each recipe's best trial as best/R.yaml, the effort in
                                 # best/tuning.json
      reference: simvp_svq       # the model the tuned table compares the others with (default: the first)
      storage: journal:PATH      # or postgresql://USER@HOST/DB; `--storage` overrides (default: RUNS/journal.log)
      baseline: recipes/studies/digits_small.yaml   # the defaults' runs, from that study (else the sweep trains them)

Trials read only the train and validation splits; the test split is for the study's sweep of the best recipes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

KINDS = ("log_uniform", "uniform", "integer", "choice")  # `integer` is written `int` in a study file


class Dimension(BaseModel):
    """One key of the space: exactly one of ``log_uniform: [LO, HI]``, ``uniform: [LO, HI]``, ``int: [LO, HI]``
    (with ``step``, or ``log: true``) and ``choice: [A, B, ...]``; ``recipes`` limits it to those recipes (labels
    or names), for keys that only some models have."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    log_uniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    integer: tuple[int, int] | None = Field(None, alias="int")  # `int:` in the file (a field named int hides the type)
    step: int = Field(1, ge=1)
    log: bool = False
    choice: tuple[Any, ...] | None = Field(None, min_length=1)
    recipes: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Dimension":
        given = [kind for kind in KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            names = [kind.replace("integer", "int") for kind in KINDS]
            raise ValueError(f"give exactly one of {', '.join(names)} (got {', '.join(given) or 'none'})")
        bounds = self.log_uniform or self.uniform or self.integer
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"{given[0]}: the low bound must be below the high one (got {list(bounds)})")
        if self.log_uniform is not None and self.log_uniform[0] <= 0:
            raise ValueError(f"log_uniform: bounds must be positive (got {list(self.log_uniform)})")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in KINDS if getattr(self, kind) is not None)

    def applies_to(self, label: str, name: str) -> bool:
        return self.recipes is None or label in self.recipes or name in self.recipes

    def example(self) -> Any:
        """A value of the space (its low end, or first choice): what the study's check builds models with."""
        return self.choice[0] if self.choice is not None else (self.log_uniform or self.uniform or self.integer)[0]

    def suggest(self, trial: Any, key: str) -> Any:
        """The trial's value for ``key`` (an ``optuna.Trial``: a resumed trial gets its recorded value back)."""
        if self.log_uniform is not None:
            return trial.suggest_float(key, *self.log_uniform, log=True)
        if self.uniform is not None:
            return trial.suggest_float(key, *self.uniform)
        if self.integer is not None:
            return trial.suggest_int(key, *self.integer, step=1 if self.log else self.step, log=self.log)
        if self.structured:
            return self.decode(trial.suggest_categorical(key, [_yaml_text(c) for c in self.choice]))
        return trial.suggest_categorical(key, list(self.choice))

    @property
    def structured(self) -> bool:
        """Whether some choice is a list or mapping (``model.num_hidden: {choice: [[32, 32], [64, 64]]}``): Optuna
        records those as their YAML text."""
        return self.choice is not None and any(isinstance(c, (list, tuple, dict)) for c in self.choice)

    def decode(self, recorded: Any) -> Any:
        """A value as Optuna recorded it -> the recipe's value."""
        return yaml.safe_load(recorded) if self.structured and isinstance(recorded, str) else recorded


class Objective(BaseModel):
    """What a trial is scored by, on the validation split: ``val_loss`` (the training loss measured at the
    validations) or a metric (``mse``, ``ssim``, ...) of the selected checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    metric: str = "val_loss"
    direction: Literal["minimize", "maximize"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"metric": value} if isinstance(value, str) else value

    @property
    def resolved_direction(self) -> str:
        from svqbench.results.directions import HIGHER_IS_BETTER

        if self.direction is not None:
            return self.direction
        return "maximize" if self.metric in HIGHER_IS_BETTER else "minimize"


class TuneSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    trials: int = Field(ge=1)
    steps: int = Field(ge=1)
    val_every: int | None = Field(None, ge=1)
    objective: Objective = Objective()
    pruner: Literal["median", "successive_halving", "hyperband", "none"] = "median"
    sampler: Literal["tpe", "random"] = "tpe"
    startup_trials: int | None = Field(None, ge=0)
    seed: int = Field(0, ge=0, lt=2**32)
    set: tuple[str, ...] = ()
    space: dict[str, Dimension] = Field(min_length=1)
    reference: str | None = None  # the model the others are compared with after tuning (default: the first)
    runs: Path | None = None
    best: Path | None = None
    storage: str | None = None  # journal:PATH or postgresql://...; --storage overrides; default RUNS/journal.log
    # a study file whose runs are these recipes at their default settings (same seeds and budget): the sweep then
    # trains only the tuned recipes, and the tuned table takes the defaults' rows from that study's leaderboard
    baseline: Path | None = None

    @model_validator(mode="after")
    def _keys(self) -> "TuneSpec":
        for key in self.space:
            section = key.split(".")[0]
            if section not in ("model", "train") or key.count(".") != 1:
                raise ValueError(f"space key {key!r}: expected model.<argument> or train.<key>")
            if key in ("train.max_steps", "train.epochs", "train.seed", "train.val_every"):
                raise ValueError(f"space key {key!r}: the budget and the seed are the study's, not searched")
        return self

    @property
    def validation_interval(self) -> int:
        """Steps between the validations of a trial (each one reported to the pruner): ``val_every``, else a fifth
        of the budget."""
        return self.val_every or max(1, self.steps // 5)

    @property
    def first_trials(self) -> int:
        """Trials sampled at random (and never pruned) before TPE and the pruner take over."""
        return self.startup_trials if self.startup_trials is not None else max(2, min(10, self.trials // 3))

    def runs_dir(self, study_name: str) -> Path:
        return self.runs or Path("runs/tune") / study_name

    def best_dir(self, study_name: str) -> Path:
        return self.best or self.runs_dir(study_name) / "best"

    def dimensions_for(self, label: str, name: str) -> dict[str, Dimension]:
        return {key: dim for key, dim in self.space.items() if dim.applies_to(label, name)}


def _yaml_text(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def override(key: str, value: Any) -> str:
    """``key=value`` as ``--set`` reads it back (YAML: 1e-05 is written 1.0e-05, which YAML reads as a number)."""
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    return f"{key}={text.removesuffix('...').strip()}"
