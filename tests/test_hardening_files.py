"""Hardening, round 4 (issue 26): files that point elsewhere and secrets in a storage URL. Each test
starts the real CLI on a tiny stored experiment."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CONFIGS, killed_on_exit, run_cli

SMOKE = str(CONFIGS / "smoke.toml")
SECRET = "hunter2XYZ"


@pytest.fixture
def stored(stored_smoke):
    return stored_smoke


def _victim(folder: Path, name: str = "victim.txt") -> Path:
    victim = folder / name
    victim.write_text("precious\n")
    return victim


def test_the_write_probe_does_not_empty_what_a_planted_link_points_to(stored, tmp_path):
    # Before: the probe opened ".bnsearch-write-test" by name, followed the link and truncated its target.
    victim = _victim(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".bnsearch-write-test").symlink_to(victim)
    r = run_cli("export", SMOKE, "--storage", stored, "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert victim.read_text() == "precious\n"
    assert (out / ".bnsearch-write-test").is_symlink()  # not ours: left alone
    assert not [p for p in out.iterdir() if p.name.startswith(".bnsearch-write-test-")]


def _exported_names(stored, tmp_path) -> list[str]:
    out = tmp_path / "names"
    r = run_cli("export", SMOKE, "--storage", stored, "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    return sorted(p.name for p in out.iterdir())


def test_export_temporaries_are_not_followed_through_planted_links(stored, tmp_path):
    # Before: temporaries were named ".<stem>.<pid>.tmp<suffix>"; links planted under the export's pid
    # made it overwrite their target, and the final files were renamed links to it.
    names = _exported_names(stored, tmp_path)
    assert "trials.csv" in names and "report.md" in names
    victim = _victim(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    final_victim = _victim(tmp_path, "final-victim.txt")
    (out / "summary.csv").symlink_to(final_victim)  # a link at a final name, too
    proc = subprocess.Popen([sys.executable, "-m", "bnsearch", "export", SMOKE, "--storage", stored, "--out", str(out)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with killed_on_exit(proc):
        # The export's imports take seconds: the links are in place long before its first write.
        for name in names:
            p = Path(name)
            (out / f".{p.stem}.{proc.pid}.tmp{p.suffix}").symlink_to(victim)
        stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    assert victim.read_text() == "precious\n"
    assert final_victim.read_text() == "precious\n"
    for name in names:
        f = out / name
        assert f.is_file() and not f.is_symlink(), name
    assert "precious" not in (out / "trials.csv").read_text()
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") and not p.is_symlink()]
    assert not leftovers


@pytest.mark.parametrize("option", ["password", "pass%77ord", "PWD"])
def test_a_password_option_on_a_sqlite_url_is_never_echoed(stored, tmp_path, option):
    # Before: the refusal spelled out the would-be file name "bn.db?password=<secret>", plainly and
    # percent-encoded, beside the masked URL.
    db = stored.removeprefix("sqlite:///")
    for command in (["export", SMOKE, "--out", str(tmp_path / "o")], ["summary", SMOKE], ["list"]):
        r = run_cli(*command, "--storage", f"sqlite:///{db}?{option}={SECRET}", cwd=tmp_path)
        assert r.returncode != 0, r.stdout
        text = r.stdout + r.stderr
        assert SECRET not in text and SECRET.lower() not in text.lower(), text
        assert "Traceback" not in text
        assert "***" in text, text
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, r.stderr
        assert "percent-encode" in lines[0]
    assert not (tmp_path / "o").exists()


PANEL = """
[panel]
name = "tiny"
datasets = ["iris", "wine"]

[experiment]
seed = 0
tolerance = 0.02

[search]
trials = 4

[search.space]
layers     = { low = 1, high = 2 }
width      = { low = 8, high = 32, log = true }
activation = ["relu", "tanh"]
lr         = { low = 1e-3, high = 1.0, log = true }
optimizer  = ["sgd", "adam"]
batch_size = [16, 32]

[train]
epochs = 1
"""


def test_html_in_a_panel_config_path_is_not_markup_in_report_md(tmp_path):
    # Before: the path went into a code span as is; its backtick closed the span and the <img> after it
    # was raw HTML in report.md.
    from markdown_it import MarkdownIt

    cfg = tmp_path / "p`<img src=x onerror=alert(1)>`.toml"
    cfg.write_text(PANEL)
    out = tmp_path / "out"
    r = run_cli("panel", str(cfg), "--storage", f"sqlite:///{tmp_path / 'p.db'}", "--out", str(out), "--jobs", "1",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    text = (out / "report.md").read_text(encoding="utf-8")
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert re.findall(r"<img[^>]*>", html) == ['<img src="forest.png" alt="forest plot" />',
                                               '<img src="subspaces.png" alt="sub-spaces" />'], html
    # the path is still there, whole and readable, inside one code span (relative to the working folder)
    assert "<code>" + cfg.name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") + "</code>" in html
    assert "| iris |" in text and "| wine |" in text
