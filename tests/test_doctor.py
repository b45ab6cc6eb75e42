"""``svqbench doctor``: one screen naming torch, bf16, the data root and its datasets, LPIPS and leaderboards."""

from __future__ import annotations

from typer.testing import CliRunner

from svqbench.bench.doctor import diagnose, prepared_datasets
from svqbench.cli import app


def test_diagnose_lists_prepared_datasets(digits_root, isolated_leaderboards):
    facts = diagnose(digits_root)
    for key in (
        "torch",
        "devices",
        "bf16",
        "threads",
        "data root",
        "datasets",
        "LPIPS weights",
        "FVD weights",
        "leaderboards",
    ):
        assert facts[key], key
    assert "digits (digits, 10->10, 1x64x64; checksums match)" in facts["datasets"]
    assert str(isolated_leaderboards.resolve()) in facts["leaderboards"]
    assert "quickstart autocast: " in facts["bf16"]


def test_prepared_datasets_skips_incomplete_and_missing(tmp_path):
    (tmp_path / "half").mkdir()
    assert prepared_datasets(tmp_path) == [] and prepared_datasets(tmp_path / "nowhere") == []


def test_doctor_command_fits_one_screen(digits_root):
    result = CliRunner().invoke(app, ["doctor", "--root", str(digits_root)])
    assert result.exit_code == 0, result.output
    assert "digits" in result.output and len(result.output.splitlines()) <= 24
