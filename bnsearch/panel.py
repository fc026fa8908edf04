"""A panel: one search space and budget run as paired comparisons on several data sets, then pooled
(docs/design.md, Panel).

Each data set is an ordinary experiment `<panel>-<slug>` run by api.run_arms in the same storage
(resumable, the same workers), summarized by analysis.summarize like `compare` does. Pooling is a
pure function of one row per data set (`pool_panel`). The pooled effect is on a scale that means the
same on every data set, whatever its declared δ: the paired difference in the share of
configurations reaching the top quarter of that data set's scores (both arms pooled), with a
variance from Tango's score interval (honest with no discordant pair one way). It is pooled by
Paule-Mandel with Hartung-Knapp-Sidik-Jonkman intervals (DerSimonian-Laird as a sensitivity line),
with the prediction interval for a new data set, a Bayesian signed-rank test whose ROPE is the
per-data-set practical margin and which carries each data set's sampling uncertainty, and a
meta-regression on data-set traits. Each data set's own verdict is quoted with the interval that
justifies it, and data sets whose best model barely beats the constant predictor are marked.
Nothing here prints; the CLI renders.
"""

from __future__ import annotations

import copy
import math
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .analysis.common import signed_text
from .config import ConfigError, Settings, check_jobs, parse_config

if TYPE_CHECKING:
    import pandas as pd

    from .analysis.meta import MetaResult, SignedRank

ROPE = None  # the Bayesian test's ROPE; None: the verdicts' practical margin (primary.EQUIVALENCE_MARGIN)
TOP_QUANTILE = 0.75  # the pooled scale's level: the score that the top 25% of a data set's scores reach
N_DRAWS = 1000  # draws of every data set's effect for the Bayesian test (1000 x 50 Dirichlet samples: ~0.5 s)
ENTRY_KEYS = ("dataset", "name", "inputs", "path", "target", "task", "val_fraction", "test_fraction", "metric")
PANEL_KEYS = ("name", "datasets", "rope")
# Traits the effect is regressed on, with the label the report uses.
MODERATORS = {"log10_rows": "rows (log10)", "features": "features", "classes": "classes",
              "scale_spread": "feature-scale spread (log10 of max/min SD)", "raw_inputs": "raw inputs (1) vs standardized (0)"}


# --------------------------------------------------------------------------- the panel config

@dataclass(frozen=True)
class PanelEntry:
    slug: str  # the experiment is `<panel>-<slug>`
    settings: Settings

    @property
    def label(self) -> str:
        d = self.settings.data
        what = Path(d.path).name if d.dataset == "csv" and d.path else d.dataset
        return f"{what} ({'raw' if d.inputs == 'raw' else 'standardized'})"


@dataclass(frozen=True)
class Panel:
    name: str
    source: str
    rope: float | None  # None: the per-data-set practical margin
    entries: tuple[PanelEntry, ...]


def _read_toml(path: Path | str) -> dict:
    from .config import CONFIG_MAX_BYTES, parse_toml

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: panel config not found; pass an existing .toml file (e.g. configs/panel.toml)")
    try:
        if not stat.S_ISREG(p.stat().st_mode):
            raise ConfigError(f"{p}: is not a regular file; pass a .toml panel config")
        with p.open("rb") as f:
            data = f.read(CONFIG_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config ({exc.strerror or exc})") from None
    # The same bounds as an experiment config (config.CONFIG_MAX_BYTES says why).
    if len(data) > CONFIG_MAX_BYTES:
        raise ConfigError(f"{p}: is larger than {CONFIG_MAX_BYTES >> 10} KiB, too large for a config; "
                          "pass the .toml panel config")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    return parse_toml(text, str(p))


def _slug(entry: dict, default_inputs: str) -> str:
    if "name" in entry:
        return str(entry["name"])
    ds = entry["dataset"]
    base = Path(entry.get("path", "data")).stem if ds == "csv" else re.split(r"[/:]", ds)[-1]
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-.").lower() or "data"
    inputs = entry.get("inputs", default_inputs)
    return f"{base}-raw" if inputs == "raw" and default_inputs != "raw" else base


def parse_panel(doc: dict, src: str, *, trials: int | None = None, epochs: int | None = None,
                seed: int | None = None) -> Panel:
    """A panel from a parsed TOML document: a [panel] table (name, datasets, rope) and the usual
    experiment/data/search/train sections shared by every data set. Each entry of `datasets` is a
    data-set name or a table of data keys (dataset, inputs, path, target, ...; `name` sets the slug)."""
    doc = copy.deepcopy(doc)
    body = doc.pop("panel", None)
    if not isinstance(body, dict):
        raise ConfigError(f"{src}: needs a [panel] table with datasets = [...] (see configs/panel.toml)")
    unknown = sorted(set(body) - set(PANEL_KEYS))
    if unknown:
        raise ConfigError(f"{src}: panel.{unknown[0]}: unknown key; allowed: {', '.join(PANEL_KEYS)}")
    name = body.get("name", Path(src).stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,40}", name):
        raise ConfigError(f"{src}: panel.name: {name!r} must be letters, digits, '.', '_' or '-' (at most 41)")
    rope = body.get("rope", ROPE)
    if rope is not None and (isinstance(rope, bool) or not isinstance(rope, (int, float)) or not 0 < rope < 0.5):
        raise ConfigError(f"{src}: panel.rope: must be a number between 0 and 0.5 (a share: 0.10 = 10 points; "
                          "leave it out to use the per-data-set practical margin)")
    raw = body.get("datasets")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{src}: panel.datasets: give a non-empty list of data sets, e.g. "
                          "[\"r:ISLR/OJ\", {dataset = \"skewed\", inputs = \"raw\"}]")
    if "name" in doc.get("experiment", {}):
        raise ConfigError(f"{src}: experiment.name: a panel names its experiments <panel.name>-<data set>; "
                          "set panel.name instead")
    base_data = doc.get("data", {})
    if not isinstance(base_data, dict):
        raise ConfigError(f"{src}: data: must be a table [data]")
    default_inputs = base_data.get("inputs", "standardize")
    entries, seen = [], {}
    for i, item in enumerate(raw, 1):
        where = f"{src}: panel.datasets[{i}]"
        entry = {"dataset": item} if isinstance(item, str) else item
        if not isinstance(entry, dict) or not isinstance(entry.get("dataset"), str):
            raise ConfigError(f"{where}: give a data-set name or a table with dataset = \"...\"")
        bad = sorted(set(entry) - set(ENTRY_KEYS))
        if bad:
            raise ConfigError(f"{where}.{bad[0]}: unknown key; allowed: {', '.join(ENTRY_KEYS)}")
        slug = _slug(entry, default_inputs)
        if slug in seen:
            raise ConfigError(f"{where}: two data sets would both be named {slug!r} (also entry {seen[slug]}); "
                              "give one of them name = \"...\"")
        seen[slug] = i
        one = copy.deepcopy(doc)
        data = {k: v for k, v in base_data.items() if k not in ("dataset", "path", "target", "task")}
        data.update({k: v for k, v in entry.items() if k != "name"})
        if entry["dataset"] == "csv" and "path" in data and not Path(str(data["path"])).is_absolute():
            data["path"] = str((Path(src).parent / str(data["path"])).resolve())
        one["data"] = data
        one.setdefault("experiment", {})["name"] = f"{name}-{slug}"
        settings = parse_config(one, f"{where} ({entry['dataset']})")
        settings = settings.with_overrides(trials=trials, seed=seed, source=src)
        if epochs is not None:
            if not 1 <= epochs <= 10000:
                raise ConfigError(f"--epochs must be between 1 and 10000 (got {epochs})")
            settings = settings.with_overrides(epochs=epochs)
        entries.append(PanelEntry(slug, settings))
    return Panel(name, src, None if rope is None else float(rope), tuple(entries))


