"""`summarize`: the trials DataFrame of one experiment -> a `Comparison` (every table, then the verdict)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from .common import (ADAPTIVE_SAMPLERS, ARMS, DELTA, MIN_IMPORTANCE_TRIALS, MIN_TRIALS_TO_TELL, N_BOOT, TABLE_KEYS,
                     _VALUE_COLS,
                     Comparison, _floats, complete_trials)
from .curves import best_so_far, curve_grid, simultaneous_curve, u_weights
from .heterogeneity import heterogeneity_table
from .lr_window import lr_window_grid, lr_window_stat, smoothed_p_good
from .primary import ALPHA, EQUIVALENCE_MARGIN, PrimaryResult, holm, primary_analysis, rate_difference
from .tolerance import failure_cutoff, noise_tolerance, reference_mask
from .importance import _is_categorical, categorical_sensitivity, numeric_sensitivity, param_importances
from .inference import _diff_of_medians, bootstrap_ci, hodges_lehmann, mann_whitney, paired_scores, wilcoxon_test
from .robustness import is_good, proportion, score_stats, shared_best, trials_to_target
from .verdict import verdict

if TYPE_CHECKING:
    from .survival import AdaptiveResult

def _rows(section: str, arm: str, values: Mapping[str, float], cis: Mapping[str, tuple] | None = None) -> list[dict]:
    cis = cis or {}
    return [{"section": section, "metric": m, "arm": arm, "value": float(v),
             "lo": cis.get(m, (math.nan, math.nan))[0], "hi": cis.get(m, (math.nan, math.nan))[1]}
            for m, v in values.items()]


def _with_delta(table: pd.DataFrame, keys: list[str], cis: Mapping[tuple, tuple] | None = None,
                arms: tuple[str, str] = ARMS) -> pd.DataFrame:
    """Append arm = "delta" rows (treatment minus reference) for every key present in both arms."""
    if table.empty:
        return table
    other = [k for k in keys if k != "arm"]
    on = table[table["arm"] == arms[0]].set_index(other)
    off = table[table["arm"] == arms[1]].set_index(other)
    common = [k for k in on.index if k in off.index]
    rows = []
    for k in common:
        with np.errstate(invalid="ignore"):
            value = float(on.loc[k, "value"]) - float(off.loc[k, "value"])
        key = k if isinstance(k, tuple) else (k,)
        lo, hi = (cis or {}).get(key, (math.nan, math.nan))
        rows.append({**dict(zip(other, key)), "arm": DELTA, "value": value, "lo": lo, "hi": hi})
    return pd.concat([table, pd.DataFrame(rows, columns=table.columns)], ignore_index=True) if rows else table


DEFAULT_TOLERANCE = 0.01  # only when neither the config nor the validation-set size gives one


def _paired_flags(pairs: pd.DataFrame | None, arms: dict, flags: dict, treat: str, ref: str):
    """Per-trial flags re-indexed to the pairs' configurations (treatment, reference)."""
    cfg = pairs["config_index"].to_numpy()
    out = []
    for arm in (treat, ref):
        t = arms[arm]
        ser = pd.Series(flags[arm], index=t["config_index"].astype("int64").to_numpy())
        ser = ser[~ser.index.duplicated()]
        out.append(np.asarray(ser.reindex(cfg).fillna(False), bool))
    return out


def hardware_notes(df: pd.DataFrame) -> list[str]:
    """A warning when the trials come from more than one CPU: the same configuration and seed give
    different scores on different CPUs (hardware.py), so arm differences could mix in machine ones."""
    if "hardware" not in df.columns or df.empty:
        return []
    machines = sorted({str(h) for h in df.loc[df["state"].astype(str) == "COMPLETE", "hardware"].dropna()})
    if len(machines) < 2:
        return []
    return [f"WARNING: these trials ran on {len(machines)} different CPUs ({'; '.join(machines)}); the same "
            "configuration scores differently across CPUs, so rerun on one machine type or use the reproducible "
            "numerics setting (README: Reproducibility across machines)"]


