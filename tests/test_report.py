"""svqbench report: one self-contained HTML file, loaded in headless Chromium (screenshot not blank, the
leaderboard's text in the rendered page); one-line errors for a missing leaderboard or study, a bad --out."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import assert_one_line_error, invoke
from test_train_engine import write_recipe

from svqbench.config import load_recipe
from svqbench.engine.evaluate import evaluate
from svqbench.engine.train import train
from svqbench.progress import Reporter

CPU = torch.device("cpu")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def evaluated_runs(tmp_path_factory, digits_root) -> Path:
    """A leaderboards folder holding a tiny SimVP+SVQ run (two seeds) and the persistence floor, all evaluated."""
    folder = tmp_path_factory.mktemp("report")
    recipe_file = write_recipe(folder, max_steps=2)
    floor_file = folder / "floor.yaml"
    floor_file.write_text(
        "dataset: digits\nname: digits/persistence\nmodel: {name: persistence}\n"
        "eval: {metrics: [mae, mse, ssim, psnr], batch_size: 4}\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SVQBENCH_LEADERBOARDS", str(folder / "leaderboards"))
        runs = [(recipe_file, 1), (recipe_file, 2), (floor_file, 1)]
        for position, (path, seed) in enumerate(runs):
            recipe = load_recipe(str(path), [f"train.seed={seed}"])
            run_dir = folder / "runs" / f"run{position}"
            train(recipe, run_dir, CPU, digits_root, reporter=Reporter(quiet=True))
            evaluate(run_dir, CPU, data_root=digits_root)
    return folder


def write_report(evaluated_runs: Path, digits_root: Path, monkeypatch, source: str = "digits") -> Path:
    monkeypatch.setenv("SVQBENCH_LEADERBOARDS", str(evaluated_runs / "leaderboards"))
    out = evaluated_runs / "report.html"
    result = invoke("report", source, "--out", out, "--root", digits_root, "--device", "cpu")
    assert result.exit_code == 0, result.output
    return out


def test_report_is_one_self_contained_file(evaluated_runs, digits_root, monkeypatch):
    page = write_report(evaluated_runs, digits_root, monkeypatch).read_text()
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing fetched: every image is inline
    assert "<style>" in page and "http://" not in page and "https://" not in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3  # the bar chart, the per-frame curves, the runs on one sample
    for section in ("Leaderboard", "Published numbers", "Per predicted frame", "every group side by side", "Runs"):
        assert section in page, section
    assert "digits/persistence" in page and 'class="floor"' in page and "± " in page


def find_browser() -> str:
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium here (Debian: apt-get install chromium); .ci/run installs it")


def chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_report_renders_in_headless_chromium(evaluated_runs, digits_root, monkeypatch, tmp_path):
    browser = find_browser()
    url = write_report(evaluated_runs, digits_root, monkeypatch).resolve().as_uri()
    dom = chromium(browser, tmp_path / "profile", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr
    text = re.sub(r"<[^>]+>", " ", dom.stdout)
    assert "digits leaderboard" in text and "digits/persistence" in text and "floor" in text
    assert re.search(r"0\.\d+ ± \d", text)  # a mean ± std cell of the table, as the browser parsed it
    shot = tmp_path / "shot.png"
    done = chromium(browser, tmp_path / "profile", "--window-size=1200,1400", f"--screenshot={shot}", url)
    assert done.returncode == 0 and shot.is_file(), done.stderr
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (1400, 1200)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01  # text and images drawn, not a blank page


def test_report_of_a_study_file(evaluated_runs, digits_root, monkeypatch, tmp_path):
    from svqbench.results import leaderboard

    study_out = tmp_path / "studies"
    study_out.mkdir()
    monkeypatch.setenv("SVQBENCH_LEADERBOARDS", str(evaluated_runs / "leaderboards"))
    leaderboard.read("digits").to_csv(study_out / "tiny.csv", index=False)  # as `svqbench sweep` writes it
    study = tmp_path / "tiny.yaml"
    study.write_text(f"name: tiny\ndataset: digits\nrecipes: [digits/simvp]\nout: {study_out}\n")
    page = write_report(evaluated_runs, digits_root, monkeypatch, str(study)).read_text()
    assert "study tiny" in page and "digits/persistence" in page


def test_report_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SVQBENCH_LEADERBOARDS", str(tmp_path / "none"))
    assert_one_line_error(invoke("report", "nowhere", "--out", tmp_path / "r.html"), "no leaderboard for 'nowhere'")
    study = tmp_path / "s.yaml"
    study.write_text(f"name: s\ndataset: digits\nrecipes: [digits/simvp]\nout: {tmp_path / 'out'}\n")
    assert_one_line_error(invoke("report", study, "--out", tmp_path / "r.html"), "svqbench sweep")
    assert_one_line_error(invoke("report", "digits", "--out", tmp_path / "r.pdf"), "must end in .html")
    assert not (tmp_path / "r.html").exists()
