"""A panel: one search space and budget run as paired comparisons on several data sets, then pooled
(docs/design.md, Panel).

Each data set is an ordinary experiment `<panel>-<slug>` run by api.run_arms in the same storage
(resumable, the same workers), summarized by analysis.summarize like `compare` does. Pooling is a
pure function of one row per data set (`pool_panel`): the primary effect (the paired good-fraction
difference at the declared δ) with a variance from its discordant counts, a random-effects
meta-analysis (Paule-Mandel; DerSimonian-Laird as a sensitivity line), the prediction interval for
a new data set, a Bayesian signed-rank test with a region of practical equivalence, and a
meta-regression on data-set traits. Nothing here prints; the CLI renders.
"""

from __future__ import annotations

import copy
import math
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .config import ConfigError, Settings, check_jobs, parse_config

if TYPE_CHECKING:
    import pandas as pd

    from .analysis.meta import MetaResult, SignedRank

ROPE = 0.01  # 1 point of good-fraction difference: a smaller difference is practically none
ENTRY_KEYS = ("dataset", "name", "inputs", "path", "target", "task", "val_fraction", "test_fraction")
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
    rope: float
    entries: tuple[PanelEntry, ...]


def _read_toml(path: Path | str) -> dict:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: panel config not found; pass an existing .toml file (e.g. configs/panel.toml)")
    try:
        if not stat.S_ISREG(p.stat().st_mode):
            raise ConfigError(f"{p}: is not a regular file; pass a .toml panel config")
        with p.open("rb") as f:
            data = f.read((1 << 20) + 1)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config ({exc.strerror or exc})") from None
    if len(data) > 1 << 20:
        raise ConfigError(f"{p}: is larger than 1 MiB, too large for a config")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None


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
    if isinstance(rope, bool) or not isinstance(rope, (int, float)) or not 0 < rope < 0.5:
        raise ConfigError(f"{src}: panel.rope: must be a number between 0 and 0.5 (a share: 0.01 = 1 point)")
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
    return Panel(name, src, float(rope), tuple(entries))


def load_panel(path: Path | str, **overrides) -> Panel:
    return parse_panel(_read_toml(path), str(path), **overrides)


# --------------------------------------------------------------------------- per data set

def discordant_variance(n: int, b: int, c: int) -> float:
    """Variance of the paired difference (b - c) / n: (p_b + p_c - (p_b - p_c)^2) / n, floored at
    1 / (4 n^2) so that a data set with no discordant pair (variance 0) does not take all the
    weight of the pooling; the floor is the variance a single discordant pair in 2n would give."""
    if n <= 0:
        return math.nan
    pb, pc = b / n, c / n
    return max((pb + pc - (pb - pc) ** 2) / n, 1.0 / (4.0 * n * n))


def unpaired_variance(n_on: int, k_on: int, n_off: int, k_off: int) -> float:
    """Variance of k_on/n_on - k_off/n_off for independent arms (an adaptive sampler), with the same
    kind of floor as the paired one."""
    if n_on <= 0 or n_off <= 0:
        return math.nan
    a, r = k_on / n_on, k_off / n_off
    return max(a * (1 - a) / n_on + r * (1 - r) / n_off, 1.0 / (4.0 * max(n_on, n_off) ** 2))


def dataset_row(entry: PanelEntry, summary, traits: dict) -> dict:
    """One data set's row of panel.csv from its Comparison (analysis.summarize) and traits."""
    p = summary.primary or {}
    n = int(p.get("n_on") or 0)
    b, c = int(p.get("only_on") or 0), int(p.get("only_off") or 0)
    diff = float(p.get("diff", math.nan))
    return {"dataset": entry.settings.data.dataset, "slug": entry.slug, "experiment": entry.settings.name,
            "inputs": entry.settings.data.inputs, "n": n, "n_off": int(p.get("n_off") or 0),
            "k_on": int(p.get("k_on") or 0), "k_off": int(p.get("k_off") or 0),
            "good_on": (p.get("k_on") or 0) / n if n else math.nan,
            "good_off": (p.get("k_off") or 0) / n if n else math.nan,
            "b": b, "c": c, "diff": diff, "lo": float(p.get("lo", math.nan)), "hi": float(p.get("hi", math.nan)),
            "p_value": float(p.get("p_value", math.nan)), "outcome": summary.outcome,
            "tolerance": float(summary.tolerance), "paired": bool(p.get("paired", summary.paired)),
            "rows": traits.get("rows"), "log10_rows": math.log10(traits["rows"]) if traits.get("rows") else math.nan,
            "features": traits.get("features"), "classes": traits.get("classes"),
            "majority": traits.get("majority"), "scale_spread": traits.get("scale_spread"),
            "raw_inputs": traits.get("raw_inputs"), "verdict": summary.verdict}


