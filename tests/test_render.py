"""render --compare: several runs on one sample, one row each, frame numbers and shared-scale error maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from svqbench.cli import app
from svqbench.render import LABEL_HEIGHT, MIN_PANEL, compare_frames, compare_strip, error_maps

T_IN, T_OUT = 3, 4


def sample(channels: int = 1, size: int = 16):
    generator = torch.Generator().manual_seed(channels)
    inputs = torch.rand(T_IN, channels, size, size, generator=generator)
    truth = torch.rand(T_OUT, channels, size, size, generator=generator)
    return inputs, truth


def test_error_maps_share_one_scale():
    _, truth = sample()
    exact, off = truth.clone(), (truth + 0.5).clamp(0, 1)
    maps, top = error_maps(truth, [exact, off])
    assert top == pytest.approx((off - truth).abs().max().item())
    assert maps[0].shape == (T_OUT, 16, 16, 3) and maps[0].dtype == np.uint8
    assert maps[0].max() < 10  # no error: the dark end of the colour map
    assert maps[1].mean() > maps[0].mean() + 20


@pytest.mark.parametrize("channels", [1, 3])
def test_compare_strip_has_one_row_per_run(channels):
    inputs, truth = sample(channels)
    runs = [("kth/simvp\nrun-a", truth.clone()), ("kth/simvp_svq\nrun-b", (truth + 0.3).clamp(0, 1))]
    image = compare_strip(inputs, truth, runs)
    tile = MIN_PANEL  # 16-pixel frames are enlarged to the minimum panel size
    # two header bands of frame numbers (input, truth), input and truth rows, then prediction and |error| per run
    assert image.shape[0] == 2 * (LABEL_HEIGHT + 2) + (2 + 2 * len(runs)) * tile
    assert image.shape[1] > T_OUT * tile  # a label column on the left
    label_width = image.shape[1] - T_OUT * tile
    first_run_error = image[2 * (LABEL_HEIGHT + 2) + 3 * tile :][:tile, label_width:]
    second_run_error = image[2 * (LABEL_HEIGHT + 2) + 5 * tile :][:tile, label_width:]
    assert first_run_error.max() < 10 < second_run_error.mean()
    labels = image[:, :label_width]
    assert labels.max() == 255  # the row labels are drawn


def test_compare_frames_number_every_frame():
    inputs, truth = sample()
    runs = [("a", truth), ("b", 1 - truth), ("c", truth * 0.5)]
    frames = compare_frames(inputs, truth, runs)
    assert len(frames) == T_IN + T_OUT
    assert len({f.shape for f in frames}) == 1
    height = frames[0].shape[0]
    assert height == LABEL_HEIGHT + 4 + (1 + len(runs)) * MIN_PANEL
    # the titles differ frame to frame (the frame number), the prediction cells are blank until prediction starts
    assert not np.array_equal(frames[0][: LABEL_HEIGHT + 4], frames[1][: LABEL_HEIGHT + 4])
    run_rows = frames[0][LABEL_HEIGHT + 4 + MIN_PANEL :]
    label_width = frames[0].shape[1] - 2 * MIN_PANEL
    assert run_rows[:, label_width:].max() == 0 and frames[T_IN][LABEL_HEIGHT + 4 + MIN_PANEL :, label_width:].max() > 0


def test_render_compare_command(tmp_path, tiny_recipe, digits_root):
    runner = CliRunner()
    runs = []
    for steps in (1, 4):
        run_dir = tmp_path / f"run{steps}"
        trained = runner.invoke(
            app,
            [
                "train",
                str(tiny_recipe),
                "--root",
                str(digits_root),
                "--run-dir",
                str(run_dir),
                "--device",
                "cpu",
                "--quiet",
                "--set",
                f"train.max_steps={steps}",
            ],
        )
        assert trained.exit_code == 0, trained.output
        runs.append(str(run_dir))
    out = tmp_path / "compare.gif"
    rendered = runner.invoke(
        app, ["render", "--compare", *runs, "--root", str(digits_root), "--index", "1", "--out", str(out)]
    )
    assert rendered.exit_code == 0, rendered.output
    assert Image.open(out).n_frames == 20 and Image.open(out.with_suffix(".png")).size[1] > 4 * MIN_PANEL
    refused = runner.invoke(app, ["render", *runs, "--root", str(digits_root)])
    assert refused.exit_code == 1 and "add --compare" in refused.output
