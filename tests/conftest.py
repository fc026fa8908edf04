import contextlib
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# Short heartbeats so stale-trial tests take seconds, not minutes.
os.environ.setdefault("BNSEARCH_HEARTBEAT", "1")
# The prepared-split cache of this test session (inherited by every subprocess), not the user's.
_CACHE = tempfile.mkdtemp(prefix="bnsearch-test-cache-")
os.environ["BNSEARCH_CACHE_DIR"] = _CACHE


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'bn.db'}"


@pytest.fixture
def smoke(tmp_path):
    """The smoke config (iris, 6 paired trials, 3 epochs) as Settings."""
    from bnsearch.config import load_config

    return load_config(CONFIGS / "smoke.toml")


@pytest.fixture(scope="session")
def stored_smoke(tmp_path_factory):
    """One finished smoke experiment in SQLite, shared by tests that only read it (export, summary)."""
    from bnsearch import api

    tmp = tmp_path_factory.mktemp("stored-smoke")
    url = f"sqlite:///{tmp / 'bn.db'}"
    api.run_compare(CONFIGS / "smoke.toml", jobs=1, storage=url, out=tmp / "out")
    return url


@pytest.fixture
def write_config(tmp_path):
    """Write a TOML config (the smoke config with edits) and return its path."""
    def _write(text: str | None = None, name: str = "cfg.toml", replace: dict[str, str] | None = None) -> Path:
        body = text if text is not None else (CONFIGS / "smoke.toml").read_text()
        for old, new in (replace or {}).items():
            assert old in body, old
            body = body.replace(old, new)
        p = tmp_path / name
        p.write_text(body)
        return p
    return _write


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300):
    """Run the real console entry point in a subprocess (exit codes and stderr as a user sees them)."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "bnsearch", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def killed_on_exit(proc):
    """Whatever happens in the block, a started command is not left running: its process group
    is killed when it leads one (started with start_new_session), else the process alone."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(proc.pid) == proc.pid:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
            proc.wait()