@dataclass(frozen=True)
class _Inputs:
    """What every table builder shares: the arms' completed trials, s*, δ, the pairing and the per-trial flags."""
    df: pd.DataFrame
    arms: tuple[str, str]
    distributions: Mapping
    params: list[str]
    task: str
    sampler: str
    seed: int
    n_boot: int
    margin: float
    baseline: float | None
    tolerance: float
    tolerance_source: str
    trials: dict
    scores: dict
    s_star: float
    pairs: pd.DataFrame | None
    keep: dict
    ref_cfg: int | None
    good: dict
    diverged: dict
    failed: dict
    fail_cutoff: float  # below it a run failed to train (tolerance.failure_cutoff); NaN without a baseline

    @property
    def treat(self) -> str:
        return self.arms[0]

    @property
    def ref(self) -> str:
        return self.arms[1]

    @property
    def has_baseline(self) -> bool:
        return self.baseline is not None and np.isfinite(self.baseline)

    def compared_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """The scores the primary analysis compares, the reference configuration left out: aligned
        by configuration (paired) or each arm's own (unpaired)."""
        if self.pairs is not None:
            p = self.pairs[self.pairs["config_index"].to_numpy() != self.ref_cfg]
            return p["on"].to_numpy(float), p["off"].to_numpy(float)
        return self.scores[self.treat][self.keep[self.treat]], self.scores[self.ref][self.keep[self.ref]]

    def primary(self) -> PrimaryResult:
        t, r = self.compared_scores()
        return primary_analysis(t, r, paired=self.pairs is not None, s_star=self.s_star, tolerance=self.tolerance,
                                margin=self.margin, seed=self.seed,
                                floor=self.fail_cutoff if self.has_baseline else None)

    def rate(self, flags: dict, tag: str) -> PrimaryResult:
        """A per-trial share (diverged, failed) compared between the arms, every configuration counted."""
        treat, ref = self.arms
        if self.pairs is not None:
            a, b = _paired_flags(self.pairs, self.trials, flags, treat, ref)
            return rate_difference(a, b, paired=True, seed=self.seed, tag=tag)
        return rate_difference(flags[treat], flags[ref], paired=False, seed=self.seed, tag=tag)


@dataclass(frozen=True)
class _Endpoints:
    primary: PrimaryResult
    diverged: PrimaryResult
    failed: PrimaryResult | None


def _tolerance(tolerance: float | None, s_star: float, n_val: int | None, task: str,
               scores: np.ndarray, class_counts=None, metric: str = "accuracy") -> tuple[float, str]:
    if tolerance is not None:
        source = "set in the config"
    else:
        tolerance = noise_tolerance(s_star, n_val, task, scores=scores, class_counts=class_counts, metric=metric)
        if np.isfinite(tolerance):
            se_word = ("SE of the best R²" if task != "classification" else
                       "binomial SE of the best balanced accuracy (on K × the harmonic mean of the class counts)"
                       if metric == "balanced_accuracy" and class_counts else "binomial SE of the best accuracy")
            source = (f"derived: (2 + the expected excess of a maximum) × {se_word} on {n_val} validation rows")
        else:
            tolerance = DEFAULT_TOLERANCE
            source = "default (validation-set size unknown)"
    return float(tolerance), source


def comparison_tolerance(df: pd.DataFrame, arms, *, tolerance: float | None, n_val: int | None, task: str,
                         class_counts=None, metric: str = "accuracy") -> float:
    """The δ `summarize` uses for these arms: the config's, or derived from the best score of their
    completed trials (DEFAULT_TOLERANCE when the validation size is unknown)."""
    scores = np.concatenate([_floats(complete_trials(df, a)["score"]) for a in arms]) if len(df) else np.array([])
    return _tolerance(tolerance, shared_best(scores), n_val, task, scores, class_counts, metric)[0]


def _pairs(df: pd.DataFrame, trials: dict, params: list[str], paired: bool, treat: str, ref: str,
           notes: list[str]) -> pd.DataFrame | None:
    """Pairing is only real when both arms carry config indices."""
    pairs = None
    if paired:
        if "config_index" in df.columns:
            pairs = paired_scores(trials[treat], trials[ref])
            pairs = pairs if len(pairs) else None
        if pairs is None and all(len(t) for t in trials.values()):
            notes.append("paired design requested but no configuration is complete in both arms "
                         "with a config_index; unpaired tests used")
    if pairs is not None:
        cols = [p for p in params if p in trials[treat]]
        first = trials[treat].assign(config_index=trials[treat]["config_index"].astype("int64"))
        pairs = pairs.merge(first.drop_duplicates("config_index")[["config_index", *cols]], on="config_index",
                            how="left")
    return pairs


def _reference_keep(trials: dict, scores: dict, pairs: pd.DataFrame | None, arms: tuple[str, str], s_star: float,
                    notes: list[str]) -> tuple[dict, int | None]:
    """The reference configuration (sets s*) is left out of every good count."""
    order = {arm: (_floats(t["config_index"]) if "config_index" in t and t["config_index"].notna().all()
                   else _floats(t["number"])) for arm, t in trials.items()}
    ref_mask = reference_mask(scores, order)
    keep = {arm: ~ref_mask[arm] for arm in arms}
    ref_cfg = None
    if pairs is not None:
        for arm in arms:
            if ref_mask[arm].any():
                ref_cfg = int(trials[arm]["config_index"].to_numpy()[np.argmax(ref_mask[arm])])
        for arm in arms:
            keep[arm] = _floats(trials[arm]["config_index"]) != ref_cfg
    if np.isfinite(s_star):
        notes.append("the configuration that sets s* is the reference and is left out of the good counts")
    return keep, ref_cfg