def load_panel(path: Path | str, **overrides) -> Panel:
    return parse_panel(_read_toml(path), str(path), **overrides)


# --------------------------------------------------------------------------- formatting

def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def pts(x, digits: int = 1, signed: bool = True) -> str:
    """A share difference in points. Rounded first, so nothing prints as "-0.0" (a value that rounds
    to zero prints unsigned)."""
    x = _num(x)
    if not math.isfinite(x):
        return "–"
    return signed_text(100 * x, digits) if signed else signed_text(100 * x, digits).lstrip("+")


def _ci(lo, hi, digits: int = 1, label: str = "95% CI") -> str:
    return f"{label} {pts(lo, digits)} to {pts(hi, digits)}"


_NEG_ZERO = re.compile(r"(?<![\w.])[-−]0(\.0+)?(?![\d.])")


def no_negative_zero(text: str) -> str:
    """Text the panel copies from elsewhere (each data set's verdict) without a "-0" or "-0.0": the
    panel's output never shows a negative zero, whoever rounded it."""
    return _NEG_ZERO.sub(lambda m: "0" + (m.group(1) or ""), text)


# --------------------------------------------------------------------------- per data set

def top_quarter_counts(t, r, *, paired: bool, quantile: float = TOP_QUANTILE) -> dict:
    """The pooled scale's counts for one data set: a configuration is "top quarter" when its score
    reaches the `quantile` of both arms' scores pooled (numpy's "lower" quantile and the same
    round-off epsilon as the primary analysis' "top 25%" level, so the counts match that level
    wherever the primary analysis kept it). t, r: the compared scores (the s* configuration left
    out), aligned by configuration when paired."""
    import numpy as np

    t, r = np.asarray(t, float), np.asarray(r, float)
    if paired and t.size != r.size:
        raise ValueError("paired scores must be aligned")
    if t.size == 0 or r.size == 0:
        return {"top_threshold": math.nan}
    thr = float(np.quantile(np.concatenate([t, r]), quantile, method="lower"))
    gt, gr = t >= thr - 1e-12, r >= thr - 1e-12
    out = {"top_threshold": thr, "top_on": float(gt.mean()), "top_off": float(gr.mean()),
           "top_k_on": int(gt.sum()), "top_k_off": int(gr.sum())}
    if paired:
        out.update(top_b=int((gt & ~gr).sum()), top_c=int((~gt & gr).sum()))
    return out


def _score_variance(lo: float, hi: float) -> float:
    from scipy import stats

    return ((hi - lo) / (2 * float(stats.norm.ppf(0.975)))) ** 2


def paired_effect(n: int, b: int, c: int) -> dict:
    """(b - c)/n with Tango's 95% score interval, and the variance that pooling uses: the interval's
    half-width back-transformed, ((hi - lo) / (2 z_0.975))^2. Unlike the Wald variance
    (p_b + p_c - (p_b - p_c)^2)/n it stays positive and honest with no discordant pair one way
    (c = 0) or none at all (b = c = 0: half-width z^2/(n + z^2))."""
    from .analysis.primary import tango_interval

    if n <= 0:
        return {"effect": math.nan, "effect_lo": math.nan, "effect_hi": math.nan, "variance": math.nan}
    lo, hi = tango_interval(int(b), int(c), int(n))
    return {"effect": (b - c) / n, "effect_lo": lo, "effect_hi": hi, "variance": _score_variance(lo, hi)}


def unpaired_effect(n_on: int, k_on: int, n_off: int, k_off: int) -> dict:
    """k_on/n_on - k_off/n_off (independent arms: an adaptive sampler) with Mee's 95% score interval,
    its variance back-transformed from the half-width like the paired one."""
    from .analysis.primary import score_interval_2indep

    if n_on <= 0 or n_off <= 0:
        return {"effect": math.nan, "effect_lo": math.nan, "effect_hi": math.nan, "variance": math.nan}
    lo, hi = score_interval_2indep(int(k_on), int(n_on), int(k_off), int(n_off))
    return {"effect": k_on / n_on - k_off / n_off, "effect_lo": lo, "effect_hi": hi,
            "variance": _score_variance(lo, hi)}


def effect_draws(frame: "pd.DataFrame", size: int = N_DRAWS, seed: int = 0):
    """size x data sets draws of each data set's pooled-scale effect from its posterior under a
    Jeffreys prior: paired, (p10, p01, concordant) ~ Dirichlet(b + 1/2, c + 1/2, n - b - c + 1/2) and the
    effect p10 - p01; unpaired, the difference of two Beta(k + 1/2, n - k + 1/2). Bounded like the
    effect itself and spread out at c = 0, where a normal draw around (b - c)/n would not be."""
    import numpy as np

    rng = np.random.default_rng([int(seed), 23])
    cols = []
    for r in frame.itertuples():
        n = int(r.n)
        if bool(getattr(r, "paired", True)):
            b, c = int(r.top_b), int(r.top_c)
            p = rng.dirichlet([b + 0.5, c + 0.5, n - b - c + 0.5], size)
            cols.append(p[:, 0] - p[:, 1])
        else:
            n_off, k_on, k_off = int(r.n_off), int(r.top_k_on), int(r.top_k_off)
            cols.append(rng.beta(k_on + 0.5, n - k_on + 0.5, size) - rng.beta(k_off + 0.5, n_off - k_off + 0.5, size))
    return np.column_stack(cols) if cols else np.empty((size, 0))


