"""Keyed randomness (svqbench.keyed) and the input perturbation built on it (train/eval ``perturb_ratio``)."""

from __future__ import annotations

import pytest
import torch

from svqbench import keyed
from svqbench.config import load_recipe
from svqbench.engine.evaluate import evaluate
from svqbench.engine.train import train
from svqbench.models.recurrent import SamplingSchedule
from svqbench.models.translators import DropPath, KeyedDropout


def split_like_two_ranks(draw, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``draw(key, rows)`` for the whole batch on one rank, and for two ranks holding one half each."""
    whole = draw(keyed.StepKey(seed=3, step=11, first_sample=0, samples=batch), batch)
    half = batch // 2
    halves = torch.cat([draw(keyed.StepKey(3, 11, 0, half), half), draw(keyed.StepKey(3, 11, half, half), half)])
    return whole, halves


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5])
def test_perturb_changes_the_ratio_of_each_sample_by_factors_in_range(ratio):
    inputs = torch.ones(4, 10, 1, 8, 8)
    out = keyed.perturb(inputs, ratio, keyed.StepKey(1, 0, 0, 4))
    changed = (out != inputs).flatten(1).sum(1)
    assert changed.tolist() == [int(640 * ratio)] * 4  # a factor of exactly 1.0 has probability 0
    assert out.min() >= -2.0 and out.max() <= 2.0
    assert out[out != 1].abs().mean() == pytest.approx(1.0, abs=0.1)  # |U[-2, 2]| has mean 1


def test_perturb_zero_is_identity():
    inputs = torch.rand(2, 3, 1, 4, 4)
    assert keyed.perturb(inputs, 0.0, keyed.StepKey(1, 0, 0, 2)) is inputs


def test_perturb_draws_do_not_depend_on_how_the_batch_is_split():
    inputs = torch.rand(8, 4, 2, 6, 6)

    def draw(key, rows):
        start = key.first_sample
        return keyed.perturb(inputs[start : start + rows], 0.3, key)

    whole, halves = split_like_two_ranks(draw, 8)
    assert torch.equal(whole, halves)


def test_draws_are_a_function_of_seed_step_and_sample():
    key = lambda step: keyed.StepKey(5, step, 0, 4)  # noqa: E731
    first = keyed.uniform("s", 4, (3,), "cpu", key(2))
    assert torch.equal(first, keyed.uniform("s", 4, (3,), "cpu", key(2)))  # a resumed step replays it
    assert not torch.equal(first, keyed.uniform("s", 4, (3,), "cpu", key(3)))
    assert not torch.equal(first, keyed.uniform("other", 4, (3,), "cpu", key(2)))
    two_calls = key(2)
    assert not torch.equal(keyed.uniform("s", 4, (3,), "cpu", two_calls), keyed.uniform("s", 4, (3,), "cpu", two_calls))


@pytest.mark.parametrize("layer", [DropPath(0.5), KeyedDropout(0.5)])
def test_dropout_masks_are_keyed_per_sample(layer):
    x = torch.rand(8, 3, 5, 5)

    def draw(key, rows):
        start = key.first_sample
        with keyed.keyed_step(key.seed, key.step, key.first_sample, key.samples):
            return layer(x[start : start + rows])

    whole, halves = split_like_two_ranks(draw, 8)
    assert torch.equal(whole, halves)
    assert not torch.equal(whole, x)


def test_window_rows_per_sample_are_keyed_per_sample():
    """Rows laid out sample-major (B*N, ...) as Swin's windows are: each sample keeps its own draws."""
    x = torch.rand(8 * 4, 6)
    layer = KeyedDropout(0.5)

    def draw(key, rows):
        start = key.first_sample * 4
        with keyed.keyed_step(key.seed, key.step, key.first_sample, key.samples):
            return layer(x[start : start + rows * 4])

    whole, halves = split_like_two_ranks(draw, 8)
    assert torch.equal(whole, halves)


def test_recurrent_sampling_coins_are_keyed_per_sample():
    schedule = SamplingSchedule(sampling_start_value=0.5, sampling_changing_rate=0.0)

    def draw(key, rows):
        with keyed.keyed_step(key.seed, key.step, key.first_sample, key.samples):
            return schedule.teacher_mask(key.step, rows, 4, 4)

    whole, halves = split_like_two_ranks(draw, 8)
    assert torch.equal(whole, halves)


def test_outside_a_keyed_step_layers_draw_from_the_global_generator():
    layer = DropPath(0.5).train()
    torch.manual_seed(0)
    first = layer(torch.ones(64, 1))
    torch.manual_seed(0)
    assert torch.equal(first, layer(torch.ones(64, 1)))
    assert not torch.equal(first, layer(torch.ones(64, 1)))


def test_training_perturbs_inputs_and_evaluation_does_not_by_default(tiny_recipe, digits_root, tmp_path, monkeypatch):
    """The model sees perturbed inputs in training steps only; validation and eval see clean ones."""
    import svqbench.engine.evaluate as evaluate_module
    import svqbench.engine.step as step_module  # the training step perturbs

    seen: list[tuple[str, float]] = []
    real_perturb = keyed.perturb

    def recording(inputs, ratio, key):
        replay = keyed.StepKey(key.seed, key.step, key.first_sample, key.samples)  # the same draws, on ones
        ones = torch.ones_like(inputs)
        seen.append(("perturb", ratio, (real_perturb(ones, ratio, replay) != ones).float().mean().item()))
        return real_perturb(inputs, ratio, key)

    monkeypatch.setattr(step_module, "perturb", recording)
    monkeypatch.setattr(evaluate_module, "perturb", recording)
    recipe = load_recipe(str(tiny_recipe), ["train.perturb_ratio=0.3", "train.max_steps=2"])
    run = train(recipe, tmp_path / "run", torch.device("cpu"), data_root=digits_root)
    training = list(seen)
    assert [ratio for _, ratio, _ in training] == [0.3, 0.3]
    assert all(share == pytest.approx(0.3, abs=0.01) for _, _, share in training)
    seen.clear()
    clean = evaluate(run, torch.device("cpu"), data_root=digits_root, update_leaderboard=False)
    assert {ratio for _, ratio, _ in seen} == {0.0} and clean["split"] == "test"
    seen.clear()
    noisy = evaluate(run, torch.device("cpu"), data_root=digits_root, update_leaderboard=False, perturb_ratio=0.5)
    assert {ratio for _, ratio, _ in seen} == {0.5} and noisy["split"] == "test/perturb=0.5"
    assert noisy["overall"]["mse"] != clean["overall"]["mse"]
    again = evaluate(run, torch.device("cpu"), data_root=digits_root, update_leaderboard=False, perturb_ratio=0.5)
    assert again["overall"] == noisy["overall"]  # seeded: the same perturbed inputs every time


def test_perturb_ratio_outside_zero_one_is_refused(tiny_recipe):
    from svqbench.errors import SvqbenchError

    with pytest.raises(SvqbenchError, match="perturb_ratio"):
        load_recipe(str(tiny_recipe), ["train.perturb_ratio=1.5"])