def _inputs(df: pd.DataFrame, *, distributions: Mapping, tolerance: float | None, paired: bool, sampler: str,
            task: str, seed: int, n_boot: int, arms: tuple[str, str], n_val: int | None, baseline: float | None,
            margin: float, notes: list[str], class_counts=None, metric: str = "accuracy") -> _Inputs:
    treat, ref = arms
    trials = {arm: complete_trials(df, arm) for arm in arms}
    scores = {arm: _floats(t["score"]) for arm, t in trials.items()}
    s_star = shared_best(*scores.values())
    params = [p for p in distributions if p in df.columns]
    tolerance, source = _tolerance(tolerance, s_star, n_val, task, np.concatenate(list(scores.values())),
                                   class_counts, metric)
    pairs = _pairs(df, trials, params, paired, treat, ref, notes)
    keep, ref_cfg = _reference_keep(trials, scores, pairs, arms, s_star, notes)
    cutoff = failure_cutoff(baseline, n_val, task, class_counts, metric)
    return _Inputs(
        df=df, arms=arms, distributions=distributions, params=params, task=task, sampler=sampler, seed=seed,
        n_boot=n_boot, margin=margin, baseline=baseline, tolerance=tolerance, tolerance_source=source,
        trials=trials, scores=scores, s_star=s_star, pairs=pairs, keep=keep, ref_cfg=ref_cfg,
        good={arm: is_good(scores[arm], s_star, tolerance) for arm in arms},
        diverged={arm: np.asarray(t["diverged"].fillna(False), bool) if len(t) else np.array([], bool)
                  for arm, t in trials.items()},
        failed={arm: scores[arm] < (cutoff if np.isfinite(cutoff) else -np.inf) for arm in arms}, fail_cutoff=cutoff)


def _lr_window_rows(x: _Inputs, notes: list[str]) -> list[dict]:
    """Learning-rate window per optimizer, at a level shared by both arms."""
    arms, trials, keep, good, seed = x.arms, x.trials, x.keep, x.good, x.seed
    window_rows: list[dict] = []
    opt_col = "optimizer" if "optimizer" in x.params else None
    groups = sorted(set().union(*(set(trials[a][opt_col].astype(str)) for a in arms))) if opt_col else [""]
    for opt in groups:
        sel = {a: (trials[a][opt_col].astype(str) == opt).to_numpy() if opt_col else np.ones(len(trials[a]), bool)
               for a in arms}
        sel = {a: sel[a] & keep[a] for a in arms}
        grid = lr_window_grid(np.concatenate([_floats(trials[a]["lr"])[sel[a]] for a in arms]))
        peaks = [np.nanmax(smoothed_p_good(np.log10(_floats(trials[a]["lr"])[sel[a]]), good[a][sel[a]].astype(float), grid))
                 for a in arms if sel[a].sum() and grid.size]
        level = 0.5 * max(peaks) if peaks and max(peaks) > 0 else math.nan
        name = f"lr_window ({opt})" if opt else "lr_window"
        for a in arms:
            w = lr_window_stat(_floats(trials[a]["lr"])[sel[a]], good[a][sel[a]], grid, level, seed=seed,
                               tag=f"{a}-{opt}")
            window_rows.append({"section": "robustness", "metric": name, "arm": a, "value": w[0],
                                "lo": w[1], "hi": w[2]})
        if np.isfinite(level):
            notes.append(f"{name}: decades of lr where the smoothed P(good) is at least {level:.2f} "
                         "(half the higher peak of the two arms)")
    return window_rows


def _metrics_table(x: _Inputs, ends: _Endpoints, notes: list[str]) -> pd.DataFrame:
    """Scores and robustness per arm, the learning-rate window, then the Δ rows."""
    df, arms, trials, scores = x.df, x.arms, x.trials, x.scores
    rows: list[dict] = []
    for arm in arms:
        t = trials[arm]
        n_all = int((df["arm"].astype(str) == arm).sum()) if len(df) else 0
        st = score_stats(scores[arm])
        test_at_best = math.nan
        if len(t) and "test_score" in t:
            test_at_best = float(pd.to_numeric(t["test_score"], errors="coerce").iloc[int(np.argmax(scores[arm]))])
        rows += _rows("scores", arm, {"n_trials": n_all, "n_complete": len(t), **st, "test_at_best": test_at_best})

        # One population with the primary analysis: the configurations it compares (paired: complete in
        # both arms), the reference configuration left out.
        k, n = (ends.primary.k_on, ends.primary.n_on) if arm == x.treat else (ends.primary.k_off, ends.primary.n_off)
        g = proportion(np.arange(n) < k)
        div = proportion(x.diverged[arm])
        fail = proportion(x.failed[arm]) if x.has_baseline else {"value": math.nan, "lo": math.nan, "hi": math.nan}
        robust = {"good_count": g["k"], "good_fraction": g["value"], "trials_to_target": trials_to_target(g["value"]),
                  "divergence_rate": div["value"], "failed_rate": fail["value"]}
        cis = {"good_fraction": (g["lo"], g["hi"]), "divergence_rate": (div["lo"], div["hi"]),
               "failed_rate": (fail["lo"], fail["hi"]),
               # 1/g is monotone, so the Clopper-Pearson bounds map across (swapped)
               "trials_to_target": (trials_to_target(g["hi"]), trials_to_target(g["lo"]))}
        rows += _rows("robustness", arm, robust, cis)
    metrics = pd.DataFrame(rows, columns=["section", "metric", "arm", *_VALUE_COLS])
    if "lr" in x.params:
        metrics = pd.concat([metrics, pd.DataFrame(_lr_window_rows(x, notes), columns=metrics.columns)],
                            ignore_index=True)

    primary, div_end, fail_end = ends.primary, ends.diverged, ends.failed
    delta_cis = {("robustness", "good_fraction"): (primary.lo, primary.hi),
                 ("robustness", "divergence_rate"): (div_end.lo, div_end.hi)}
    if fail_end is not None:
        delta_cis[("robustness", "failed_rate")] = (fail_end.lo, fail_end.hi)
    metrics = _with_delta(metrics, TABLE_KEYS["metrics"], delta_cis, arms)
    # The good-fraction Δ is the primary analysis' at the declared δ (paired: configurations of both arms).
    metrics.loc[(metrics["metric"] == "good_fraction") & (metrics["arm"] == DELTA), "value"] = primary.diff
    return metrics


