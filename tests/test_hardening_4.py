"""Hardening, round 4 (issue 26), the cases fixed so far: an ASCII locale, and a panel's prediction
interval past what a difference of shares can be. Each starts the real CLI or the real pooling."""

from __future__ import annotations

import pytest

from bnsearch.panel import pool_panel
from conftest import CONFIGS, run_cli


@pytest.fixture
def stored(stored_smoke):
    return stored_smoke


def test_an_ascii_locale_prints_the_report_with_ascii_stand_ins(stored):
    # Before: every report died with UnicodeEncodeError on its first "δ" (exit 1, a traceback).
    env = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
    r = run_cli("summary", str(CONFIGS / "smoke.toml"), "--storage", stored, env=env)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "UnicodeEncodeError" not in r.stderr
    assert "Answer:" in r.stdout and "delta" in r.stdout and "δ" not in r.stdout
    r.stdout.encode("ascii")  # every character the terminal got is ASCII


def test_a_utf8_terminal_keeps_its_characters(stored):
    r = run_cli("summary", str(CONFIGS / "smoke.toml"), "--storage", stored,
                env={"LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8"})
    assert r.returncode == 0, r.stderr
    assert "δ" in r.stdout


def _row(name, n, b, c):
    return {"dataset": name, "slug": name, "n": n, "top_b": b, "top_c": c, "paired": True}


def test_a_prediction_interval_past_100_points_says_too_few_data_sets():
    # Three data sets far apart: t with 1 df makes the 95% prediction interval wider than ±100 pts.
    res = pool_panel([_row("A", 40, 30, 0), _row("B", 40, 0, 30), _row("C", 40, 10, 10)], draws=50)
    assert res.pm.pi_low < -1 or res.pm.pi_high > 1
    assert "too few data sets to say what to expect on a new one" in res.verdict
    assert "expect between" not in res.verdict