def compared_scores(df: "pd.DataFrame", summary):
    """The scores the primary analysis compared, from the experiment's trials: the summary's arms'
    complete trials, paired by configuration when the summary paired them, the configuration that
    sets s* left out (as analysis.summary does: reference_mask, first complete trial per config)."""
    import numpy as np

    from .analysis.common import _floats, complete_trials
    from .analysis.inference import paired_scores
    from .analysis.tolerance import reference_mask

    treat, ref = summary.arms
    trials = {a: complete_trials(df, a) for a in (treat, ref)}
    scores = {a: _floats(t["score"]) for a, t in trials.items()}
    order = {a: (_floats(t["config_index"]) if "config_index" in t and t["config_index"].notna().all()
                 else _floats(t["number"])) for a, t in trials.items()}
    mask = reference_mask(scores, order)
    if summary.paired:
        pairs = paired_scores(trials[treat], trials[ref])
        ref_cfg = [int(trials[a]["config_index"].to_numpy()[np.argmax(mask[a])]) for a in (treat, ref) if mask[a].any()]
        if ref_cfg:
            pairs = pairs[pairs["config_index"].to_numpy() != ref_cfg[-1]]
        t, r = pairs["on"].to_numpy(float), pairs["off"].to_numpy(float)
    else:
        t, r = scores[treat][~mask[treat]], scores[ref][~mask[ref]]
    p = summary.primary or {}
    if (p.get("n_on") is not None and int(p["n_on"]) != t.size) or (p.get("n_off") is not None
                                                                    and int(p["n_off"]) != r.size):
        raise RuntimeError(f"{summary.experiment}: the panel rebuilt {t.size}/{r.size} compared scores, the "
                           f"primary analysis had {p.get('n_on')}/{p.get('n_off')}; "
                           "panel.compared_scores no longer matches analysis.summary")
    return t, r


FOCUS_KEYS = ("kind", "delta", "threshold", "diff", "lo", "hi", "z", "p_adj")


def dataset_row(entry: PanelEntry, summary, traits: dict, scores=None) -> dict:
    """One data set's row of panel.csv from its Comparison (analysis.summarize), traits and the
    compared scores (compared_scores) the pooled scale is counted on."""
    p = summary.primary or {}
    n = int(p.get("n_on") or 0)
    b, c = int(p.get("only_on") or 0), int(p.get("only_off") or 0)
    paired = bool(p.get("paired", summary.paired))
    baseline = _num((summary.context or {}).get("baseline"))
    row = {"dataset": entry.settings.data.dataset, "slug": entry.slug, "experiment": entry.settings.name,
           "inputs": entry.settings.data.inputs, "n": n, "n_off": int(p.get("n_off") or 0),
           "k_on": int(p.get("k_on") or 0), "k_off": int(p.get("k_off") or 0),
           "good_on": (p.get("k_on") or 0) / n if n else math.nan,
           "good_off": (p.get("k_off") or 0) / (p.get("n_off") or n) if n else math.nan,
           "b": b, "c": c, "diff": _num(p.get("diff")), "lo": _num(p.get("lo")), "hi": _num(p.get("hi")),
           "eq_lo": _num(p.get("eq_lo")), "eq_hi": _num(p.get("eq_hi")), "margin": _num(p.get("margin")),
           "p_value": _num(p.get("p_value")), "outcome": summary.outcome, "reason": str(p.get("reason") or ""),
           **{f"focus_{k}": (str(p.get(f"focus_{k}") or "") if k == "kind" else _num(p.get(f"focus_{k}")))
              for k in FOCUS_KEYS},
           "tolerance": float(summary.tolerance), "s_star": _num(summary.s_star), "baseline": baseline,
           "fail_cutoff": _num((summary.context or {}).get("fail_cutoff")),
           "paired": paired,
           "rows": traits.get("rows"), "log10_rows": math.log10(traits["rows"]) if traits.get("rows") else math.nan,
           "features": traits.get("features"), "classes": traits.get("classes"),
           "majority": traits.get("majority"), "scale_spread": traits.get("scale_spread"),
           "raw_inputs": traits.get("raw_inputs"), "verdict": summary.verdict}
    if scores is not None:
        row.update(top_quarter_counts(*scores, paired=paired))
    return row


def _directional(r) -> bool:
    """The row's own verdict has a direction AND the interval that justifies it (the level with the
    largest |z|, PrimaryResult.focus) excludes 0 on that side."""
    lo, hi = _num(getattr(r, "focus_lo", math.nan)), _num(getattr(r, "focus_hi", math.nan))
    if r.outcome == "easier":
        return math.isfinite(lo) and lo > 0
    if r.outcome == "harder":
        return math.isfinite(hi) and hi < 0
    return False


def dataset_claim(r, *, short: bool = False) -> str:
    """A data set's own verdict as the panel quotes it: a direction only with the interval that
    justifies it, "easier: +16 pts at a score ≥ 0.819 (95% CI +4 to +29)" (the primary analysis'
    simultaneous interval at its strongest level). `r`: a row of PanelResult.datasets (itertuples)."""
    o = getattr(r, "outcome", "")
    o = o if isinstance(o, str) and o else "cannot tell"
    if o in ("easier", "harder"):
        if _directional(r):
            return (f"{o}: {pts(r.focus_diff, 0)} pts at a score ≥ {_num(r.focus_threshold):.3f} "
                    f"({_ci(r.focus_lo, r.focus_hi, 0)})")
        return "direction not quoted: no interval excluding 0 was reported for it"
    if o == "equivalent":
        m = _num(getattr(r, "margin", math.nan))
        m = m if math.isfinite(m) else 0.10
        return f"no practical difference (every level's 90% CI within ±{100 * m:.0f} pts)"
    reason = str(getattr(r, "reason", "") or "")
    return "cannot tell" if short or not reason else f"cannot tell: {reason}"


