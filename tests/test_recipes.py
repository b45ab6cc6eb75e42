"""Recipes: every shipped recipe validates; unknown keys, wrong types and bad overrides are one-line errors."""

from __future__ import annotations

import pytest

from svqbench.config import list_recipes, load_recipe
from svqbench.errors import SvqbenchError


@pytest.mark.parametrize("name", list_recipes())
def test_every_shipped_recipe_loads(name):
    recipe = load_recipe(name)
    assert recipe.name == name
    assert recipe.dataset == name.split("/")[0]


def test_dataset_name_means_its_default_recipe():
    assert load_recipe("digits").name == "digits/simvp_svq"


def test_overrides_reach_nested_keys():
    recipe = load_recipe("digits/simvp", ["train.lr=3e-4", "model.hid_S=32", "eval.metrics=[mae]"])
    assert recipe.train.lr == 3e-4 and recipe.model["hid_S"] == 32 and recipe.eval.metrics == ("mae",)


def _write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("dataset: digits\nmodel: {name: simvp}\ntrain: {epoch: 3}\n", "unknown key 'train.epoch'"),
        ("dataset: digits\nmodel: {name: simvp}\ntrain: {epochs: many}\n", "train.epochs"),
        ("dataset: digits\nmodel: {name: simvp, width: 3}\n", "no argument 'width'"),
        ("dataset: digits\nmodel: {name: transformer}\n", "unknown model 'transformer'"),
        ("dataset: digits\nmodel: {name: simvp}\neval: {metrics: [fid]}\n", "unknown metric 'fid'"),
        ("dataset: digits\nmodel: {name: simvp}\ntrain: {schedule: linear}\n", "train.schedule"),
        ("model: {name: simvp}\n", "missing key 'dataset'"),
        ("dataset: [digits\n", "not valid YAML"),
    ],
)
def test_bad_recipes_fail_with_the_key(tmp_path, text, message):
    with pytest.raises(SvqbenchError, match=message.replace("[", r"\[")) as info:
        load_recipe(_write(tmp_path, text))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.nope=1", "--set train.nope: no such key"),
        ("model.depth=3", "has no argument 'depth'"),
        ("optimizer.lr=1", "no such key"),
        ("train.lr", "expected key.sub=value"),
        ("train.batch_size=0", "train.batch_size"),
    ],
)
def test_bad_overrides_fail(override, message):
    with pytest.raises(SvqbenchError, match=message):
        load_recipe("digits/simvp", [override])


def test_unknown_recipe_lists_the_valid_ones():
    with pytest.raises(SvqbenchError, match="digits/simvp_quick"):
        load_recipe("digits/does_not_exist")
