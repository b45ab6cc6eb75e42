"""Controlled comparisons: in every dataset folder, DATASET/simvp and its SVQ variants differ only in the quantizer
keys."""

from __future__ import annotations

import pytest

from svqbench.config import list_recipes, load_recipe, recipes_dir

# what may differ between a baseline and its SVQ variant: the quantizer and nothing else
QUANTIZER_KEYS = {
    "model.name",
    "model.codebook_size",
    "model.svq_hidden",
    "model.freeze_codebook",
    "model.init",
    "model.nonlinear",
    "model.hid_relu",
    "model.out_relu",
    "model.post_vq",
}
VARIANTS = ("simvp_svq", "simvp_svq_frozen")
PAIRS = [
    (f"{folder}/simvp", f"{folder}/{variant}")
    for folder in sorted({name.split("/")[0] for name in list_recipes()})
    for variant in VARIANTS
    if (recipes_dir() / folder / "simvp.yaml").is_file() and (recipes_dir() / folder / f"{variant}.yaml").is_file()
]


def flatten(recipe: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 1}} -> {"train.lr": 1}; the recipe's own name is not a setting."""
    flat = {}
    for key, value in recipe.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        elif f"{prefix}{key}" != "name":
            flat[f"{prefix}{key}"] = value
    return flat


def differences_beyond_the_quantizer(baseline: dict, variant: dict) -> list[str]:
    """Dotted keys whose (resolved, defaults included) values differ, other than the quantizer keys."""
    a, b = flatten(baseline), flatten(variant)
    return sorted(key for key in set(a) | set(b) if a.get(key) != b.get(key) and key not in QUANTIZER_KEYS)


def test_every_paper_folder_has_its_pairs():
    folders = {pair[0].split("/")[0] for pair in PAIRS}
    assert {"kth", "human", "kitticaltech", "taxibj", "weather_t2m", "weather_mv", "mmnist", "digits"} <= folders


@pytest.mark.parametrize("baseline, variant", PAIRS)
def test_pair_differs_only_in_the_quantizer(baseline, variant):
    assert differences_beyond_the_quantizer(load_recipe(baseline).to_dict(), load_recipe(variant).to_dict()) == []


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.loss=mse", "train.loss"),
        ("train.lr=1e-2", "train.lr"),
        ("eval.convention=standard", "eval.convention"),
        ("model.drop_path=0.3", "model.drop_path"),
        ("train.seed=7", "train.seed"),
    ],
)
def test_the_check_catches_a_confounded_pair(override, key):
    baseline = load_recipe("kth/simvp", [override]).to_dict()
    variant = load_recipe("kth/simvp_svq").to_dict()
    assert key in differences_beyond_the_quantizer(baseline, variant)