def declared_text(r) -> str:
    """The difference at the data set's declared δ, labelled, with its simultaneous interval."""
    diff, lo, hi = (getattr(r, k, math.nan) for k in ("diff", "lo", "hi"))
    if not math.isfinite(_num(diff)):
        return "–"
    return f"{pts(diff, 0)} pts ({pts(lo, 0)} to {pts(hi, 0)})"


# --------------------------------------------------------------------------- pooling (pure)

@dataclass
class PanelResult:
    name: str
    datasets: "pd.DataFrame"  # one row per data set, with the pooled-scale effect, variance and weight
    pm: "MetaResult | None"  # Paule-Mandel (the headline)
    dl: "MetaResult | None"  # DerSimonian-Laird (sensitivity)
    bayes: "SignedRank | None"
    moderators: "pd.DataFrame"  # trait, k, slope, its CI and p, supported (or why not estimated)
    rope: float
    what: str = "BN"
    verdict: str = ""
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    seconds: float = math.nan  # wall time of the command that produced it (not set by pool_panel)
    pm_clear: "MetaResult | None" = None  # Paule-Mandel without the near-constant data sets (sensitivity)

    @property
    def k(self) -> int:
        return 0 if self.pm is None else self.pm.k

    def pooled_table(self) -> "pd.DataFrame":
        """pooled.csv: long format (method, quantity, value, lo, hi)."""
        import pandas as pd

        rows = []
        for label, m in (("random effects, Paule-Mandel", self.pm), ("random effects, DerSimonian-Laird", self.dl),
                         ("random effects, Paule-Mandel, near-constant data sets left out", self.pm_clear)):
            if m is None:
                continue
            rows += [(label, "pooled difference, HKSJ 95% CI", m.pooled, m.hk_low, m.hk_high),
                     (label, "pooled difference, normal 95% CI", m.pooled, m.ci_low, m.ci_high),
                     (label, "prediction interval (new data set)", m.pooled, m.pi_low, m.pi_high),
                     (label, "tau2", m.tau2, math.nan, math.nan),
                     (label, "I2 (from this tau2)", m.i2, math.nan, math.nan),
                     (label, "Q", m.q, math.nan, math.nan), (label, "Q p value", m.q_pvalue, math.nan, math.nan),
                     (label, "data sets", float(m.k), math.nan, math.nan)]
        if self.bayes is not None:
            b = self.bayes
            label = f"Bayesian signed-rank, ROPE {b.rope:g}, {b.draws} draws per data set"
            rows += [(label, f"P(difference > +{b.rope:g})", b.p_better, math.nan, math.nan),
                     (label, f"P(difference within ±{b.rope:g})", b.p_equivalent, math.nan, math.nan),
                     (label, f"P(difference < -{b.rope:g})", b.p_worse, math.nan, math.nan)]
        return pd.DataFrame(rows, columns=["method", "quantity", "value", "lo", "hi"])


def _effects(df: "pd.DataFrame", paired) -> "pd.DataFrame":
    import pandas as pd

    out = []
    for r, pr in zip(df.itertuples(), paired):
        n = _num(getattr(r, "n", 0))
        n = int(n) if math.isfinite(n) else 0
        if pr and math.isfinite(_num(getattr(r, "top_b", math.nan))):
            out.append(paired_effect(n, int(r.top_b), int(r.top_c)))
        elif not pr and math.isfinite(_num(getattr(r, "top_k_on", math.nan))):
            out.append(unpaired_effect(n, int(r.top_k_on), int(r.n_off), int(r.top_k_off)))
        else:
            out.append(paired_effect(0, 0, 0))
    return pd.DataFrame(out, index=df.index, columns=["effect", "effect_lo", "effect_hi", "variance"])


def pool_panel(rows, *, rope: float | None = ROPE, name: str = "panel", what: str = "BN", seed: int = 0,
               draws: int = N_DRAWS) -> PanelResult:
    """Pool one row per data set (dicts or a DataFrame). Each row needs n and the pooled scale's
    counts: top_b and top_c (paired), or n_off, top_k_on and top_k_off (rows with paired = False);
    optional: the MODERATORS traits, outcome and the focus_* / declared-δ fields quoted beside it,
    s_star, baseline and tolerance (for near_constant). Rows without an estimate are kept in the
    table but left out of the pooling. rope None: the rows' practical margin (primary.EQUIVALENCE_MARGIN)."""
    import numpy as np
    import pandas as pd

    from .analysis.meta import bayes_signed_rank, meta_regression, random_effects
    from .analysis.primary import EQUIVALENCE_MARGIN

    df = pd.DataFrame(rows).reset_index(drop=True)
    paired = df["paired"].astype(bool) if "paired" in df else pd.Series(True, index=df.index)
    df["paired"] = paired
    df[["effect", "effect_lo", "effect_hi", "variance"]] = _effects(df, paired)
    df["se"] = np.sqrt(df["variance"])
    for col in ("s_star", "baseline", "tolerance"):
        if col not in df:
            df[col] = np.nan
    df["headroom"] = df["s_star"].astype(float) - df["baseline"].astype(float)
    known = np.isfinite(df["headroom"]) & np.isfinite(df["tolerance"].astype(float))
    # The primary analysis' own test, float for float: the declared level s* - δ lies below the
    # failed-to-train cutoff (tolerance.failure_cutoff), with its round-off epsilon.
    tol = df["tolerance"].astype(float)
    cutoff = df["fail_cutoff"].astype(float) if "fail_cutoff" in df else df["baseline"].astype(float) + tol
    below = (df["s_star"].astype(float) - tol) < cutoff - 1e-12
    df["near_constant"] = pd.Series(np.where(known, below, None), index=df.index, dtype="object")
    ok = np.isfinite(df["effect"].astype(float)) & np.isfinite(df["variance"]) & (df["n"] > 0)
    margins = sorted({round(m, 12) for m in df.get("margin", pd.Series(dtype=float)).astype(float) if np.isfinite(m)})
    margin = margins[0] if len(margins) == 1 else EQUIVALENCE_MARGIN
    notes = []
    if rope is None:
        rope = margin
    elif not math.isclose(rope, margin):
        notes.append(f"panel.rope = {rope:g} differs from the per-data-set practical margin ({margin:g}): the "
                     "Bayesian test and the verdicts then answer different questions; leave panel.rope out")
    if (~ok).any():
        notes.append("left out of the pooling (no estimate): " + ", ".join(map(str, df.loc[~ok, "slug"]
                                                                               if "slug" in df else df.index[~ok])))
    use = df[ok].reset_index(drop=True)
    pm = dl = bayes = clear = None
    df["weight"] = np.nan
    if len(use) >= 2:
        pm = random_effects(use, effect="effect", variance="variance", method="pm")
        dl = random_effects(use, effect="effect", variance="variance", method="dl")
        df.loc[ok, "weight"] = pm.weights
        near = use["near_constant"].eq(True).to_numpy()
        if near.any() and (~near).sum() >= 2:
            clear = random_effects(use[~near], effect="effect", variance="variance", method="pm")
        with np.errstate(all="ignore"):
            d = effect_draws(use, draws, seed)
            bayes = bayes_signed_rank(d, np.zeros_like(d), rope, seed=seed)
    else:
        notes.append("fewer than 2 data sets with an estimate: nothing is pooled")
    mods = []
    for trait, label in MODERATORS.items():
        row = {"trait": trait, "label": label, "k": len(use)}
        if trait not in use or len(use) < 3:
            why = "not recorded for these data sets" if trait not in use else "needs at least 3 data sets"
            mods.append({**row, "supported": False, "note": why})
            continue
        try:
            fit = meta_regression(use, trait, effect="effect", variance="variance", method="pm")
        except ValueError as exc:
            mods.append({**row, "supported": False, "note": str(exc)})
            continue
        mods.append({**row, **{k: v for k, v in fit.as_dict().items() if k not in ("trait", "k")}, "note": ""})
    moderators = pd.DataFrame(mods, columns=["trait", "label", "k", "tau2", "intercept", "slope", "slope_se",
                                             "slope_ci_low", "slope_ci_high", "slope_pvalue", "supported", "note"])
    res = PanelResult(name=name, datasets=df, pm=pm, dl=dl, bayes=bayes, moderators=moderators, rope=float(rope),
                      what=what, notes=notes, pm_clear=clear)
    res.verdict = panel_verdict(res)
    return res