def _curves_table(x: _Inputs, notes: list[str]) -> pd.DataFrame:
    """Expected best of n with opda's simultaneous bands; Δ band by Bonferroni."""
    arms, scores, sampler, task, treat, ref = x.arms, x.scores, x.sampler, x.task, x.treat, x.ref
    curve_frames = []
    for arm in arms:
        if sampler in ADAPTIVE_SAMPLERS:
            bsf = best_so_far(scores[arm])
            if bsf.size:
                curve_frames.append(pd.DataFrame({"estimator": "best-so-far", "n": np.arange(1, bsf.size + 1),
                                                  "arm": arm, "value": bsf, "lo": math.nan, "hi": math.nan}))
        elif scores[arm].size:
            ns = curve_grid(scores[arm].size)
            curve_frames.append(simultaneous_curve(scores[arm], ns, task).assign(estimator="V", arm=arm))
            v = np.sort(scores[arm])
            curve_frames.append(pd.DataFrame({"n": ns, "value": [float(v @ u_weights(v.size, n)) for n in ns],
                                              "lo": math.nan, "hi": math.nan}).assign(estimator="U", arm=arm))
    curves = pd.concat(curve_frames, ignore_index=True) if curve_frames else pd.DataFrame()
    curves = curves.reindex(columns=["estimator", "n", "arm", *_VALUE_COLS])
    curves["n"] = curves["n"].astype("int64")
    delta_band = {}
    if sampler not in ADAPTIVE_SAMPLERS and all(scores[a].size for a in arms):
        ns = curve_grid(min(scores[a].size for a in arms))
        c97 = {a: simultaneous_curve(scores[a], ns, task, confidence=1 - ALPHA / 2).set_index("n") for a in arms}
        for n in ns:
            delta_band[("V", n)] = (c97[treat].loc[n, "lo"] - c97[ref].loc[n, "hi"],
                                    c97[treat].loc[n, "hi"] - c97[ref].loc[n, "lo"])
    curves = _with_delta(curves, TABLE_KEYS["curves"], delta_band, arms)
    if sampler in ADAPTIVE_SAMPLERS:
        notes.append(f"{sampler} is adaptive: tuning curves are best-so-far by trial number, "
                     "not the i.i.d. V/U estimates")
    return curves


def _importance_table(x: _Inputs, evaluator, notes: list[str]) -> pd.DataFrame:
    imp_rows = []
    for arm in x.arms:
        for p, v in param_importances(x.trials[arm], x.distributions, evaluator=evaluator).items():
            imp_rows.append({"param": p, "arm": arm, "value": v, "lo": math.nan, "hi": math.nan})
    importance = _with_delta(pd.DataFrame(imp_rows, columns=["param", "arm", *_VALUE_COLS]),
                             TABLE_KEYS["importance"], arms=x.arms)
    if importance["value"].isna().all() and len(importance):
        notes.append(f"importances need at least {MIN_IMPORTANCE_TRIALS} completed trials with varying scores per arm")
    return importance


def _sensitivity_table(x: _Inputs) -> pd.DataFrame:
    sens_rows = []
    for p in x.params:
        cat = _is_categorical(x.distributions[p])
        for arm in x.arms:
            t, s = x.trials[arm], x.scores[arm]
            v = (categorical_sensitivity(t[p], s) if cat else numeric_sensitivity(t[p], s)) if len(t) else math.nan
            sens_rows.append({"param": p, "kind": "categorical" if cat else "numeric",
                              "measure": "median range" if cat else "spearman rho",
                              "arm": arm, "value": v, "lo": math.nan, "hi": math.nan})
    return _with_delta(pd.DataFrame(sens_rows, columns=TABLE_KEYS["sensitivity"] + _VALUE_COLS),
                       TABLE_KEYS["sensitivity"], arms=x.arms)


