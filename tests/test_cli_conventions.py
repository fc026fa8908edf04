"""CLI conventions scripts rely on: --version, JSON output, nothing truncated when piped."""

import json

import pytest

from bnsearch import __version__
from conftest import CONFIGS, run_cli


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conv")
    url = f"sqlite:///{tmp / 'bn.db'}"
    r = run_cli("compare", str(CONFIGS / "smoke.toml"), "--trials", "3", "--jobs", "1", "--storage", url,
                "--out", str(tmp / "out"), cwd=tmp)
    assert r.returncode == 0, r.stderr
    return tmp, url


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith(f"bnsearch {__version__} (torch ")


def test_list_json_is_valid_json_with_every_arm(stored):
    tmp, url = stored
    r = run_cli("list", "--storage", url, "--json", cwd=tmp)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert sorted((x["experiment"], x["arm"], x["complete"]) for x in rows) == [("smoke", "bn-off", 3),
                                                                            ("smoke", "bn-on", 3)]


def test_summary_json_carries_verdict_and_tables(stored):
    tmp, url = stored
    r = run_cli("summary", "--experiment", "smoke", "--storage", url, "--json", cwd=tmp)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["experiment"] == "smoke" and doc["verdict"]
    assert {"metrics", "curves", "tests"} <= set(doc["tables"]) and doc["tables"]["metrics"]


def test_piped_output_is_never_truncated(stored):
    tmp, url = stored
    # stdout is a pipe here, as in `bnsearch list | cat`: no ellipsis, every cell whole.
    r = run_cli("list", "--storage", url, cwd=tmp)
    assert r.returncode == 0 and "…" not in r.stdout
    assert "smoke" in r.stdout and "bn-off" in r.stdout
    r = run_cli("summary", "--experiment", "smoke", "--storage", url, cwd=tmp)
    assert r.returncode == 0 and "…" not in r.stdout
    verdict = json.loads(run_cli("summary", "--experiment", "smoke", "--storage", url, "--json", cwd=tmp).stdout)["verdict"]
    assert " ".join(verdict.split()) in " ".join(r.stdout.replace("│", " ").split())


def test_list_fits_an_80_column_terminal():
    from rich.console import Console

    from bnsearch.cli import experiments_table

    rows = [{"experiment": "a-rather-long-experiment-name-rep12", "arm": "bn-off", "complete": 1000, "budget": 1000,
             "waiting": 0, "running": 12, "errored": 3, "best": 0.987654}]
    console = Console(width=80, record=True)
    console.print(experiments_table(rows))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "1000/1000" in text and "0.9877" in text and "12" in text
