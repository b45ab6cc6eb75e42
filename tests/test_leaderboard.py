"""Leaderboard rows: appended, replaced per (run, convention, split), best values marked."""

from __future__ import annotations

import pytest

from svqbench import leaderboard
from svqbench.errors import SvqbenchError


def row(run, mse, ssim, convention="standard"):
    return {"run": run, "model": "simvp", "recipe": "digits/simvp", "params": 10, "epochs": 1,
            "convention": convention, "split": "test", "mse": mse, "ssim": ssim}


def test_rows_append_replace_and_mark_best(isolated_leaderboards):
    leaderboard.add_row("digits", row("a", 0.02, 0.8))
    leaderboard.add_row("digits", row("b", 0.01, 0.7))
    leaderboard.add_row("digits", row("a", 0.03, 0.9))  # re-evaluation replaces, never duplicates
    leaderboard.add_row("digits", row("a", 30.0, 0.95, convention="openstl"))
    table = leaderboard.read("digits")
    assert sorted(zip(table["run"], table["convention"])) == [("a", "openstl"), ("a", "standard"), ("b", "standard")]
    standard = table[table["convention"] == "standard"]
    best = leaderboard.best_rows(standard)
    assert standard.loc[best["mse"], "run"] == "b" and standard.loc[best["ssim"], "run"] == "a"
    markdown = (isolated_leaderboards / "digits.md").read_text()
    assert "**0.01**" in markdown and "**0.9**" in markdown
    assert "**30**" in markdown  # the only openstl row is best among openstl rows, not compared with standard


def test_missing_leaderboard_is_an_error(isolated_leaderboards):
    with pytest.raises(SvqbenchError, match="no leaderboard for 'kth'"):
        leaderboard.read("kth")