def _tests_table(x: _Inputs, ends: _Endpoints) -> pd.DataFrame:
    """The primary analysis (its declared level, the test over all levels, each level's adjusted p),
    then the secondary family (Holm-adjusted)."""
    treat, ref = x.treat, x.ref
    primary, div_end, fail_end = ends.primary, ends.diverged, ends.failed
    test_rows: list[dict] = []

    def add(test, quantity, value, lo=math.nan, hi=math.nan, note=""):
        test_rows.append({"test": test, "quantity": quantity, "value": float(value), "lo": lo, "hi": hi, "note": note})

    how = ("Tango score interval" if primary.paired else "Mee score interval")
    add("good_fraction", "diff", primary.diff, primary.lo, primary.hi,
        note=f"PRIMARY at the declared δ: g({treat}) - g({ref}), {how} at the test's critical value "
             f"{primary.critical:.3f} (simultaneous over {primary.n_levels} quality levels: the larger of the "
             "sign-flip null's and Bonferroni's)")
    q = primary.level(primary.quoted)
    if q:
        add("good_fraction", "quoted", q["diff"], q["lo"], q["hi"],
            note=("the level the verdict quotes ("
                  + ("its direction's evidence: the rejecting level with the largest |z|"
                     if primary.outcome in ("easier", "harder") else "no direction: the declared δ")
                  + f"): δ={q['delta']:.4g}, threshold {q['threshold']:.4g}; simultaneous interval"))
    add("good_fraction", "p_value", primary.p_value,
        note="PRIMARY: max-statistic test over all quality levels, arms swapped "
             + ("within pairs" if primary.paired else "between trials")
             + (" (every swap enumerated)" if primary.exact else " (Monte Carlo)"))
    add("good_fraction", "equivalence", x.margin, primary.eq_lo, primary.eq_hi,
        note="margin; interval: 90% at the declared δ (equivalence needs every level inside the margin)")
    add("good_fraction", "trials_needed", primary.trials_needed,
        note=_trials_needed_note(primary))
    for _, lv in primary.levels.iterrows():
        add("quality_level", f"δ={lv['delta']:.4g}", lv["diff"], lv["lo"], lv["hi"],
            note=f"{lv['kind']}; threshold {lv['threshold']:.4g}; good {int(lv['k_t'])}/{int(lv['n_t'])} vs "
                 f"{int(lv['k_r'])}/{int(lv['n_r'])}; z = {lv['z']:+.2f}; adjusted p = {lv['p_adj']:.4g}")
    secondary: list[int] = []
    if x.pairs is not None:
        d = x.pairs["d"].to_numpy(float)
        W, p = wilcoxon_test(d)
        hl, lo, hi = hodges_lehmann(d)
        add("wilcoxon", "n_pairs", d.size, note="configs COMPLETE in both arms")
        add("wilcoxon", "statistic", W, note="Wilcoxon signed-rank W (zero differences dropped)")
        secondary.append(len(test_rows))
        add("wilcoxon", "p_value", p, note="two-sided, secondary")
        add("wilcoxon", "win_rate", np.mean(d > 0), note=f"share of configs where {treat} scores higher")
        add("wilcoxon", "tie_rate", np.mean(d == 0), note="share of configs with equal scores")
        add("wilcoxon", "loss_rate", np.mean(d < 0), note=f"share of configs where {ref} scores higher")
        add("wilcoxon", "median_d", hl, lo, hi,
            note=f"Hodges-Lehmann shift of s({treat}) - s({ref}); interval: the shifts the Wilcoxon test accepts")
    else:
        a, b = x.scores[treat], x.scores[ref]
        U, p = mann_whitney(a, b)
        lo, hi = bootstrap_ci(_diff_of_medians, a, b, n_boot=x.n_boot, seed=x.seed, tag="median_diff")
        add("mann_whitney", "n_on", a.size)
        add("mann_whitney", "n_off", b.size)
        add("mann_whitney", "statistic", U, note=f"Mann-Whitney U of {treat}")
        secondary.append(len(test_rows))
        add("mann_whitney", "p_value", p, note="two-sided, secondary")
        add("mann_whitney", "prob_on_better", U / (a.size * b.size) if a.size and b.size else math.nan,
            note=f"P({treat} > {ref}) + P(tie)/2 = U / (n_{treat} n_{ref})")
        add("mann_whitney", "median_diff", np.median(a) - np.median(b) if a.size and b.size else math.nan, lo, hi,
            note=f"median({treat}) - median({ref}), bootstrap CI (descriptive)")
    add("divergence_rate", "diff", div_end.diff, div_end.lo, div_end.hi,
        note="score interval at the critical value of its own exact test")
    secondary.append(len(test_rows))
    add("divergence_rate", "p_value", div_end.p_value, note="two-sided, secondary")
    if fail_end is not None:
        add("failed_rate", "diff", fail_end.diff, fail_end.lo, fail_end.hi,
            note=f"score below {x.fail_cutoff:.4g}: within 2 SE of the constant predictor's {x.baseline:.4g}")
        secondary.append(len(test_rows))
        add("failed_rate", "p_value", fail_end.p_value, note="two-sided, secondary")
    adjusted = holm([test_rows[i]["value"] for i in secondary])
    for i, adj in sorted(zip(secondary, adjusted), reverse=True):
        test_rows.insert(i + 1, {"test": test_rows[i]["test"], "quantity": "p_holm", "value": float(adj),
                                 "lo": math.nan, "hi": math.nan,
                                 "note": f"Holm-adjusted over the {len(secondary)} secondary tests"})
    return pd.DataFrame(test_rows, columns=[*TABLE_KEYS["tests"], *_VALUE_COLS, "note"])