SCALE = "the share of configurations reaching the top quarter of their data set's scores (both arms pooled)"


def _pooled_text(m) -> str:
    return f"{pts(m.pooled)} pts ({_ci(m.hk_low, m.hk_high)}, Hartung–Knapp)"


def _tally(df: "pd.DataFrame") -> str:
    """The per-data-set outcomes, counted. A direction is counted with the span of the intervals that
    justify it (each excludes 0, so their span does); a count of 0 is left out rather than printed
    as a bare direction."""
    if not len(df) or "outcome" not in df:
        return "none"
    groups: dict[str, list] = {}
    for r in df.itertuples():
        o = r.outcome if isinstance(r.outcome, str) and r.outcome else "cannot tell"
        key = o if o not in ("easier", "harder") or _directional(r) else "direction not quoted"
        groups.setdefault(key, []).append(r)
    parts = []
    for key in ("easier", "harder", "equivalent", "direction not quoted", "cannot tell"):
        rs = groups.get(key, [])
        if not rs:
            continue
        if key in ("easier", "harder"):
            lo, hi = min(_num(r.focus_lo) for r in rs), max(_num(r.focus_hi) for r in rs)
            span = (f"its simultaneous 95% CI {pts(lo, 0)} to {pts(hi, 0)} pts" if len(rs) == 1 else
                    f"their simultaneous 95% CIs span {pts(lo, 0)} to {pts(hi, 0)} pts, each excluding 0")
            parts.append(f"{key} on {len(rs)} ({span})")
        else:
            parts.append(f"{key.replace('equivalent', 'no practical difference')} on {len(rs)}")
    return ", ".join(parts)


def panel_verdict(res: PanelResult) -> str:
    """The panel's paragraph: direction and size first (a direction only when the HKSJ interval
    excludes 0, the interval quoted right after it), what to expect on a new data set,
    heterogeneity, the per-data-set tally, the near-constant data sets, the sensitivity lines, the
    Bayesian test and the moderators the intervals support."""
    df, pm, what = res.datasets, res.pm, res.what
    counts = _tally(df)
    if pm is None:
        return f"Too few data sets with an estimate to pool ({len(df)} in the panel; per data set: {counts})."
    k = pm.k
    ci = f"{_ci(pm.hk_low, pm.hk_high)}, Paule–Mandel with Hartung–Knapp–Sidik–Jonkman; normal-based " \
         f"{pts(pm.ci_low)} to {pts(pm.ci_high)}"
    if pm.hk_low > 0:
        head = f"Across {k} data sets {what} raised {SCALE} by {pts(pm.pooled, signed=False)} pts ({ci})"
    elif pm.hk_high < 0:
        head = f"Across {k} data sets {what} lowered {SCALE} by {pts(-pm.pooled, signed=False)} pts ({ci})"
    else:
        head = (f"Across {k} data sets {SCALE} changed by {pts(pm.pooled)} pts with {what} ({ci}): the pooled "
                "effect is not distinguishable from 0")
    if math.isfinite(pm.pi_low) and (pm.pi_low < -1 or pm.pi_high > 1):
        # a difference of shares lies within ±100 pts: an interval past that says only that k is too small
        pi = (f"; with {k} data sets the 95% prediction interval ({pts(pm.pi_low)} to {pts(pm.pi_high)} pts) "
              "reaches past the ±100 pts a difference of shares can take: too few data sets to say what to "
              "expect on a new one")
    elif math.isfinite(pm.pi_low):
        pi = f"; on a new data set expect between {pts(pm.pi_low)} and {pts(pm.pi_high)} pts (95% prediction interval)"
    else:
        pi = "; no prediction interval with fewer than 3 data sets"
    het = (f"; heterogeneity τ² = {pm.tau2:.4f} (Paule–Mandel), I² = {100 * pm.i2:.0f}% from that τ² "
           f"(Q = {pm.q:.1f}, p = {pm.q_pvalue:.2g}).")
    parts = [head + pi + het, f"Own verdicts per data set (table below): {counts}."]
    near = df[df["near_constant"].eq(True)] if "near_constant" in df else df.iloc[:0]
    if len(near):
        parts.append(f"On {len(near)} data set{'s' if len(near) > 1 else ''} ({', '.join(map(str, near['slug']))}) "
                     "the best model is less than δ above the failed-to-train cutoff (a constant predictor plus "
                     "its noise), so scoring within δ of the best does not set a configuration apart from one "
                     "that failed to train (marked †; their own verdict is cannot tell)"
                     + (f"; without them the pooled difference is {_pooled_text(res.pm_clear)}." if res.pm_clear
                        else "."))
    if res.dl is not None:
        parts.append(f"DerSimonian–Laird gives {_pooled_text(res.dl)}, I² = {100 * res.dl.i2:.0f}% from its τ².")
    if res.bayes is not None:
        b, m = res.bayes, f"{100 * res.bayes.rope:g}"
        parts.append(f"Bayesian signed-rank over data sets, each data set's difference drawn {b.draws} times from its "
                     f"posterior, ROPE ±{m} pts (the per-data-set practical margin): P(difference > +{m} pts) = "
                     f"{b.p_better:.2f}, P(within ±{m} pts) = {b.p_equivalent:.2f}, P(difference < -{m} pts) = "
                     f"{b.p_worse:.2f}.")
    sup = res.moderators[res.moderators["supported"].astype(bool)] if len(res.moderators) else res.moderators
    if len(sup):
        parts.append("Moderators (meta-regression, slope's 95% CI excludes 0): " + "; ".join(
            f"{r.label}: {pts(r.slope)} pts per unit ({pts(r.slope_ci_low)} to {pts(r.slope_ci_high)})"
            for r in sup.itertuples()) + ".")
    elif k >= 3:
        parts.append("No data-set trait (rows, features, classes, scale spread, raw inputs) moderated the effect "
                     "at the 95% level; with few data sets a moderator must be large to show.")
    parts.append("The pooled difference is measured at the same quantile of every data set's scores, not at its "
                 "declared δ, so it means the same on each; these conclusions hold for the searched space and budget.")
    return " ".join(parts)


