"""The library is quiet and leaves global state alone: only the CLI prints and configures logging."""

import logging
import subprocess
import sys
import warnings

from conftest import CONFIGS


def _global_state():
    import optuna

    return (optuna.logging.get_verbosity(), list(warnings.filters), logging.getLogger("optuna").level,
            [type(h) for h in logging.getLogger("optuna").handlers])


def test_calling_the_library_prints_nothing_and_changes_no_logging_state(tmp_path, capfd):
    import bnsearch

    before = _global_state()
    url = f"sqlite:///{tmp_path / 'bn.db'}"
    report = bnsearch.run_compare(CONFIGS / "smoke.toml", trials=3, jobs=1, storage=url, out=tmp_path / "out")
    df = bnsearch.load_trials(url, "smoke")
    bnsearch.list_experiments(url)
    bnsearch.build_report(url, "smoke")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert _global_state() == before
    assert len(df) == 6 and report.files


def test_importing_and_touching_load_trials_changes_no_global_state():
    # A fresh interpreter: the dependencies alone (scipy and torch add warning filters of their own on
    # import) vs also importing bnsearch and touching its public names.
    code = ("import optuna, warnings, logging, scipy.stats, torch, sklearn, pandas, sqlalchemy; "
            "a = (optuna.logging.get_verbosity(), list(warnings.filters)); "
            "import bnsearch; bnsearch.load_trials; bnsearch.summarize; bnsearch.run_compare; "
            "b = (optuna.logging.get_verbosity(), list(warnings.filters)); print(a == b, a[0], b[0])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.startswith("True"), r.stdout + r.stderr


def test_lazy_names_are_listed_by_dir():
    import bnsearch

    names = dir(bnsearch)
    for name in ("run_compare", "load_trials", "summarize", "load_config", "__version__"):
        assert name in names
    assert callable(bnsearch.run_compare)


def test_report_objects_have_useful_reprs(tmp_path):
    import bnsearch

    url = f"sqlite:///{tmp_path / 'bn.db'}"
    report = bnsearch.run_compare(CONFIGS / "smoke.toml", trials=3, jobs=1, storage=url, out=tmp_path / "out")
    text = repr(report)
    assert "smoke" in text and "6 trials" in text
    md = report._repr_markdown_()
    assert md.startswith("# bnsearch report: smoke") and report.summary.verdict in md
    assert report.summary.verdict in repr(report.summary)