# --------------------------------------------------------------------------- pooling (pure)

@dataclass
class PanelResult:
    name: str
    datasets: "pd.DataFrame"  # one row per data set, with variance and random-effects weight
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

    @property
    def k(self) -> int:
        return 0 if self.pm is None else self.pm.k

    def pooled_table(self) -> "pd.DataFrame":
        """pooled.csv: long format (method, quantity, value, lo, hi)."""
        import pandas as pd

        rows = []
        for label, m in (("random effects, Paule-Mandel", self.pm), ("random effects, DerSimonian-Laird", self.dl)):
            if m is None:
                continue
            rows += [(label, "pooled difference", m.pooled, m.ci_low, m.ci_high),
                     (label, "prediction interval (new data set)", m.pooled, m.pi_low, m.pi_high),
                     (label, "tau2", m.tau2, math.nan, math.nan), (label, "I2", m.i2, math.nan, math.nan),
                     (label, "Q", m.q, math.nan, math.nan), (label, "Q p value", m.q_pvalue, math.nan, math.nan),
                     (label, "data sets", float(m.k), math.nan, math.nan)]
        if self.bayes is not None:
            label = f"Bayesian signed-rank, ROPE {self.bayes.rope:g}"
            rows += [(label, f"P({self.what} better)", self.bayes.p_better, math.nan, math.nan),
                     (label, "P(equivalent)", self.bayes.p_equivalent, math.nan, math.nan),
                     (label, f"P({self.what} worse)", self.bayes.p_worse, math.nan, math.nan)]
        return pd.DataFrame(rows, columns=["method", "quantity", "value", "lo", "hi"])


