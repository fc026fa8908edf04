"""The real console entry point, as a user runs it (subprocess: exit codes, stdout, files).

Bad input through the CLI (exit 2, one line, storage untouched) is in test_parallel.py.
"""

from conftest import CONFIGS, run_cli


def test_study_space_list_and_optuna_cli_see_the_same_trials(tmp_path):
    url = f"sqlite:///{tmp_path / 'bn.db'}"
    r = run_cli("study", str(CONFIGS / "smoke.toml"), "--bn", "on", "--storage", url, "--jobs", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "bn-on" in r.stdout and "6/6" in r.stdout
    r = run_cli("list", "--storage", url, cwd=tmp_path)
    assert r.returncode == 0 and "smoke" in r.stdout
    # Real Optuna storage: Optuna's own CLI lists what bnsearch ran.
    import subprocess
    import sys
    from pathlib import Path
    optuna_cli = Path(sys.executable).with_name("optuna")
    out = subprocess.run([str(optuna_cli), "trials", "--study-name", "smoke/bn-on", "--storage", url, "-f", "json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count('"COMPLETE"') == 6


def test_default_storage_is_results_db_in_cwd(tmp_path):
    r = run_cli("study", str(CONFIGS / "smoke.toml"), "--bn", "off", "--trials", "1", "--jobs", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "results" / "bnsearch.db").is_file()


def test_env_storage_override(tmp_path):
    url = f"sqlite:///{tmp_path / 'env.db'}"
    r = run_cli("study", str(CONFIGS / "smoke.toml"), "--bn", "off", "--trials", "1", "--jobs", "1",
                cwd=tmp_path, env={"BNSEARCH_STORAGE": url})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "env.db").is_file() and not (tmp_path / "results" / "bnsearch.db").exists()


def test_help_explains_itself():
    r = run_cli("--help")
    assert r.returncode == 0 and "compare" in r.stdout and "BatchNorm" in r.stdout
    r = run_cli("study", "--help")
    assert r.returncode == 0 and "Examples" in r.stdout and "--bn" in r.stdout


def test_every_command_help_has_examples():
    for cmd in ("compare", "summary", "export", "plot", "worker", "space", "list", "datasets"):
        r = run_cli(cmd, "--help")
        assert r.returncode == 0 and "Example" in r.stdout and f"bnsearch {cmd}" in r.stdout, (cmd, r.stdout)
    r = run_cli("compare", "--help")
    assert "--seed" in r.stdout


def test_compare_seed_is_validated_before_anything_is_written(tmp_path):
    r = run_cli("compare", str(CONFIGS / "smoke.toml"), "--seed", "-1", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --seed must be between 0 and 4294967295 (got -1)"], r.stderr
    assert list(tmp_path.iterdir()) == []


def test_fork_server_only_for_the_commands_that_run_workers():
    """The entry point preloads the workers' libraries (forkserver.py) only where workers will run:
    compare/study with more than one job; an unused server would cost a core ~1.5 s for nothing."""
    from bnsearch.forkserver import runs_workers

    assert runs_workers(["compare"]) and runs_workers(["study", "cfg.toml", "--bn", "on"])
    assert runs_workers(["compare", "--jobs", "2"]) and runs_workers(["compare", "-j", "4"])
    assert not runs_workers(["compare", "--jobs", "1"]) and not runs_workers(["compare", "--jobs=1"])
    assert not runs_workers(["compare", "-j", "1"]) and not runs_workers(["compare", "--help"])
    assert not runs_workers([]) and not runs_workers(["--version"])
    for command in ("summary", "export", "list", "worker", "space", "plot", "datasets"):
        assert not runs_workers([command])


def test_compare_runs_on_a_csv_without_a_toml(tmp_path):
    """`bnsearch compare data.csv --target label --epochs N`: the built-in search on the user's file,
    the experiment named after it; without --target it is one line, exit 2."""
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame.rename(columns={"target": "label"})
    frame.to_csv(tmp_path / "my flowers.csv", index=False)
    r = run_cli("compare", "my flowers.csv", "--target", "label", "--epochs", "1", "--trials", "3", "--jobs", "1",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-600:]
    assert "my-flowers" in r.stdout and (tmp_path / "results" / "my-flowers" / "report.md").exists()
    import pandas as pd
    trials = pd.read_csv(tmp_path / "results" / "my-flowers" / "trials.csv")
    assert len(trials) == 6 and (trials["epochs_run"] == 1).all()
    bad = run_cli("compare", "my flowers.csv", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--target" in bad.stderr