def _tolerance_profile_table(primary: PrimaryResult, arms: tuple[str, str]) -> pd.DataFrame:
    """The good fraction at every quality level of the primary analysis: per arm with its
    Clopper-Pearson interval, and the difference with the simultaneous interval of the test."""
    prof_rows = []
    for _, lv in primary.levels.iterrows():
        for a, k, n in ((arms[0], lv["k_t"], lv["n_t"]), (arms[1], lv["k_r"], lv["n_r"])):
            g = proportion(np.arange(int(n)) < int(k))
            prof_rows.append({"delta": lv["delta"], "arm": a, "value": g["value"], "lo": g["lo"], "hi": g["hi"]})
        prof_rows.append({"delta": lv["delta"], "arm": DELTA, "value": lv["diff"], "lo": lv["lo"], "hi": lv["hi"]})
    return pd.DataFrame(prof_rows, columns=["delta", "arm", *_VALUE_COLS])


def _heterogeneity_table(x: _Inputs, notes: list[str]) -> pd.DataFrame:
    """Paired only: it needs the per-configuration difference."""
    kinds = {p: _is_categorical(x.distributions[p]) for p in x.params}
    het = heterogeneity_table(x.pairs, kinds) if x.pairs is not None else \
        pd.DataFrame(columns=[*TABLE_KEYS["heterogeneity"], *_VALUE_COLS])
    if x.pairs is None and all(len(t) for t in x.trials.values()):
        notes.append("where-it-differs tables need the paired design (per-configuration differences)")
    return het


def _primary_dict(primary: PrimaryResult, margin: float) -> dict:
    focus = primary.level(primary.focus)
    return {"paired": primary.paired, "n_on": primary.n_on, "n_off": primary.n_off,
            "k_on": primary.k_on, "k_off": primary.k_off, "diff": primary.diff,
            "lo": primary.lo, "hi": primary.hi, "p_value": primary.p_value,
            "eq_lo": primary.eq_lo, "eq_hi": primary.eq_hi, "margin": margin,
            "trials_needed": primary.trials_needed, "settles": primary.settles, "reason": primary.reason,
            "critical": primary.critical, "n_levels": primary.n_levels, "exact": primary.exact,
            "only_on": primary.discordant[0], "only_off": primary.discordant[1],
            "near_constant": primary.near_constant,
            **{f"focus_{k}": (v if isinstance(v, str) else float(v)) for k, v in focus.items()},
            **{f"quoted_{k}": (v if isinstance(v, str) else float(v))
               for k, v in primary.level(primary.quoted).items()}}


TRIAL_BUDGET_FRACTIONS = (0.25, 0.5, 1.0)
TOP_QUARTER = 0.75  # the pooled quantile whose level does not chase s*: the top 25% of all scores


