"""The verdict: plain sentences built from the numbers of a `Comparison`, conclusion first.

The first sentences state the outcome of the primary analysis (docs/design.md, Primary analysis) with
the numbers it rests on, all from one population: easier, harder, no practical difference, or cannot
tell with the reason and, where more trials can settle it, how many. Nothing later in the verdict claims a direction its own test does not support:
secondary findings are named only when their Holm-adjusted p is below 0.05.
"""

from __future__ import annotations

import math

import numpy as np
from .common import ADAPTIVE_SAMPLERS, CONFIDENCE, MIN_TRIALS_TO_TELL, Comparison, arm_label, arm_phrases, signed_text
from .heterogeneity import crossovers

ALPHA = 1 - CONFIDENCE


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{100 * x:.0f}%"


def _pts(x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    # whole points, but a value within half a point of 0 keeps its sign and a decimal (never "-0" or a
    # "+0" lower end beside a test that does not reject)
    r = int(round(100 * x))
    if r == 0:  # an interval end that touches 0 prints as 0, not as a signed +0.0 that reads as excluding it
        return "0" if abs(100 * x) < 0.05 else f"{100 * x:+.1f}"
    return f"{r:+d}"


def _score_diff(x: float, task: str, unit: bool = True) -> str:
    # Accuracy differences read naturally in points; R² only in its own units.
    if not np.isfinite(x):
        return "n/a"
    if task == "classification":
        return signed_text(100 * x) + (" pts" if unit else "")
    return signed_text(x, 3)


def _tol_text(tol: float, task: str, metric: str | None = None, objective: str | None = None) -> str:
    if objective:  # studies bnsearch did not write: the objective's own name
        return f"within {tol:.3g} of the best {objective}"
    if task == "classification":
        pts = f"{100 * tol:.3g}"
        what = "balanced accuracy" if metric == "balanced_accuracy" else "accuracy"
        return f"within {pts} pt{'' if pts == '1' else 's'} of the best {what}"
    return f"within {tol:.3g} of the best validation score"


def _tol(s: Comparison) -> str:
    return _tol_text(s.tolerance, s.task, s.context.get("metric"), s.context.get("objective"))


def _num(x: float, decimals: int = 3) -> str:
    """A score in a sentence, never "-0.000"."""
    return signed_text(x, decimals).lstrip("+")


def threshold_text(s: Comparison, threshold: float, short: bool = False) -> str:
    """"a score of at least 0.950" ("a score ≥ 0.950" when short). For studies bnsearch did not write
    the context names the objective and its sign (-1: minimized, the scores are its negative), so a
    loss reads "a val_loss of at most 0.250" in its own units."""
    name, sign = s.context.get("objective"), s.context.get("sign") or 1
    if not name:
        return f"a score {'≥' if short else 'of at least'} {_num(threshold)}"
    op = ("≥" if sign > 0 else "≤") if short else ("at least" if sign > 0 else "at most")
    value = _num(sign * threshold)
    if short:
        return f"{name} {op} {value}"
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name} of {op} {value}"


def ttt_text(value: float, lo: float, hi: float, ci: str = "95% CI") -> str:
    """Trials to target with its interval; 'more than X' when no good trial was seen."""
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return f"more than {lo:.0f} trials (95%)" if np.isfinite(lo) else "n/a"
    if not np.isfinite(lo):
        return f"{value:.1f} trials"
    return f"{value:.1f} trials ({ci} {lo:.1f} to {hi:.1f})" if np.isfinite(hi) else \
        f"{value:.1f} trials ({ci} {lo:.1f} or more)"


def _p(p: float) -> str:
    return "p n/a" if not np.isfinite(p) else ("p < 0.001" if p < 0.001 else f"p = {p:.3f}")


def _holm(s: Comparison, test: str) -> float:
    return s.test(test, "p_holm")[0]


def _ci_name(s: Comparison) -> str:
    return "95% interval across repeats" if s.n_repeats > 1 else "95% CI"


def _level_text(s: Comparison, delta: float, threshold: float, kind: str) -> str:
    cls = s.task == "classification"
    near = (f"within {100 * delta:.3g} pts of the best" if cls else f"within {delta:.3g} of the best")
    if kind.startswith("top"):
        return f"{threshold_text(s, threshold)} ({near}; the {kind} of all scores)"
    return f"{threshold_text(s, threshold)} ({near})"