# --------------------------------------------------------------------------- running

Progress = Callable[[PanelEntry, list], None]


def summarize_experiment(storage, name: str):
    """(Comparison, compared scores) of one stored experiment: the two-arm Comparison as `compare`
    computes it (first non-reference arm vs the reference), without the report's budget layer and
    files, and the scores its primary analysis compared (compared_scores), which the pooled scale
    is counted on."""
    from . import search
    from .analysis import summarize
    from .api import _read_run, _task

    url = search.storage_url(storage)
    studies = {s.study_name for s in search.open_storage(url, create=False).get_all_studies()}
    run = _read_run(url, name, studies)
    s = run.settings
    treatment = next(a for a in s.arm_names() if a != s.reference)
    summary = summarize(run.df, distributions=s.distributions(), tolerance=s.tolerance, paired=s.paired,
                        sampler=s.sampler, task=_task(s), seed=s.seed, arms=(treatment, s.reference), **run.context)
    return summary, compared_scores(run.df, summary)


def _warm_imports() -> None:
    """What pooling and the files need (~2 s of imports), done while the workers train instead of
    after the last trial with a core idle."""
    import matplotlib

    matplotlib.use("Agg")
    import baycomp  # noqa: F401
    import matplotlib.pyplot  # noqa: F401
    import statsmodels.api  # noqa: F401
    from statsmodels.stats import meta_analysis  # noqa: F401

    from . import analysis  # noqa: F401


def _report_progress(panel: Panel, arms: list, progress: Progress) -> None:
    for e in panel.entries:
        mine = [a for a in arms if a.settings.name == e.settings.name]
        if mine:
            progress(e, mine)


def run_panel(config, *, jobs: int | None = None, storage=None, out=None, trials: int | None = None,
              epochs: int | None = None, seed: int | None = None, progress: Progress | None = None) -> PanelResult:
    """Run what is missing of every data set's experiment, summarize each, pool, and write the
    panel's files to `out` (default results/<panel>/). Returns the PanelResult (its `files` set).

    Every data set is checked (config and data) before anything is stored, so a bad entry fails at
    once rather than after the first data sets trained. `progress(entry, arms)` is called for each
    data set as trials finish. Nothing is printed."""
    import contextlib
    import time

    from . import search
    from .api import check_budget, check_out_dir, run_arms

    t0 = time.perf_counter()
    panel = load_panel(config, trials=trials, epochs=epochs, seed=seed)
    check_jobs(jobs)
    traits = [table_traits(e.settings.data, e.settings.seed) for e in panel.entries]  # bad data: exit 2 now
    out_dir = Path(out) if out else Path("results") / panel.name
    made = [d for d in (out_dir, *out_dir.parents) if not d.exists()]
    check_out_dir(out_dir)
    try:
        search.open_storage(storage)  # a bad URL fails here, before anything else
        for e in panel.entries:
            check_budget(e.settings, storage, trials)
        # One run for every data set: the workers start once and go from one data set's queue to the
        # next (search.run_arms, more=), instead of a start and a last-trial wait per data set.
        first, *rest = [e.settings for e in panel.entries]
        run_arms(first, storage, first.arm_names(), jobs=jobs, more=rest, warmup=_warm_imports,
                 progress=(lambda arms: _report_progress(panel, arms, progress)) if progress else None)
        summaries = [summarize_experiment(storage, e.settings.name) for e in panel.entries]
        from .analysis.common import arm_phrases

        treatment = next(a for a in first.arm_names() if a != first.reference)
        res = pool_panel([dataset_row(e, summary, traits[i], scores)
                          for i, (e, (summary, scores)) in enumerate(zip(panel.entries, summaries))],
                         rope=panel.rope, name=panel.name, what=arm_phrases((treatment, first.reference))["what"],
                         seed=first.seed)
        res.seconds = time.perf_counter() - t0
        res.files = write_panel(res, out_dir, panel)
    except BaseException:
        for d in made:  # a failed command leaves no empty results folder behind
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return res


