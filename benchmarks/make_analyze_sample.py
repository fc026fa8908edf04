"""docs/samples/analyze: `bnsearch analyze` on studies bnsearch did not write.

A scikit-learn SGD logistic regression on the bundled breast-cancer data, tuned twice with plain
Optuna: on standardized features ("scaled") and on the raw ones ("raw"), minimizing the validation
log-loss. The "scaled" study draws 100 parameter sets with a seeded RandomSampler; each is enqueued
in the "raw" study with the same training seed (user attr "seed"), so `bnsearch analyze` pairs them.
A run whose loss is not finite returns NaN, which Optuna records as a FAIL: analyze counts it as a
failure. Then it runs

    bnsearch analyze --storage sqlite:///results/analyze-sample.db --study scaled --study raw --out docs/samples/analyze

    python benchmarks/make_analyze_sample.py              # ~1 min on 2 cores
    python benchmarks/make_analyze_sample.py --trials 30 --out /tmp/analyze

Relative paths are relative to the repository root (the storage URL is written into the report).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import optuna
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]


def split(scaled: bool):
    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xva, ytr, yva = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    if scaled:
        scaler = StandardScaler().fit(Xtr)
        Xtr, Xva = scaler.transform(Xtr), scaler.transform(Xva)
    return Xtr, Xva, ytr, yva


def objective(data):
    Xtr, Xva, ytr, yva = data

    def run(trial: optuna.Trial) -> float:
        alpha = trial.suggest_float("alpha", 1e-6, 1e-1, log=True)
        eta0 = trial.suggest_float("eta0", 1e-4, 1.0, log=True)
        schedule = trial.suggest_categorical("schedule", ["constant", "invscaling", "adaptive"])
        penalty = trial.suggest_categorical("penalty", ["l2", "l1", "elasticnet"])
        seed = trial.user_attrs.get("seed", trial.number)  # the enqueued twin trains with the same seed
        trial.set_user_attr("seed", seed)
        model = SGDClassifier(loss="log_loss", alpha=alpha, eta0=eta0, learning_rate=schedule, penalty=penalty,
                              max_iter=30, tol=None, random_state=seed)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", (ConvergenceWarning, RuntimeWarning))
            model.fit(Xtr, ytr)
            p = model.predict_proba(Xva)[:, 1]
        if not np.all(np.isfinite(p)):
            return float("nan")  # diverged: Optuna records a FAIL
        return float(log_loss(yva, np.clip(p, 1e-15, 1 - 1e-15)))

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--storage", default="results/analyze-sample.db", help="SQLite file, made afresh")
    ap.add_argument("--out", default="docs/samples/analyze")
    args = ap.parse_args()
    os.chdir(ROOT)
    db = Path(args.storage)
    db.parent.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)  # a fresh pair of studies every time
    url = f"sqlite:///{db}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # set_metric_names

    scaled = optuna.create_study(study_name="scaled", storage=url, direction="minimize",
                                 sampler=optuna.samplers.RandomSampler(seed=0))
    scaled.set_metric_names(["val_log_loss"])
    scaled.optimize(objective(split(True)), n_trials=args.trials)
    raw = optuna.create_study(study_name="raw", storage=url, direction="minimize")
    raw.set_metric_names(["val_log_loss"])
    for t in scaled.trials:
        raw.enqueue_trial(t.params, user_attrs={"seed": t.user_attrs["seed"]})
    raw.optimize(objective(split(False)), n_trials=args.trials)

    cmd = [sys.executable, "-m", "bnsearch", "analyze", "--storage", url, "--study", "scaled", "--study", "raw",
           "--out", args.out]
    print("$ bnsearch " + " ".join(cmd[3:]), flush=True)
    sys.exit(subprocess.run(cmd).returncode)


if __name__ == "__main__":
    main()