def _evidence(s: Comparison, w: dict, unit: str) -> str:
    """The quality level a directional claim rests on (the rejecting level with the largest |z|), its
    shares and its simultaneous interval, which excludes 0 by construction."""
    pr = s.primary
    n_t, n_r = max(int(pr.get("quoted_n_t", 0)), 1), max(int(pr.get("quoted_n_r", 0)), 1)
    g_t, g_r = pr.get("quoted_k_t", 0) / n_t, pr.get("quoted_k_r", 0) / n_r
    cls = s.task == "classification"
    if pr.get("quoted_kind") == "declared":
        where = _tol(s) + " (the declared δ)"
    else:
        near = (f"within {100 * pr['quoted_delta']:.3g} pts of the best" if cls
                else f"within {pr['quoted_delta']:.3g} of the best")
        kind = f"; the {pr['quoted_kind']} of all scores" if str(pr["quoted_kind"]).startswith("top") else ""
        where = (f"{threshold_text(s, pr['quoted_threshold'])} ({near}{kind}; the quality level where the "
                 "arms differ most)")
    whom = (f"of the {n_t} configurations run in both arms" if pr.get("paired")
            else f"of {n_t} and {n_r} completed trials")
    return (f"{whom} (the one that set the best score left out), {_pct(g_t)} reach {where} {w['with_t']} and "
            f"{_pct(g_r)} {w['with_r']}: {_pts(pr['quoted_diff'])}{unit} (95% CI {_pts(pr['quoted_lo'])} to "
            f"{_pts(pr['quoted_hi'])}, simultaneous over {pr.get('n_levels', 0)} quality levels from the best score "
            f"down to the median; test over all of them {_p(pr.get('p_value', math.nan))})")


def _primary_sentences(s: Comparison, w: dict, n_on: float, n_off: float) -> list[str]:
    """The outcome of the primary analysis with the numbers it rests on, then what would settle it."""
    repeats = s.n_repeats > 1
    pr = s.primary
    d, lo, hi = pr.get("diff", math.nan), pr.get("lo", math.nan), pr.get("hi", math.nan)
    margin = pr.get("margin", math.nan)
    unit = " pts" if s.task == "classification" else " percentage points"
    few = min(n_on, n_off) < MIN_TRIALS_TO_TELL
    outcome = "cannot tell" if few else (s.outcome or "cannot tell")
    if repeats:
        g_on, g_off = s.metric("good_fraction", s.arms[0])[0], s.metric("good_fraction", s.arms[1])[0]
        how = ("one test over all repeats, McNemar stratified by repeat" if pr.get("test") == "stratified"
               else "one test over all repeats, a t-test of the repeats' differences")
        rates = (f"on average {_pct(g_on)} of configurations reach {_tol(s)} {w['with_t']}, "
                 f"{_pct(g_off)} {w['with_r']} (difference {_pts(d)}{unit}, 95% CI {_pts(lo)} to {_pts(hi)}; {how}, "
                 f"{_p(pr.get('p_value', math.nan))})")
        head = {"easier": f"Over {s.n_repeats} repeats the search was easier {w['with_t']} than {w['with_r']}",
                "harder": f"Over {s.n_repeats} repeats the search was harder {w['with_t']} than {w['with_r']}",
                "equivalent": f"Over {s.n_repeats} repeats: no practical difference {w['with_t']} or {w['with_r']}",
                }.get(outcome, f"Over {s.n_repeats} repeats the data cannot tell whether the search is easier "
                               f"{w['with_t']} than {w['with_r']}")
        out = [f"{head}: {rates}."]
        if outcome == "cannot tell":
            out.append("More repeats or more trials per repeat would narrow the interval.")
        return out

    paired = pr.get("paired")
    n_t, n_r = int(pr.get("n_on", 0)), int(pr.get("n_off", 0))
    k_t, k_r = int(pr.get("k_on", 0)), int(pr.get("k_off", 0))
    pop = (f"Of the {n_t} configurations run in both arms (the one that set the best score left out), "
           if paired else f"Of {n_t} and {n_r} completed trials (the one that set the best score left out), ")
    declared = (f"{k_t} ({_pct(k_t / n_t if n_t else math.nan)}) reach {_tol(s)} "
                f"{w['with_t']} and {k_r} ({_pct(k_r / n_r if n_r else math.nan)}) {w['with_r']}: "
                f"difference {_pts(d)}{unit} (95% CI {_pts(lo)} to {_pts(hi)})")
    rates = pop + declared
    n_levels = pr.get("n_levels", 0)
    test = (f"test over {n_levels} quality levels from the best score down to the median, "
            f"{_p(pr.get('p_value', math.nan))}")
    focus = ""
    if pr.get("focus_kind") and pr.get("focus_kind") != "declared" and pr.get("focus_z", 0) != 0:
        ft, fr = pr.get("focus_k_t", 0) / max(pr.get("focus_n_t", 1), 1), pr.get("focus_k_r", 0) / max(pr.get("focus_n_r", 1), 1)
        focus = (f" The arms differ most at {_level_text(s, pr['focus_delta'], pr['focus_threshold'], pr['focus_kind'])}: "
                 f"{_pct(ft)} vs {_pct(fr)}, {_pts(pr['focus_diff'])}{unit} "
                 f"(95% CI {_pts(pr['focus_lo'])} to {_pts(pr['focus_hi'])}).")
    reason = pr.get("reason", "")
    if outcome in ("easier", "harder"):
        small = (f", but by less than the practical margin of ±{100 * margin:.0f}{unit} at every quality level"
                 if reason == "by less than the practical margin" else "")
        first = f"The search was {outcome} {w['with_t']} than {w['with_r']}{small}: {_evidence(s, w, unit)}"
        if pr.get("quoted_kind") == "declared":
            first += "."
        else:
            alone = ", not significant at this level on its own" if np.isfinite(lo) and lo <= 0 <= hi else ""
            first += (f". At the declared δ ({_tol(s)}): "
                      f"{k_t} ({_pct(k_t / n_t if n_t else math.nan)}) {w['with_t']} and "
                      f"{k_r} ({_pct(k_r / n_r if n_r else math.nan)}) {w['with_r']}, {_pts(d)}{unit} "
                      f"(95% CI {_pts(lo)} to {_pts(hi)}{alone}).")
    elif outcome == "equivalent":
        first = (f"No practical difference {w['with_t']} or {w['with_r']}: at every one of the {n_levels} "
                 f"quality levels the 90% interval of the difference lies within ±{100 * margin:.0f}{unit}, and the "
                 f"tuning curves stay within δ of each other ({test}). {rates}.")
    else:
        why = f": {reason}" if reason and not few else ""
        first = (f"The data cannot tell whether the search is easier {w['with_t']} than {w['with_r']} ({test}){why}."
                 + (f" {rates}.{focus}" if np.isfinite(d) else ""))
    sentences = [first]
    if outcome == "cannot tell":
        if few:
            sentences.append(f"With only {n_on:.0f} and {n_off:.0f} completed trials nothing can be "
                             f"concluded; run at least {MIN_TRIALS_TO_TELL} per arm.")
        else:
            need, settles = pr.get("trials_needed", math.nan), pr.get("settles", "")
            if need is not None and np.isfinite(need):
                sentences.append(f"About {need:.0f} {'configurations' if paired else 'trials'} per arm would give this "
                                 f"test 80% power to show {settles}: rerun with --trials {need:.0f}.")
            elif settles:
                sentences.append(settles[0].upper() + settles[1:] + ".")
    return sentences