def _trial_budget_table(df: pd.DataFrame, x: _Inputs, *, tolerance: float | None, n_val: int | None,
                        class_counts=None, metric: str = "accuracy") -> pd.DataFrame:
    """The primary analysis re-run on the first n configurations (paired: by configuration index,
    the sampling order; unpaired: each arm's first n trials), every step as `summarize` does it: s*
    and a noise-derived δ are recomputed, the reference left out, the floor applied. s* rises with
    n and δ follows it, so the declared-δ difference is specific to the budget; the difference at
    the pooled top-25% level is shown beside it because its threshold converges instead of rising."""
    cols = [*TABLE_KEYS["trial_budget"], *_VALUE_COLS]
    treat, ref = x.arms
    if x.sampler in ADAPTIVE_SAMPLERS:
        return pd.DataFrame(columns=cols)
    if x.pairs is not None:
        order = np.sort(x.pairs["config_index"].to_numpy(int))
    else:
        order = None
    full = len(order) if order is not None else min(len(x.trials[treat]), len(x.trials[ref]))
    ns = sorted({int(round(f * full)) for f in TRIAL_BUDGET_FRACTIONS if round(f * full) >= 4 * MIN_TRIALS_TO_TELL}
                | ({full} if full else set()))
    rows: list[dict] = []

    def add(n, quantity, arm, value, lo=math.nan, hi=math.nan):
        rows.append({"n": n, "quantity": quantity, "arm": arm, "value": float(value), "lo": lo, "hi": hi})

    for n in ns:
        if order is not None:
            keep_cfg = set(order[:n].tolist())
            ci = _floats(df["config_index"]) if "config_index" in df else np.full(len(df), np.nan)
            sub = df[np.isin(ci, list(keep_cfg))]
        else:
            parts = [complete_trials(df, a).sort_values("number").head(n) for a in (treat, ref)]
            sub = pd.concat(parts, ignore_index=True)
        y = _inputs(sub, distributions=x.distributions, tolerance=tolerance, paired=x.pairs is not None,
                    sampler=x.sampler, task=x.task, seed=x.seed, n_boot=x.n_boot, arms=x.arms, n_val=n_val,
                    baseline=x.baseline, margin=x.margin, notes=[], class_counts=class_counts, metric=metric)
        res = y.primary()
        add(n, "s_star", "*", y.s_star)
        add(n, "tolerance", "*", y.tolerance)
        add(n, "declared", DELTA, res.diff, res.lo, res.hi)
        add(n, "direction", DELTA, {"easier": 1, "harder": -1}.get(res.outcome, 0))
        add(n, "p_value", DELTA, res.p_value)
        q = res.level(res.quoted)
        if q:
            add(n, "quoted", DELTA, q["diff"], q["lo"], q["hi"])
            add(n, "quoted_threshold", "*", q["threshold"])
        t, r = y.compared_scores()
        pooled = np.concatenate([t, r])
        if pooled.size and not res.levels.empty:
            d25 = round(y.s_star - float(np.quantile(pooled, TOP_QUARTER, method="lower")), 12)
            hit = res.levels[np.isclose(res.levels["delta"], d25, atol=1e-12)]
            if len(hit):
                h = hit.iloc[0]
                add(n, "top25", DELTA, h["diff"], h["lo"], h["hi"])
                add(n, "top25_threshold", "*", h["threshold"])
    return pd.DataFrame(rows, columns=cols)