def pool_panel(rows, *, rope: float = ROPE, name: str = "panel", what: str = "BN", seed: int = 0) -> PanelResult:
    """Pool one row per data set (dicts or a DataFrame with n, b, c, diff, good_on, good_off and
    the MODERATORS traits; lo, hi, outcome optional; rows with paired = False need n_off, k_on and
    k_off instead of b and c). Rows without an estimate (n = 0 or diff NaN)
    are kept in the table but left out of the pooling."""
    import numpy as np
    import pandas as pd

    from .analysis.meta import bayes_signed_rank, meta_regression, random_effects

    df = pd.DataFrame(rows).reset_index(drop=True)
    paired = df["paired"].astype(bool) if "paired" in df else pd.Series(True, index=df.index)
    df["variance"] = [discordant_variance(int(r.n), int(r.b), int(r.c)) if pr else
                      unpaired_variance(int(r.n), int(r.k_on), int(r.n_off), int(r.k_off))
                      for r, pr in zip(df.itertuples(), paired)]
    df["se"] = np.sqrt(df["variance"])
    ok = np.isfinite(df["diff"].astype(float)) & np.isfinite(df["variance"]) & (df["n"] > 0)
    notes = []
    if (~ok).any():
        notes.append("left out of the pooling (no estimate): " + ", ".join(map(str, df.loc[~ok, "slug"]
                                                                               if "slug" in df else df.index[~ok])))
    use = df[ok].reset_index(drop=True)
    pm = dl = bayes = None
    df["weight"] = np.nan
    if len(use) >= 2:
        pm = random_effects(use, effect="diff", variance="variance", method="pm")
        dl = random_effects(use, effect="diff", variance="variance", method="dl")
        df.loc[ok, "weight"] = pm.weights
        with np.errstate(all="ignore"):
            bayes = bayes_signed_rank(use["good_on"].to_numpy(float), use["good_off"].to_numpy(float), rope, seed=seed)
    else:
        notes.append("fewer than 2 data sets with an estimate: nothing is pooled")
    mods = []
    for trait, label in MODERATORS.items():
        row = {"trait": trait, "label": label, "k": len(use)}
        if trait not in use or len(use) < 3:
            mods.append({**row, "supported": False, "note": "needs at least 3 data sets"})
            continue
        try:
            fit = meta_regression(use, trait, effect="diff", variance="variance", method="pm")
        except ValueError as exc:
            mods.append({**row, "supported": False, "note": str(exc)})
            continue
        mods.append({**row, **{k: v for k, v in fit.as_dict().items() if k not in ("trait", "k")}, "note": ""})
    moderators = pd.DataFrame(mods, columns=["trait", "label", "k", "tau2", "intercept", "slope", "slope_se",
                                             "slope_ci_low", "slope_ci_high", "slope_pvalue", "supported", "note"])
    res = PanelResult(name=name, datasets=df, pm=pm, dl=dl, bayes=bayes, moderators=moderators, rope=rope,
                      what=what, notes=notes)
    res.verdict = panel_verdict(res)
    return res


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def panel_verdict(res: PanelResult) -> str:
    """The panel's paragraph, in the per-data-set verdict's style: direction and size first, then
    what to expect on a new data set, heterogeneity, the per-data-set tally, the secondary test and
    the moderators the intervals support."""
    df, pm, what = res.datasets, res.pm, res.what
    tally = df["outcome"].value_counts() if "outcome" in df else {}
    counts = ", ".join(f"{int(tally.get(o, 0))} {o.replace('equivalent', 'no practical difference')}"
                       for o in ("easier", "harder", "equivalent", "cannot tell"))
    if pm is None:
        return f"Too few data sets with an estimate to pool ({len(df)} in the panel; per data set: {counts})."
    k, x, lo, hi = pm.k, 100 * pm.pooled, 100 * pm.ci_low, 100 * pm.ci_high
    ci = f"95% CI {lo:+.1f} to {hi:+.1f}"
    if pm.ci_low > 0:
        head = f"Across {k} data sets {what} raised the share of good configurations by {x:.1f} pts ({ci})"
    elif pm.ci_high < 0:
        head = f"Across {k} data sets {what} lowered the share of good configurations by {-x:.1f} pts ({ci})"
    else:
        head = (f"Across {k} data sets the share of good configurations changed by {x:+.1f} pts with {what} "
                f"({ci}): the pooled effect is not distinguishable from 0")
    if math.isfinite(pm.pi_low):
        pi = f"; on a new data set expect between {_pts(pm.pi_low)} and {_pts(pm.pi_high)} pts (95% prediction interval)"
    else:
        pi = "; no prediction interval with fewer than 3 data sets"
    het = f"; heterogeneity I² = {100 * pm.i2:.0f}% (τ² = {pm.tau2:.4f}, Q p = {pm.q_pvalue:.2g})."
    parts = [head + pi + het, f"Per data set: {counts}."]
    if res.dl is not None:
        parts.append(f"DerSimonian–Laird gives {_pts(res.dl.pooled)} pts ({_pts(res.dl.ci_low)} to "
                     f"{_pts(res.dl.ci_high)}).")
    if res.bayes is not None:
        b = res.bayes
        parts.append(f"Bayesian signed-rank over data sets (ROPE ±{100 * b.rope:g} pt): P({what} better) = "
                     f"{b.p_better:.2f}, P(equivalent) = {b.p_equivalent:.2f}, P({what} worse) = {b.p_worse:.2f}.")
    sup = res.moderators[res.moderators["supported"].astype(bool)] if len(res.moderators) else res.moderators
    if len(sup):
        parts.append("Moderators (meta-regression, slope's 95% CI excludes 0): " + "; ".join(
            f"{r.label}: {_pts(r.slope)} pts per unit ({_pts(r.slope_ci_low)} to {_pts(r.slope_ci_high)})"
            for r in sup.itertuples()) + ".")
    elif k >= 3:
        parts.append("No data-set trait (rows, features, classes, scale spread, raw inputs) moderated the effect "
                     "at the 95% level; with few data sets a moderator must be large to show.")
    parts.append("The effect is the paired difference in the share of configurations within δ of the best, per "
                 "data set; these conclusions hold for the searched space and budget.")
    return " ".join(parts)