def _trial_budget_sentence(s: Comparison) -> str | None:
    """How the headline moves with the number of configurations: s* rises with the budget and the
    declared level with it, so its difference is specific to this budget; the pooled top-25% level
    converges instead."""
    tb = s.trial_budget
    if s.n_repeats > 1 or tb is None or tb.empty or tb["n"].nunique() < 2:
        return None
    ns = sorted(int(n) for n in tb["n"].unique())

    def series(quantity: str) -> list[str]:
        out = []
        for n in ns:
            v = tb[(tb["n"] == n) & (tb["quantity"] == quantity)]["value"]
            out.append(_pts(float(v.iloc[0])) if len(v) else "n/a")
        return out

    def listing(xs: list[str]) -> str:
        return ", ".join(xs[:-1]) + " and " + xs[-1]

    unit = " pts" if s.task == "classification" else " percentage points"
    text = (f"The good fractions are specific to this budget (s* rises with more trials, and δ's level with it): "
            f"on the first {listing([str(n) for n in ns])} configurations the difference at the declared δ is "
            f"{listing(series('declared'))}{unit}")
    top = series("top25")
    if any(x != "n/a" for x in top):
        text += f", and at the level the top 25% of all scores reach, which does not chase s*, {listing(top)}{unit}"
    return text + " (trial_budget.csv)."


def _trials_to_target_sentence(s: Comparison, w: dict) -> str:
    treat, ref = s.arms
    ci_name = _ci_name(s)
    t_on, t_off = s.metric("trials_to_target", treat), s.metric("trials_to_target", ref)
    search = ("A random search" if s.sampler not in ADAPTIVE_SAMPLERS
              else f"Drawing at random from the {s.sampler.upper()} trials, one")
    return (f"{search} needs {ttt_text(*t_on, ci=ci_name)} to get there {w['with_t']}, "
            f"{ttt_text(*t_off, ci=ci_name)} {w['with_r']}.")


def _failure_sentence(s: Comparison, w: dict) -> str | None:
    """Divergence and failed-to-train rates, only when some run diverged or failed."""
    treat, ref = s.arms
    div_on, div_off = s.metric("divergence_rate", treat)[0], s.metric("divergence_rate", ref)[0]
    fail_on, fail_off = s.metric("failed_rate", treat)[0], s.metric("failed_rate", ref)[0]
    parts = []
    if (div_on or 0) > 0 or (div_off or 0) > 0:
        how = s.context.get("failures") or "diverged"  # foreign studies: failed or pruned trials
        parts.append(f"{_pct(div_on)} of runs {how} {w['with_t']}, {_pct(div_off)} {w['with_r']}")
    if np.isfinite(fail_on) and np.isfinite(fail_off) and (fail_on > 0 or fail_off > 0):
        parts.append(f"{_pct(fail_on)} and {_pct(fail_off)} failed to train (no better than a constant predictor)")
    if parts:
        return "; ".join(parts)[0].upper() + "; ".join(parts)[1:] + "."
    return None


