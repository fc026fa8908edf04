"""The verdict: two to four plain sentences built from the numbers of a `Summary`."""

from __future__ import annotations

import math

import numpy as np

from .common import ADAPTIVE_SAMPLERS, ARM_LABELS, ARMS, DELTA, MIN_TRIALS_TO_TELL, Summary

def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _pts(x: float) -> str:
    return f"{100 * x:+.0f}"


def _score_diff(x: float, task: str, unit: bool = True) -> str:
    # Accuracy differences read naturally in points; R² / -RMSE only in their own units.
    if task == "classification":
        return f"{100 * x:+.1f}" + (" pts" if unit else "")
    return f"{x:+.3f}"


def _tol_text(tol: float, task: str) -> str:
    if task == "classification":
        pts = f"{100 * tol:g}"
        return f"within {pts} pt{'' if pts == '1' else 's'} of the best accuracy"
    return f"within {tol:g} of the best validation score"


def _ttt(x: float) -> str:
    return "never" if math.isinf(x) else ("n/a" if math.isnan(x) else f"{x:.1f}")


def _p(p: float) -> str:
    return "p n/a" if not np.isfinite(p) else ("p < 0.001" if p < 0.001 else f"p = {p:.3f}")


def verdict(s: Summary) -> str:
    """Two to four plain sentences from the numbers; says so when the data cannot tell."""
    n_on, n_off = s.metric("n_complete", "bn-on")[0], s.metric("n_complete", "bn-off")[0]
    n_on, n_off = (0 if np.isnan(x) else x for x in (n_on, n_off))
    repeats = s.n_repeats > 1
    prefix = f"Averaged over {s.n_repeats} repeats, w" if repeats else "W"
    count = (lambda x: f"{x:.0f}") if not repeats else (lambda x: f"{x:.1f}")
    if n_on == 0 or n_off == 0:
        missing = [ARM_LABELS[a] for a, n in zip(ARMS, (n_on, n_off)) if n == 0]
        who = f"{missing[0]} has no" if len(missing) == 1 else "Neither arm has any"
        return (f"{who} completed trials, so the arms cannot be compared: "
                f"the data cannot tell whether BN makes the search easier.")

    g_on, g_off = s.metric("good_fraction", "bn-on")[0], s.metric("good_fraction", "bn-off")[0]
    d, d_lo, d_hi = s.metric("good_fraction", DELTA)
    cls = s.task == "classification"
    unit = " pts" if cls else " percentage points"
    ci_name = "95% interval across repeats" if repeats else "95% CI"
    ci = f", {ci_name} {_pts(d_lo)}..{_pts(d_hi)}" if np.isfinite(d_lo) else ""
    sentences = [
        f"{prefix}ith BN {_pct(g_on)} of configurations reach {_tol_text(s.tolerance, s.task)} "
        f"(without: {_pct(g_off)}; difference {_pts(d)}{unit}{ci})."
    ]

    t_on, t_off = s.metric("trials_to_target", "bn-on")[0], s.metric("trials_to_target", "bn-off")[0]
    search = "A random search" if s.sampler not in ADAPTIVE_SAMPLERS else f"Drawing at random from the {s.sampler.upper()} trials, one"
    sentence = f"{search} needs {_ttt(t_on)} trials on average to get there (without: {_ttt(t_off)})"
    div_on, div_off = s.metric("divergence_rate", "bn-on")[0], s.metric("divergence_rate", "bn-off")[0]
    if (div_on or 0) > 0 or (div_off or 0) > 0:
        sentence += f"; {_pct(div_on)} of runs diverged with BN, {_pct(div_off)} without"
    sentences.append(sentence + ".")

    # Score-level test: per configuration when paired, otherwise the two score distributions.
    if s.paired:
        win = s.test("wilcoxon", "win_rate")[0]
        ties = s.test("wilcoxon", "tie_rate")[0]
        md, md_lo, md_hi = s.test("wilcoxon", "median_d")
        p_scores = s.test("wilcoxon", "p_value")[0]
        band = (f", {ci_name} {_score_diff(md_lo, s.task, unit=False)}..{_score_diff(md_hi, s.task)}"
                if np.isfinite(md_lo) else "")
        ptext = "" if repeats else f"; Wilcoxon {_p(p_scores)}"
        sentences.append(
            f"Configuration by configuration, BN scores higher in {_pct(win)} of the pairs "
            f"(ties {_pct(ties)}; median difference {_score_diff(md, s.task)}{band}{ptext}).")
    else:
        prob = s.test("mann_whitney", "prob_on_better")[0]
        p_scores = s.test("mann_whitney", "p_value")[0]
        ptext = "" if repeats else f" (Mann-Whitney {_p(p_scores)})"
        sentences.append(f"A random BN trial beats a random no-BN trial {_pct(prob)} of the time{ptext}.")
    # Whether typical scores differ clearly, apart from the share near the very best.
    if s.paired:
        scores_clear = np.isfinite(md_lo) and (md_lo > 0 or md_hi < 0) and (repeats or p_scores < 0.05)
        scores_better = md > 0
    else:
        scores_clear = not repeats and np.isfinite(p_scores) and p_scores < 0.05
        scores_better = prob > 0.5

    p_good = s.test("good_fraction", "p_value")[0]
    excludes_zero = np.isfinite(d_lo) and (d_lo > 0 or d_hi < 0)
    significant = repeats or (np.isfinite(p_good) and p_good < 0.05)
    few = min(n_on, n_off) < MIN_TRIALS_TO_TELL
    if few:
        sentences.append(
            f"With only {count(n_on)} and {count(n_off)} completed trials the data cannot tell whether BN makes "
            f"the search easier; run at least {MIN_TRIALS_TO_TELL} per arm.")
    elif excludes_zero and significant:
        easier = "easier" if d > 0 else "harder"
        why = "the interval across repeats excludes 0" if repeats else f"CI excludes 0, {_p(p_good)}"
        sentences.append(f"So BN clearly made the search {easier} here ({why}).")
    else:
        if repeats:
            why = "the interval across repeats includes 0" if np.isfinite(d_lo) else "the interval is undefined"
        else:
            why = ("the CI of the difference includes 0" if not excludes_zero else "the CI excludes 0 but the test does not agree") + f" ({_p(p_good)})"
        if scores_clear:
            # Typical configurations can differ clearly while the share within δ of the single best
            # score is too small to separate: say both, rather than a bare "cannot tell".
            sentences.append(
                f"Near the very best the data cannot separate the arms: {why}. But a typical configuration "
                f"does clearly {'better' if scores_better else 'worse'} with BN, so BN made the search "
                f"{'more' if scores_better else 'less'} forgiving here.")
        else:
            sentences.append(f"The data cannot tell whether BN makes the search easier: {why}.")
    return " ".join(sentences)

