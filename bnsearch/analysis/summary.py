"""`summarize`: the trials DataFrame of one experiment -> a `Summary` (every table, then the verdict)."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

from .common import (ADAPTIVE_SAMPLERS, ARMS, DELTA, MIN_IMPORTANCE_TRIALS, N_BOOT, TABLE_KEYS, _VALUE_COLS,
                     Summary, _floats, complete_trials)
from .curves import best_so_far, tuning_curve
from .importance import _is_categorical, categorical_sensitivity, numeric_sensitivity, param_importances
from .inference import (_diff_of_means, _diff_of_medians, _median, bootstrap_ci, mann_whitney, mcnemar_exact,
                        paired_scores, two_proportion_ztest, wilcoxon_test)
from .robustness import is_good, lr_window, proportion, score_stats, shared_best, trials_to_target
from .verdict import verdict

def _rows(section: str, arm: str, values: Mapping[str, float], cis: Mapping[str, tuple] | None = None) -> list[dict]:
    cis = cis or {}
    return [{"section": section, "metric": m, "arm": arm, "value": float(v),
             "lo": cis.get(m, (math.nan, math.nan))[0], "hi": cis.get(m, (math.nan, math.nan))[1]}
            for m, v in values.items()]


def _with_delta(table: pd.DataFrame, keys: list[str], cis: Mapping[tuple, tuple] | None = None) -> pd.DataFrame:
    """Append arm = "delta" rows (bn-on minus bn-off) for every key present in both arms."""
    if table.empty:
        return table
    other = [k for k in keys if k != "arm"]
    on = table[table["arm"] == "bn-on"].set_index(other)
    off = table[table["arm"] == "bn-off"].set_index(other)
    common = [k for k in on.index if k in off.index]
    rows = []
    for k in common:
        with np.errstate(invalid="ignore"):
            value = float(on.loc[k, "value"]) - float(off.loc[k, "value"])
        key = k if isinstance(k, tuple) else (k,)
        lo, hi = (cis or {}).get(key, (math.nan, math.nan))
        rows.append({**dict(zip(other, key)), "arm": DELTA, "value": value, "lo": lo, "hi": hi})
    return pd.concat([table, pd.DataFrame(rows, columns=table.columns)], ignore_index=True) if rows else table


def summarize(df: pd.DataFrame, *, distributions: Mapping, tolerance: float, paired: bool, sampler: str,
              task: str, seed: int = 0, n_boot: int = N_BOOT, evaluator=None,
              arms: tuple[str, str] | None = None) -> Summary:
    """All metrics of docs/design.md (Analysis) for one experiment (both arms) from its trials DataFrame.

    ``arms=(treatment, reference)`` compares any two arms of an N-arm experiment: the frame is cut to
    those two, which take the roles (and table labels) of bn-on and bn-off.
    """
    if arms is not None and tuple(arms) != ARMS:
        treatment, reference = arms
        df = df[df["arm"].astype(str).isin(arms)].assign(
            arm=lambda d: d["arm"].astype(str).map({treatment: ARMS[0], reference: ARMS[1]}))
    notes: list[str] = []
    experiment = str(df["experiment"].iloc[0]) if len(df) and "experiment" in df else ""
    arms = {arm: complete_trials(df, arm) for arm in ARMS}
    scores = {arm: _floats(t["score"]) for arm, t in arms.items()}
    s_star = shared_best(*scores.values())
    params = [p for p in distributions if p in df.columns]

    # Pairing is only real when both arms carry config indices.
    pairs = None
    if paired:
        if "config_index" in df.columns:
            pairs = paired_scores(arms["bn-on"], arms["bn-off"])
            pairs = pairs if len(pairs) else None
        if pairs is None and all(len(t) for t in arms.values()):
            notes.append("paired design requested but no configuration is complete in both arms "
                         "with a config_index; unpaired tests used")

    # ---- scores and robustness
    rows: list[dict] = []
    good = {arm: is_good(scores[arm], s_star, tolerance) for arm in ARMS}
    for arm, trials in arms.items():
        n_all = int((df["arm"].astype(str) == arm).sum()) if len(df) else 0
        st = score_stats(scores[arm])
        test_at_best = math.nan
        if len(trials) and "test_score" in trials:
            test_at_best = float(pd.to_numeric(trials["test_score"], errors="coerce").iloc[int(np.argmax(scores[arm]))])
        rows += _rows("scores", arm, {"n_trials": n_all, "n_complete": len(trials), **st, "test_at_best": test_at_best})

        g = proportion(good[arm])
        ttt = trials_to_target(g["value"])
        div = proportion(np.asarray(trials["diverged"].fillna(False), bool) if len(trials) else [])
        robust = {"good_count": g["k"], "good_fraction": g["value"], "trials_to_target": ttt,
                  "divergence_rate": div["value"]}
        cis = {"good_fraction": (g["lo"], g["hi"]), "divergence_rate": (div["lo"], div["hi"]),
               # 1/g is monotone, so the Wilson bounds map across (swapped)
               "trials_to_target": (trials_to_target(g["hi"]), trials_to_target(g["lo"]))}
        if "lr" in params:
            robust["lr_window"] = lr_window(trials.loc[good[arm], "lr"]) if len(trials) else 0.0
        rows += _rows("robustness", arm, robust, cis)
    metrics = pd.DataFrame(rows, columns=["section", "metric", "arm", *_VALUE_COLS])

    # Δ CIs by bootstrap: pairs resampled together in the paired design (s* held fixed).
    def flag_diff_ci(on_flags, off_flags, tag: str):
        if pairs is not None:
            return bootstrap_ci(_diff_of_means, on_flags, off_flags, paired=True, n_boot=n_boot, seed=seed, tag=tag)
        return bootstrap_ci(_diff_of_means, on_flags, off_flags, n_boot=n_boot, seed=seed, tag=tag)

    if pairs is not None:
        on_good_p = is_good(pairs["on"], s_star, tolerance)
        off_good_p = is_good(pairs["off"], s_star, tolerance)
        div_by_cfg = {arm: arms[arm].drop_duplicates("config_index").set_index("config_index")["diverged"]
                      for arm in ARMS}
        cfg = pairs["config_index"].to_numpy()
        div_on_p = np.asarray(div_by_cfg["bn-on"].reindex(cfg).fillna(False), bool)
        div_off_p = np.asarray(div_by_cfg["bn-off"].reindex(cfg).fillna(False), bool)
        good_ci = flag_diff_ci(on_good_p.astype(float), off_good_p.astype(float), "good")
        div_ci = flag_diff_ci(div_on_p.astype(float), div_off_p.astype(float), "div")
    else:
        good_ci = flag_diff_ci(good["bn-on"].astype(float), good["bn-off"].astype(float), "good")
        div_flags = {arm: np.asarray(arms[arm]["diverged"].fillna(False), float) if len(arms[arm]) else np.array([])
                     for arm in ARMS}
        div_ci = flag_diff_ci(div_flags["bn-on"], div_flags["bn-off"], "div")
    metrics = _with_delta(metrics, TABLE_KEYS["metrics"], {("robustness", "good_fraction"): good_ci,
                                                           ("robustness", "divergence_rate"): div_ci})

    # ---- tuning curves
    curve_frames = []
    for arm in ARMS:
        if sampler in ADAPTIVE_SAMPLERS:
            bsf = best_so_far(scores[arm])
            if bsf.size:
                curve_frames.append(pd.DataFrame({"estimator": "best-so-far", "n": np.arange(1, bsf.size + 1),
                                                  "arm": arm, "value": bsf, "lo": math.nan, "hi": math.nan}))
        else:
            for est in ("V", "U"):
                c = tuning_curve(scores[arm], est, n_boot=n_boot, seed=seed + (0 if arm == "bn-on" else 1))
                if not c.empty:
                    curve_frames.append(c.assign(estimator=est, arm=arm))
    curves = pd.concat(curve_frames, ignore_index=True) if curve_frames else pd.DataFrame()
    curves = curves.reindex(columns=["estimator", "n", "arm", *_VALUE_COLS])
    curves["n"] = curves["n"].astype("int64")
    curves = _with_delta(curves, TABLE_KEYS["curves"])
    if sampler in ADAPTIVE_SAMPLERS:
        notes.append(f"{sampler} is adaptive: tuning curves are best-so-far by trial number, "
                     "not the i.i.d. V/U estimates")

    # ---- importance
    imp_rows = []
    for arm in ARMS:
        for p, v in param_importances(arms[arm], distributions, evaluator=evaluator).items():
            imp_rows.append({"param": p, "arm": arm, "value": v, "lo": math.nan, "hi": math.nan})
    importance = _with_delta(pd.DataFrame(imp_rows, columns=["param", "arm", *_VALUE_COLS]), TABLE_KEYS["importance"])
    if importance["value"].isna().all() and len(importance):
        notes.append(f"importances need at least {MIN_IMPORTANCE_TRIALS} completed trials with varying scores per arm")

    # ---- sensitivity
    sens_rows = []
    for p in params:
        cat = _is_categorical(distributions[p])
        for arm in ARMS:
            t = arms[arm]
            v = (categorical_sensitivity(t[p], scores[arm]) if cat else numeric_sensitivity(t[p], scores[arm])) \
                if len(t) else math.nan
            sens_rows.append({"param": p, "kind": "categorical" if cat else "numeric",
                              "measure": "median range" if cat else "spearman rho",
                              "arm": arm, "value": v, "lo": math.nan, "hi": math.nan})
    sensitivity = _with_delta(pd.DataFrame(sens_rows, columns=TABLE_KEYS["sensitivity"] + _VALUE_COLS),
                              TABLE_KEYS["sensitivity"])

    # ---- tests
    test_rows: list[dict] = []

    def add(test, quantity, value, lo=math.nan, hi=math.nan, note=""):
        test_rows.append({"test": test, "quantity": quantity, "value": float(value), "lo": lo, "hi": hi, "note": note})

    g_on, g_off = (proportion(good[arm])["value"] for arm in ARMS)
    g_delta = g_on - g_off
    if pairs is not None:
        d = pairs["d"].to_numpy(float)
        W, p = wilcoxon_test(d)
        lo, hi = bootstrap_ci(_median, d, n_boot=n_boot, seed=seed, tag="median_d")
        add("wilcoxon", "n_pairs", d.size, note="configs COMPLETE in both arms")
        add("wilcoxon", "statistic", W, note="Wilcoxon signed-rank W (zero differences dropped)")
        add("wilcoxon", "p_value", p, note="two-sided")
        add("wilcoxon", "win_rate", np.mean(d > 0), note="share of configs where BN on scores higher")
        add("wilcoxon", "tie_rate", np.mean(d == 0), note="share of configs with equal scores")
        add("wilcoxon", "loss_rate", np.mean(d < 0), note="share of configs where BN off scores higher")
        add("wilcoxon", "median_d", np.median(d), lo, hi, note="median of d = s(on) - s(off), bootstrap CI")
        add("good_fraction", "diff", g_delta, *good_ci, note="g(on) - g(off), paired bootstrap CI")
        add("good_fraction", "p_value", mcnemar_exact(on_good_p, off_good_p), note="exact McNemar (paired)")
    else:
        a, b = scores["bn-on"], scores["bn-off"]
        U, p = mann_whitney(a, b)
        lo, hi = bootstrap_ci(_diff_of_medians, a, b, n_boot=n_boot, seed=seed, tag="median_diff")
        add("mann_whitney", "n_on", a.size)
        add("mann_whitney", "n_off", b.size)
        add("mann_whitney", "statistic", U, note="Mann-Whitney U of BN on")
        add("mann_whitney", "p_value", p, note="two-sided")
        add("mann_whitney", "prob_on_better", U / (a.size * b.size) if a.size and b.size else math.nan,
            note="P(on > off) + P(tie)/2 = U / (n_on n_off)")
        add("mann_whitney", "median_diff", np.median(a) - np.median(b) if a.size and b.size else math.nan, lo, hi,
            note="median(on) - median(off), bootstrap CI")
        add("good_fraction", "diff", g_delta, *good_ci, note="g(on) - g(off), bootstrap CI")
        add("good_fraction", "p_value", two_proportion_ztest(int(good["bn-on"].sum()), good["bn-on"].size,
                                                             int(good["bn-off"].sum()), good["bn-off"].size),
            note="pooled two-proportion z-test")
    tests = pd.DataFrame(test_rows, columns=[*TABLE_KEYS["tests"], *_VALUE_COLS, "note"])

    summary = Summary(experiment=experiment, task=task, sampler=sampler, paired=pairs is not None,
                      tolerance=float(tolerance), s_star=s_star, params=params, metrics=metrics, curves=curves,
                      importance=importance, sensitivity=sensitivity, tests=tests, notes=notes)
    summary.verdict = verdict(summary)
    return summary