def _secondary_sentence(s: Comparison, w: dict) -> str | None:
    """Typical configurations, only when Holm-significant."""
    treat, ref = s.arms
    repeats = s.n_repeats > 1
    ci_name = _ci_name(s)
    if s.paired:
        md, md_lo, md_hi = s.test("wilcoxon", "median_d")
        p_adj = _holm(s, "wilcoxon")
        clear = (repeats and np.isfinite(md_lo) and (md_lo > 0 or md_hi < 0)) or (np.isfinite(p_adj) and p_adj < ALPHA)
        if clear and md != 0:
            win, tie, loss = (s.test("wilcoxon", q)[0] for q in ("win_rate", "tie_rate", "loss_rate"))
            higher, lower = "higher", "lower"
            if (s.context.get("sign") or 1) < 0:  # a minimized objective: its own units, where lower is better
                md, md_lo, md_hi, higher, lower = -md, -md_hi, -md_lo, "lower", "higher"
            # The ties and losses beside the wins: "higher in 49%" next to "easier" read as a coin toss
            # when 30% of the pairs were tied and only 21% went the other way.
            rest = (f", the same in {_pct(tie)} and {lower} in {_pct(loss)}"
                    if np.isfinite(tie) and np.isfinite(loss) else "")
            band = f", {ci_name} {_score_diff(md_lo, s.task, False)} to {_score_diff(md_hi, s.task)}" \
                if np.isfinite(md_lo) else ""
            if np.isfinite(md_lo) and md_lo == md_hi:
                band += ", a single value because most differences are tied"
            ptext = "" if repeats else f"; Wilcoxon Holm-adjusted {_p(p_adj)}, a secondary test"
            what = "mean shift" if repeats else "Hodges-Lehmann shift"
            return (f"Configuration by configuration, {w['t']} scores {higher} in {_pct(win)} of the pairs{rest} "
                    f"({what} {_score_diff(md, s.task)}{band}{ptext}).")
    else:
        p_adj = _holm(s, "mann_whitney")
        prob = s.test("mann_whitney", "prob_on_better")[0]
        if np.isfinite(p_adj) and p_adj < ALPHA and not repeats:
            return (f"A random {treat} trial beats a random {ref} trial {_pct(prob)} of the time "
                    f"(Mann-Whitney Holm-adjusted {_p(p_adj)}, a secondary test).")
    return None


def _crossover_sentences(s: Comparison, w: dict) -> list[str]:
    if s.n_repeats > 1 or s.heterogeneity.empty:
        return []
    return [f"It depends on {c['factor']}: {w['t']} helps at {', '.join(c['helps'])} and hurts at "
            f"{', '.join(c['hurts'])} (sign tests, Holm-adjusted p < 0.05)." for c in crossovers(s.heterogeneity)]


def verdict(s: Comparison) -> str:
    """Plain sentences from the numbers, conclusion first; says so when the data cannot tell."""
    treat, ref = s.arms
    w = arm_phrases(s.arms)
    n_on, n_off = s.metric("n_complete", treat)[0], s.metric("n_complete", ref)[0]
    n_on, n_off = (0 if np.isnan(x) else x for x in (n_on, n_off))
    if n_on == 0 or n_off == 0:
        missing = [arm_label(a) for a, n in zip(s.arms, (n_on, n_off)) if n == 0]
        who = f"{missing[0]} has no" if len(missing) == 1 else "Neither arm has any"
        return (f"{who} completed trials, so the arms cannot be compared: "
                f"the data cannot tell whether the search is easier {w['with_t']} than {w['with_r']}.")
    if s.sampler in ADAPTIVE_SAMPLERS:  # repeats' trials-to-target, never the i.i.d. good-fraction tests
        from .survival import adaptive_sentences

        return " ".join(x for x in [*adaptive_sentences(s.adaptive, w, sampler=s.sampler, task=s.task,
                                                         n_repeats=s.n_repeats),
                                    _failure_sentence(s, w), "These conclusions hold for this search space."]
                        if x is not None)
    sentences = [*_primary_sentences(s, w, n_on, n_off), _trials_to_target_sentence(s, w), _trial_budget_sentence(s),
                 _failure_sentence(s, w), _secondary_sentence(s, w), *_crossover_sentences(s, w),
                 "These conclusions hold for this search space."]
    return " ".join(x for x in sentences if x is not None)