def table_traits(spec, seed: int = 0) -> dict:
    """What a panel's meta-regression can relate the BN effect to, for one data set (a DataSpec):
    rows, encoded features, classes (1 for regression), the majority-class share, the log10 spread
    of the features' standard deviations (max/min over non-constant columns, before any scaling)
    and whether inputs are fed raw (1) or standardized (0)."""
    import numpy as np

    from .data import load_arrays

    X, y, task = load_arrays(spec, seed)
    with np.errstate(all="ignore"):
        sd = np.nanstd(X, axis=0)
    sd = sd[np.isfinite(sd) & (sd > 0)]
    classes = int(len(np.unique(y))) if task == "classification" else 1
    majority = float(np.bincount(np.asarray(y)).max() / len(y)) if task == "classification" else float("nan")
    return {"rows": int(X.shape[0]), "features": int(X.shape[1]), "classes": classes, "majority": majority,
            "scale_spread": float(np.log10(sd.max() / sd.min())) if len(sd) else 0.0,
            "raw_inputs": int(spec.inputs == "raw")}


# --------------------------------------------------------------------------- encoding


# --------------------------------------------------------------------------- files

def _meta(panel: Panel) -> dict:
    from . import __version__

    return {"panel": panel.name, "config": panel.source, "bnsearch_version": __version__}


PANEL_COLUMNS = [
    "dataset", "slug", "experiment", "inputs", "paired", "n", "n_off",
    # the pooled scale: top quarter of the data set's pooled scores
    "top_threshold", "top_on", "top_off", "top_b", "top_c", "top_k_on", "top_k_off", "effect", "effect_lo",
    "effect_hi", "variance", "se", "weight",
    # the data set's own verdict and the interval that justifies it
    "outcome", "reason", "p_value", "focus_kind", "focus_delta", "focus_threshold", "focus_diff", "focus_lo",
    "focus_hi", "focus_z", "focus_p_adj", "margin",
    # at the declared δ
    "tolerance", "good_on", "good_off", "b", "c", "diff", "lo", "hi",
    # how far the best model is from the constant predictor
    "s_star", "baseline", "fail_cutoff", "headroom", "near_constant",
    "rows", "features", "classes", "majority", "scale_spread", "raw_inputs"]


def write_panel(res: PanelResult, out_dir: Path, panel: Panel) -> list[Path]:
    """panel.csv, pooled.csv, moderators.csv, forest.png and report.md, each written whole or not at all."""
    from .files import atomic_write

    out_dir = Path(out_dir)
    meta = _meta(panel)
    files = []
    tables = {"panel.csv": res.datasets[[c for c in PANEL_COLUMNS if c in res.datasets]],
              "pooled.csv": res.pooled_table(), "moderators.csv": res.moderators}
    for fname, table in tables.items():
        table = table.assign(**meta)
        files.append(atomic_write(out_dir / fname, lambda tmp, t=table: t.to_csv(tmp, index=False)))
    files.append(atomic_write(out_dir / "forest.png", lambda tmp: forest_plot(res, tmp)))
    text = markdown(res, panel)
    files.append(atomic_write(out_dir / "report.md", lambda tmp: tmp.write_text(text, encoding="utf-8")))
    return files


def _mark(r) -> str:
    return " †" if getattr(r, "near_constant", None) is True else ""


def forest_labels(res: PanelResult) -> list[str]:
    """The forest plot's row labels: the data set, and its own verdict with the interval that
    justifies it (never a direction beside an interval that includes 0)."""
    return [f"{r.slug} (n={r.n}){_mark(r)}\n{dataset_claim(r, short=True)}" for r in res.datasets.itertuples()]