# --------------------------------------------------------------------------- running

Progress = Callable[[PanelEntry, list], None]


def summarize_experiment(storage, name: str):
    """The two-arm Comparison of one stored experiment, as `compare` computes it (first non-reference
    arm vs the reference), without the report's budget layer and files."""
    from . import search
    from .analysis import summarize
    from .api import _read_run, _task

    url = search.storage_url(storage)
    studies = {s.study_name for s in search.open_storage(url, create=False).get_all_studies()}
    run = _read_run(url, name, studies)
    s = run.settings
    treatment = next(a for a in s.arm_names() if a != s.reference)
    return summarize(run.df, distributions=s.distributions(), tolerance=s.tolerance, paired=s.paired,
                     sampler=s.sampler, task=_task(s), seed=s.seed, arms=(treatment, s.reference), **run.context)


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
        res = pool_panel([dataset_row(e, summaries[i], traits[i]) for i, e in enumerate(panel.entries)],
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


def write_panel(res: PanelResult, out_dir: Path, panel: Panel) -> list[Path]:
    """panel.csv, pooled.csv, moderators.csv, forest.png and report.md, each written whole or not at all."""
    from .files import atomic_write

    out_dir = Path(out_dir)
    meta = _meta(panel)
    files = []
    cols = ["dataset", "slug", "experiment", "inputs", "paired", "n", "good_on", "good_off", "b", "c", "diff", "lo", "hi",
            "p_value", "variance", "se", "weight", "outcome", "tolerance", "rows", "features", "classes", "majority",
            "scale_spread", "raw_inputs"]
    tables = {"panel.csv": res.datasets[[c for c in cols if c in res.datasets]],
              "pooled.csv": res.pooled_table(), "moderators.csv": res.moderators}
    for fname, table in tables.items():
        table = table.assign(**meta)
        files.append(atomic_write(out_dir / fname, lambda tmp, t=table: t.to_csv(tmp, index=False)))
    files.append(atomic_write(out_dir / "forest.png", lambda tmp: forest_plot(res, tmp)))
    text = markdown(res, panel)
    files.append(atomic_write(out_dir / "report.md", lambda tmp: tmp.write_text(text, encoding="utf-8")))
    return files


def forest_plot(res: PanelResult, path: Path) -> None:
    """One row per data set (its primary interval; the marker's area follows its pooling weight),
    then the pooled diamond (95% CI) and the prediction interval for a new data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    df = res.datasets
    k = len(df)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.38 * (k + 3)))
    ys = np.arange(k)[::-1] + 3
    w = df["weight"].fillna(0).to_numpy(float)
    sizes = 20 + 180 * (w / w.max() if w.max() > 0 else w)
    colors = {"easier": "tab:green", "harder": "tab:red", "equivalent": "tab:blue"}
    for y, r, s in zip(ys, df.itertuples(), sizes):
        c = colors.get(r.outcome, "0.35")
        if np.isfinite(r.lo) and np.isfinite(r.hi):
            ax.plot([100 * r.lo, 100 * r.hi], [y, y], color=c, lw=1.5)
        if np.isfinite(r.diff):
            ax.scatter([100 * r.diff], [y], s=s, marker="s", color=c, zorder=3)
    labels = [f"{r.slug}  (n={r.n}, {r.outcome})" for r in df.itertuples()]
    yt, yl = list(ys), labels
    if res.pm is not None:
        m = res.pm
        ax.fill([100 * m.ci_low, 100 * m.pooled, 100 * m.ci_high, 100 * m.pooled],
                [1.5, 1.8, 1.5, 1.2], color="black", zorder=3)
        yt.append(1.5)
        yl.append(f"pooled, Paule–Mandel ({_pts(m.pooled)} pts)")
        if math.isfinite(m.pi_low):
            ax.plot([100 * m.pi_low, 100 * m.pi_high], [0.6, 0.6], color="black", lw=3, alpha=0.4)
            yt.append(0.6)
            yl.append(f"prediction interval ({_pts(m.pi_low)} to {_pts(m.pi_high)})")
        ax.axvline(100 * m.pooled, color="black", ls=":", lw=0.8)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_yticks(yt)
    ax.set_yticklabels(yl, fontsize=8)
    ax.set_ylim(0, k + 3.5)
    ax.set_xlabel(f"Δ share of good configurations, {res.what} − reference (points)")
    i2 = f", I² = {100 * res.pm.i2:.0f}%" if res.pm is not None else ""
    ax.set_title(f"{res.name}: {res.what} across {k} data sets{i2}", fontsize=10)
    ax.text(0.99, 0.99, "per data set: simultaneous interval of the primary analysis; square area ∝ weight",
            transform=ax.transAxes, ha="right", va="top", fontsize=6.5, color="0.4")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def markdown(res: PanelResult, panel: Panel) -> str:
    import pandas as pd

    def f(x, spec=".1f", scale=100.0):
        return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(scale * x, spec)

    s = panel.entries[0].settings
    lines = [f"# Panel {res.name}: {res.what} across data sets", "", res.verdict, "",
             f"Config `{panel.source}`: {len(panel.entries)} data sets, {s.trials} paired configurations per arm, "
             f"{s.epochs} epochs, sampler {s.sampler}, seed {s.seed}.", "",
             "![forest plot](forest.png)", "", "## Per data set", "",
             "| data set | inputs | n | good with | good without | b | c | Δ pts | interval at δ | p (all levels) | outcome |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in res.datasets.itertuples():
        lines.append(f"| {r.dataset} | {r.inputs} | {r.n} | {f(r.good_on, '.0f')}% | {f(r.good_off, '.0f')}% | {r.b} | "
                     f"{r.c} | {f(r.diff, '+.1f')} | {f(r.lo, '+.1f')} to {f(r.hi, '+.1f')} | "
                     f"{f(r.p_value, '.3g', 1.0)} | {r.outcome} |")
    lines += ["", "Δ = paired good-fraction difference at each data set's declared δ (b: good only with "
              f"{res.what}, c: good only without); the interval is the primary analysis' simultaneous one at that "
              "δ, and p its test over every quality level (so a data set can be 'easier' while its interval at δ "
              "includes 0). "
              "Pooling weights use var = (b/n + c/n − (b/n − c/n)²)/n, floored at 1/(4n²).", "",
              "## Pooled", "", "| method | quantity | value | interval |", "|---|---|---:|---|"]
    for r in res.pooled_table().itertuples():
        pts = r.quantity in ("pooled difference", "prediction interval (new data set)")
        val = f(r.value, '+.1f') + " pts" if pts else f(r.value, '.3g', 1.0)
        iv = f"{f(r.lo, '+.1f')} to {f(r.hi, '+.1f')}" if pts else ""
        lines.append(f"| {r.method} | {r.quantity} | {val} | {iv} |")
    lines += ["", "## Moderators (meta-regression, one trait at a time)", "",
              "| trait | slope (pts per unit) | 95% CI | p | supported |", "|---|---:|---|---:|---|"]
    for r in res.moderators.itertuples():
        if pd.isna(r.slope):
            lines.append(f"| {r.label} | – | {r.note} | – | no |")
        else:
            lines.append(f"| {r.label} | {f(r.slope, '+.2f')} | {f(r.slope_ci_low, '+.2f')} to "
                         f"{f(r.slope_ci_high, '+.2f')} | {f(r.slope_pvalue, '.2g', 1.0)} | "
                         f"{'yes' if r.supported else 'no'} |")
    lines += ["", "A trait is reported as a moderator only where its slope's 95% CI excludes 0.", ""]
    if res.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in res.notes], ""]
    lines += ["## Each data set's verdict", ""]
    for r in res.datasets.itertuples():
        lines += [f"**{r.slug}** (`{r.experiment}`): {getattr(r, 'verdict', '')}", ""]
    lines += ["Each experiment's full report: `bnsearch export --experiment <experiment>` with the same storage.", ""]
    return "\n".join(lines)