def interval_notes(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """Why an interval is a single value or ends at its estimate, wherever one does: the report never
    prints such an interval without its reason."""
    single, edge = [], []
    for name, t in tables.items():
        if t.empty or not {"value", "lo", "hi"} <= set(t.columns):
            continue
        v, lo, hi = (pd.to_numeric(t[c], errors="coerce").to_numpy(float) for c in ("value", "lo", "hi"))
        ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(v)
        label = t["metric"] if "metric" in t else t["quantity"] if "quantity" in t else pd.Series([name] * len(t))
        for i in np.flatnonzero(ok & (lo == hi)):
            single.append(str(label.iloc[i]))
        for i in np.flatnonzero(ok & (lo != hi) & ((v == lo) | (v == hi))):
            edge.append(str(label.iloc[i]))
    notes = []
    if single:
        notes.append("an interval that is a single value (" + ", ".join(sorted(set(single))) + ") means every "
                     "resample or every shift the test accepts gives that value: no learning-rate window in any "
                     "resample, or paired differences mostly tied")
    if edge:
        notes.append("an interval ending at its estimate (" + ", ".join(sorted(set(edge))) + ") sits at a bound "
                     "the quantity cannot pass: a share of 0% or 100%, a difference of ±100%, a learning-rate "
                     "window of 0 decades, or a curve at its best possible score")
    return notes


def _trials_needed_note(primary) -> str:
    """What the trials_needed row holds: a count and what it would show, or why there is none (a bare
    "to show n/a" read as garbled)."""
    if np.isfinite(primary.trials_needed):
        return f"per arm: exact power 80% of this test, to show {primary.settles}"
    if primary.settles:
        return f"none: {primary.settles}"
    if primary.outcome in ("easier", "harder", "equivalent"):
        return "none: this search already answers the question"
    return f"none: {primary.reason}" if primary.reason else "none"


def summarize(df: pd.DataFrame, *, distributions: Mapping, tolerance: float | None, paired: bool, sampler: str,
              task: str, seed: int = 0, n_boot: int = N_BOOT, evaluator=None, arms: tuple[str, str] = ARMS,
              n_val: int | None = None, baseline: float | None = None, reference: Mapping | None = None,
              margin: float = EQUIVALENCE_MARGIN, class_counts=None, metric: str = "accuracy",
              detail: bool = True) -> Comparison:
    """All metrics of docs/design.md (Analysis) for one comparison (treatment arm vs reference arm).

    arms: (treatment, reference) labels in df["arm"]. tolerance: delta, or None to derive it from the
    validation noise of the best score (needs n_val). baseline: validation score of the majority-class /
    constant predictor (for the failed-to-train rate). reference: {"model", "val_score", "test_score"}
    of a simple model on the same split, shown for context. detail=False leaves out the importance and
    trial-budget tables (empty; the verdict then has no budget sentence): only an experiment's own report
    shows them, and they are a third of the time a panel spends summarizing its data sets.
    """
    arms = tuple(arms)
    notes: list[str] = []  # each builder appends its own, in table order
    x = _inputs(df, distributions=distributions, tolerance=tolerance, paired=paired, sampler=sampler, task=task,
                seed=seed, n_boot=n_boot, arms=arms, n_val=n_val, baseline=baseline, margin=margin, notes=notes,
                class_counts=class_counts, metric=metric)
    ends = _Endpoints(primary=x.primary(), diverged=x.rate(x.diverged, "diverged"),
                      failed=x.rate(x.failed, "failed") if x.has_baseline else None)
    notes += ends.primary.notes
    if ends.primary.near_constant and task == "classification" and metric != "balanced_accuracy":
        ends.primary.reason += "; for imbalanced classes set metric = \"balanced_accuracy\" in [data]"
    metrics = _metrics_table(x, ends, notes)
    curves = _curves_table(x, notes)
    importance = (_importance_table(x, evaluator, notes) if detail else
                  _with_delta(pd.DataFrame([], columns=["param", "arm", *_VALUE_COLS]), TABLE_KEYS["importance"],
                              arms=x.arms))
    sensitivity = _sensitivity_table(x)
    tests = _tests_table(x, ends)
    profile = _tolerance_profile_table(ends.primary, x.arms)
    het = _heterogeneity_table(x, notes)
    trial_budget = _trial_budget_table(df, x, tolerance=tolerance, n_val=n_val, class_counts=class_counts,
                                       metric=metric) if detail else None
    notes += hardware_notes(df[df["arm"].astype(str).isin(arms)] if len(df) else df)
    notes += interval_notes({"metrics": metrics, "tests": tests, "profile": profile, "curves": curves,
                             "heterogeneity": het})

    context = {"n_val": n_val, "baseline": baseline, "metric": metric if task == "classification" else "r2",
               "fail_cutoff": x.fail_cutoff}
    if reference:
        context.update({f"reference_{k}": v for k, v in reference.items()})
    experiment = str(df["experiment"].iloc[0]) if len(df) and "experiment" in df else ""
    summary = Comparison(experiment=experiment, task=task, sampler=sampler, paired=x.pairs is not None,
                      tolerance=x.tolerance, s_star=x.s_star, params=x.params, metrics=metrics, curves=curves,
                      importance=importance, sensitivity=sensitivity, tests=tests, profile=profile,
                      heterogeneity=het, trial_budget=trial_budget, arms=arms, context=context, tolerance_source=x.tolerance_source,
                      notes=notes, outcome=ends.primary.outcome, primary=_primary_dict(ends.primary, margin))
    summary.verdict = verdict(summary)
    return summary


# ----------------------------------------------------------------------------- adaptive samplers

def attach_adaptive(summary, dfs: Sequence[pd.DataFrame], *, budget: int | None = None, seed: int = 0,
                    sampler_settings: Mapping | None = None, n_boot: int = N_BOOT,
                    random_df: pd.DataFrame | None = None, random_source: str = "") -> AdaptiveResult:
    """Analyse the repeats of an adaptive experiment (one trials DataFrame per repeat) for the
    summary's arms and make it the summary's primary outcome: `summary.adaptive`, its outcome and
    verdict. The good-fraction rows stay in the tables, marked descriptive: adaptive draws are not
    independent, so their tests do not hold. random_df: the trials of a random search of the same
    space (random_source names it), for the sampler's speed-up over random per arm."""
    from .common import complete_trials
    from .survival import analyse_adaptive, outcome_word, settings_text, speedup_over_random

    res = analyse_adaptive(dfs, tuple(summary.arms), sampler=summary.sampler, task=summary.task, budget=budget,
                           seed=seed, sampler_settings=sampler_settings, n_boot=n_boot)
    if random_df is not None and len(random_df):
        scores = {a: complete_trials(random_df, a)["score"].to_numpy(float) for a in res.arms}
        if all(v.size for v in scores.values()):
            res.speedup, res.speedup_source = speedup_over_random(res, scores), random_source
    summary.adaptive = res
    summary.outcome = outcome_word(res)
    tests = summary.tests
    if not tests.empty and "note" in tests.columns:
        gf = tests["test"].isin(["good_fraction", "quality_level"])
        tests.loc[gf, "note"] = ("descriptive only: " + summary.sampler.upper() + " draws are not independent, so "
                                 "this test does not hold; " + tests.loc[gf, "note"].astype(str)
                                 .str.replace(r"PRIMARY[^:]*: ", "", regex=True))
    summary.notes = [*summary.notes,
                     f"primary outcome for {summary.sampler}: trials to a target of {res.target:.4g} (the "
                     f"{100 * res.quantile:.0f}th percentile of all {res.n_pooled} trials of both arms and every "
                     "repeat) per repeat, paired by repeat: exact sign-flip test and the interval inverting it; good "
                     "fractions are descriptive only"]
    if res.sampler_settings:
        summary.notes.append(f"sampler: {settings_text(res.sampler_settings)}")
    summary.verdict = verdict(summary)
    return res