def forest_plot(res: PanelResult, path: Path) -> None:
    """One row per data set on the pooled scale (its 95% score interval; the marker's area follows its
    pooling weight), labelled with the data set's own verdict and justifying interval; then the
    pooled diamond (HKSJ 95% CI) and the prediction interval for a new data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    df = res.datasets
    k = len(df)
    fig, ax = plt.subplots(figsize=(10, 1.4 + 0.55 * (k + 3)))
    ys = np.arange(k)[::-1] + 3
    w = df["weight"].fillna(0).to_numpy(float)
    sizes = 20 + 180 * (w / w.max() if w.max() > 0 else w)
    for y, r, s in zip(ys, df.itertuples(), sizes):
        lo, hi, e = _num(r.effect_lo), _num(r.effect_hi), _num(r.effect)
        # Coloured by this interval, not by the verdict: the bar drawn is the pooled scale's.
        c = "tab:green" if lo > 0 else "tab:red" if hi < 0 else "0.35"
        if math.isfinite(lo) and math.isfinite(hi):
            ax.plot([100 * lo, 100 * hi], [y, y], color=c, lw=1.5)
        if math.isfinite(e):
            ax.scatter([100 * e], [y], s=s, marker="s", color=c, zorder=3)
    yt, yl = list(ys), forest_labels(res)
    if res.pm is not None:
        m = res.pm
        ax.fill([100 * m.hk_low, 100 * m.pooled, 100 * m.hk_high, 100 * m.pooled],
                [1.5, 1.8, 1.5, 1.2], color="black", zorder=3)
        yt.append(1.5)
        yl.append(f"pooled, Paule–Mandel: {pts(m.pooled)} pts\n({_ci(m.hk_low, m.hk_high)}, Hartung–Knapp)")
        if math.isfinite(m.pi_low):
            ax.plot([100 * m.pi_low, 100 * m.pi_high], [0.6, 0.6], color="black", lw=3, alpha=0.4)
            yt.append(0.6)
            yl.append(f"prediction interval ({pts(m.pi_low)} to {pts(m.pi_high)})")
        ax.axvline(100 * m.pooled, color="black", ls=":", lw=0.8)
    ax.axvline(0, color="0.5", lw=0.8)
    # A share difference lies within ±100 pts; with few data sets the t quantiles carry the pooled and
    # prediction intervals far beyond that, and the axis would squeeze every data set's row.
    lo, hi = ax.get_xlim()
    ax.set_xlim(max(lo, -105.0), min(hi, 105.0))
    ax.set_yticks(yt)
    ax.set_yticklabels(yl, fontsize=7)
    ax.set_ylim(0, k + 3.5)
    ax.set_xlabel(f"Δ share of configurations in the top quarter of the data set's scores, {res.what} − reference "
                  "(points)", fontsize=8)
    i2 = f", I² = {100 * res.pm.i2:.0f}% (from the Paule–Mandel τ²)" if res.pm is not None else ""
    fig.suptitle(f"{res.name}: {res.what} across {k} data sets{i2}", fontsize=10)
    ax.set_title("bars: 95% score interval on the pooled scale, square area ∝ weight; labels: each data set's own "
                 "verdict at its strongest level\n(simultaneous 95% CI); † best model less than δ above the "
                 "failed-to-train cutoff", fontsize=7, color="0.4")
    fig.tight_layout()
    # "tight": the two-line labels of long verdicts must not be cut at the figure's left edge
    fig.savefig(path, dpi=120, format="png", bbox_inches="tight")
    plt.close(fig)


def markdown(res: PanelResult, panel: Panel) -> str:
    import pandas as pd
    import re

    def f(x, spec=".1f", scale=100.0):
        x = _num(x)
        return "–" if not math.isfinite(x) else format(scale * x, spec)

    # Names and paths come from the user (config file names, panel and data set names) and a report.md
    # is rendered as HTML by most viewers: a name must never become markup there.
    def one_line(x) -> str:
        return re.sub(r"[\r\n\t\v\f\x00-\x08\x0e-\x1f\x7f]+", " ", str(x))

    def prose(x) -> str:
        # Generated sentences quote names: neutralise what could open HTML ("p < 0.001" stays as is).
        text = re.sub(r"&(?=#?\w+;)", "&amp;", one_line(x))
        return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)

    def name(x) -> str:
        text = one_line(x).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        text = re.sub(r"([\\`*\[\]|~])", r"\\\1", text)
        return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)  # breast_cancer stays as typed

    def cell(x) -> str:
        return prose(x).replace("|", "\\|")

    def code(x) -> str:
        # A code span shows its text literally; the fence must be longer than any run of backticks in it.
        text = one_line(x)
        fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
        return f"{fence} {text} {fence}" if "`" in text else f"{fence}{text}{fence}"

    s = panel.entries[0].settings
    what = res.what
    lines = [f"# Panel {name(res.name)}: {prose(what)} across data sets", "", prose(res.verdict), "",
             f"Config {code(panel.source)}: {len(panel.entries)} data sets, {s.trials} paired configurations per arm, "
             f"{s.epochs} epochs, sampler {s.sampler}, seed {s.seed}.", "",
             "![forest plot](forest.png)", "", "## Per data set", "",
             "| data set | inputs | n | own verdict, at its strongest level (simultaneous 95% CI) | at the declared δ "
             "(simultaneous 95% CI) | top quarter with / without | Δ top quarter, pts (95% CI) | weight | "
             "best − constant |",
             "|---|---|---:|---|---|---:|---|---:|---|"]
    for r in res.datasets.itertuples():
        head = f"{f(r.headroom, '.1f')} pts (δ = {f(r.tolerance, '.1f')}){_mark(r)}"
        lines.append(f"| {name(r.dataset)} | {name(getattr(r, 'inputs', ''))} | {r.n} | {cell(dataset_claim(r))} | "
                     f"{cell(declared_text(r))} | "
                     f"{f(getattr(r, 'top_on', math.nan), '.0f')}% / {f(getattr(r, 'top_off', math.nan), '.0f')}% | "
                     f"{pts(r.effect)} ({pts(r.effect_lo)} to {pts(r.effect_hi)}) | {f(r.weight, '.1f')}% | {head} |")
    m = f"{100 * res.rope:g}"
    lines += ["", f"Own verdict: the data set's primary analysis ({what} vs the reference over every quality level); "
              "a direction is quoted with the level where the arms differ most (largest |z|), named by its score "
              "threshold, and that level's simultaneous interval, which excludes 0. At the declared δ: the paired "
              "good-fraction difference at the data set's own δ, for reference only (each data set declares a "
              "different δ). Top quarter: the share of configurations scoring at least the 75th percentile of that "
              "data set's scores of both arms, the pooled scale; its 95% interval is Tango's score interval, and "
              "the pooling variance is that interval's half-width back-transformed, ((hi − lo)/(2 × 1.96))². "
              "† the best model (s*) is less than δ above the failed-to-train cutoff (the constant predictor's "
              "score plus 2 SE of its validation noise), so a configuration within δ of the best may be no better "
              "than trivial.",
              "", "## Pooled", "", "| method | quantity | value | interval |", "|---|---|---:|---|"]
    for r in res.pooled_table().itertuples():
        is_pts = r.quantity.startswith("pooled difference") or r.quantity.startswith("prediction interval")
        val = pts(r.value) + " pts" if is_pts else f(r.value, '.3g', 1.0)
        iv = f"{pts(r.lo)} to {pts(r.hi)}" if is_pts else ""
        lines.append(f"| {cell(r.method)} | {cell(r.quantity)} | {val} | {iv} |")
    lines += ["", "HKSJ: Hartung–Knapp–Sidik–Jonkman (t with k − 1 df, scale never below 1), the headline interval. "
              "I² = τ² / (τ² + s²) with Higgins & Thompson's typical within-data-set variance s², from the τ² on "
              f"the same line. The Bayesian signed-rank test uses ROPE ±{m} pts and averages over draws of every "
              "data set's difference from its posterior (Dirichlet, Jeffreys prior), so each data set's sampling "
              "uncertainty is carried.", "",
              "## Moderators (meta-regression, one trait at a time)", "",
              "| trait | slope (pts per unit) | 95% CI | p | supported |", "|---|---:|---|---:|---|"]
    for r in res.moderators.itertuples():
        if pd.isna(r.slope):
            lines.append(f"| {cell(r.label)} | – | {cell(r.note)} | – | no |")
        else:
            lines.append(f"| {cell(r.label)} | {pts(r.slope, 2)} | {pts(r.slope_ci_low, 2)} to "
                         f"{pts(r.slope_ci_high, 2)} | {f(r.slope_pvalue, '.2g', 1.0)} | "
                         f"{'yes' if r.supported else 'no'} |")
    lines += ["", "A trait is reported as a moderator only where its slope's 95% CI excludes 0.", ""]
    if res.notes:
        lines += ["## Notes", "", *[f"- {prose(n)}" for n in res.notes], ""]
    lines += ["## Each data set's verdict", ""]
    for r in res.datasets.itertuples():
        said = getattr(r, "verdict", "")
        lines += [f"**{name(r.slug)}** ({code(getattr(r, 'experiment', r.slug))}){_mark(r)}: "
                  f"{prose(no_negative_zero(said if isinstance(said, str) else ''))}", ""]
    lines += ["Each experiment's full report: `bnsearch export --experiment <experiment>` with the same storage.", ""]
    return "\n".join(lines)
