"""A panel: one search space and budget run as paired comparisons on several data sets, then pooled
(docs/design.md, Panel). This module parses the panel config and runs it; the pooling and its words
are analysis.panel (with analysis.panelpool for the sub-spaces, budgets, 2x2 and influence), the
files and the page report.panel.

Each data set is an ordinary experiment `<panel>-<slug>` run by api.run_arms in the same storage
(resumable, the same workers), summarized by analysis.summarize like `compare` does, then pooled by
analysis.panel.pool_panel from one row per data set and panel_extras from each data set's trials.
Nothing here prints; the CLI renders.
"""

from __future__ import annotations

import copy
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .analysis.panel import (ROPE, TOP_QUANTILE, PanelExtras, PanelResult, attach_extras,  # noqa: F401
                             compared_scores, dataset_claim, dataset_row, effect_draws, no_negative_zero,
                             paired_effect, panel_extras, panel_verdict, pool_panel, pts, top_quarter_counts,
                             unpaired_effect)
from .config import ConfigError, Settings, check_jobs, parse_config

ENTRY_KEYS = ("dataset", "name", "inputs", "path", "target", "task", "val_fraction", "test_fraction", "metric")
PANEL_KEYS = ("name", "datasets", "rope", "subspaces")
# Moved to report.panel with the page; still importable from here.
_REPORT_NAMES = ("PANEL_COLUMNS", "forest_labels", "forest_plot", "markdown", "write_panel")


def __getattr__(name: str):
    if name in _REPORT_NAMES:  # imported on first use: matplotlib and the report package are not free
        from .report import panel as page

        return getattr(page, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    subspaces: tuple[str, ...] = ()  # categorical hyperparameters whose every level is a pooled sub-space


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
    """A panel from a parsed TOML document: a [panel] table (name, datasets, rope, subspaces) and the usual
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
    entries, seen, same_data = [], {}, {}
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
        # Pooling treats every entry as an independent data set: the same table fed the same way under
        # a second name would be counted twice (metric, splits and name do not make it another one).
        data = settings.data
        key = (settings.data_digest(), data.target, data.inputs)
        if key in same_data and key[0] != "unreadable":
            raise ConfigError(f"{where}: the same data as entry {same_data[key]} ({PanelEntry(slug, settings).label}); "
                              "a panel pools independent data sets, so list each once (remove this entry)")
        same_data.setdefault(key, i)
        entries.append(PanelEntry(slug, settings))
    named = _named_subspaces(body.get("subspaces", []), entries[0].settings, src)
    return Panel(name, src, None if rope is None else float(rope), tuple(entries), named)


def _named_subspaces(named, settings: Settings, src: str) -> tuple[str, ...]:
    """panel.subspaces, checked against the search space every data set shares, so a name that is not
    a categorical hyperparameter fails before anything trains."""
    from .analysis.panelpool import declared_subspaces, space_choices

    if not isinstance(named, list) or not all(isinstance(x, str) for x in named):
        raise ConfigError(f"{src}: panel.subspaces: give a list of hyperparameter names, e.g. [\"activation\"]")
    try:
        declared_subspaces(space_choices(settings.distributions()), named)
    except ValueError as exc:
        raise ConfigError(f"{src}: panel.subspaces: {exc}; name categorical hyperparameters of [search.space], "
                          "e.g. [\"activation\"]") from None
    return tuple(dict.fromkeys(named))


def load_panel(path: Path | str, **overrides) -> Panel:
    return parse_panel(_read_toml(path), str(path), **overrides)


# --------------------------------------------------------------------------- running

Progress = Callable[[PanelEntry, list], None]


def compared_arms(settings: Settings) -> tuple[str, str]:
    """(treatment, reference) the panel pools. Arms holding the inputs x norm 2x2 compare the norm at the
    reference's inputs (bn-on+std vs bn-off+std: the norm's effect, the 2x2 pooled beside it); any other
    set of arms, the first non-reference arm, as the two-arm report does."""
    from .arms import get, two_by_two

    ref = settings.reference
    cells = two_by_two(settings.arms, settings.data.inputs)
    if cells:
        spec = get(settings.arms, ref)
        return cells[(spec.inputs or settings.data.inputs, spec.norm == "none")], ref
    return next(a for a in settings.arm_names() if a != ref), ref


def _what(settings: Settings) -> str:
    """How the verdict names what is compared: the arms' own words, or for the 2x2 the norm and the
    inputs it is compared on."""
    from .analysis.common import arm_phrases
    from .arms import get, two_by_two

    treatment, ref = compared_arms(settings)
    if two_by_two(settings.arms, settings.data.inputs):
        spec = get(settings.arms, treatment)
        inputs = spec.inputs or settings.data.inputs
        return f"{_norm_label(settings)} on {'raw' if inputs == 'raw' else 'standardized'} inputs"
    return arm_phrases((treatment, ref))["what"]


def _norm_label(settings: Settings) -> str:
    norm = next((s.norm for s in settings.arms if s.norm != "none"), "batchnorm")
    return {"batchnorm": "BN", "layernorm": "LayerNorm"}.get(norm, norm)


def summarize_experiment(storage, name: str, studies):
    """(Comparison, compared scores, trials) of one stored experiment: the two-arm Comparison as
    `compare` computes it for the arms the panel compares (compared_arms), without the report's
    budget layer and files, the scores its primary analysis compared (compared_scores), which the
    pooled scale is counted on, and the experiment's trials frame (sub-spaces, budgets, 2x2). The
    importance and trial-budget tables are left out (summarize's detail): the panel shows neither, and
    `bnsearch export --experiment` gives the experiment's full report. `studies`: the storage's
    get_all_studies(), read once for every data set."""
    from . import search
    from .analysis import summarize
    from .api import _read_run, _task

    url = search.storage_url(storage)
    run = _read_run(url, name, studies)
    s = run.settings
    summary = summarize(run.df, distributions=s.distributions(), tolerance=s.tolerance, paired=s.paired,
                        sampler=s.sampler, task=_task(s), seed=s.seed, arms=compared_arms(s), detail=False,
                        **run.context)
    return summary, compared_scores(run.df, summary), run.df


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
        if panel.entries[0].settings.device == "cuda":  # run_arms' own check comes after a new storage is made
            search.resolve_device("cuda")
        search.open_storage(storage)  # a bad URL fails here, before anything else
        for e in panel.entries:
            check_budget(e.settings, storage, trials)
        check_stored(panel, storage)
        # One run for every data set: the workers start once and go from one data set's queue to the
        # next (search.run_arms, more=), instead of a start and a last-trial wait per data set.
        first, *rest = [e.settings for e in panel.entries]
        run_arms(first, storage, first.arm_names(), jobs=jobs, more=rest, warmup=_warm_imports,
                 progress=(lambda arms: _report_progress(panel, arms, progress)) if progress else None)
        url = search.storage_url(storage)
        studies = search.open_storage(url, create=False).get_all_studies()
        read = [summarize_experiment(storage, e.settings.name, studies) for e in panel.entries]
        res = pool_panel([dataset_row(e, summary, traits[i], scores) for i, (e, (summary, scores, _)) in
                          enumerate(zip(panel.entries, read))],
                         rope=panel.rope, name=panel.name, what=_what(first), seed=first.seed)
        attach_extras(res, pooled_extras(panel, [df for *_, df in read],
                                         paired=all(summary.paired for summary, *_ in read)))
        res.seconds = time.perf_counter() - t0
        from .report.panel import write_panel

        res.files = write_panel(res, out_dir, panel)
    except BaseException:
        for d in made:  # a failed command leaves no empty results folder behind
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return res


def pooled_extras(panel: Panel, frames: list, *, paired: bool) -> PanelExtras:
    """The sub-spaces, epoch budgets and (arms holding the 2x2) inputs x norm of every data set's
    trials, pooled (analysis.panel.panel_extras)."""
    from .arms import two_by_two

    s = panel.entries[0].settings
    return panel_extras({e.slug: df for e, df in zip(panel.entries, frames)}, distributions=s.distributions(),
                        arms=compared_arms(s), epochs=s.epochs, paired=paired, named=panel.subspaces,
                        cells=two_by_two(s.arms, s.data.inputs), norm=_norm_label(s))


def check_stored(panel: Panel, storage) -> None:
    """Refuse, before anything is written, a panel that the stored experiments do not fit. run_arms
    prepares one data set after the other, so a clash found at the third would leave the first two
    enqueued: every entry is checked here first.

    An experiment grown beyond this panel's budget (another panel or `compare` sharing the storage
    ran it with more trials) is refused rather than analysed: a budget never shrinks, so its report
    (`export`) counts every stored trial, and the pooled data sets must share the one budget that
    report.md states. Passing that budget as --trials brings every data set to it."""
    from . import search
    from .config import identity_conflict
    from .search import SearchError

    studies = {st.study_name: st for st in search.open_storage(storage).get_all_studies()}
    grown = []
    for e in panel.entries:
        s = e.settings
        for arm in s.arm_names():
            st = studies.get(search.study_name(s.name, arm))
            if st is None:
                continue
            conflict = identity_conflict(st.user_attrs, s)
            if conflict:
                raise SearchError(f"experiment {s.name!r} already exists in this storage with a different config: "
                                  f"{conflict}; use another panel.name or --storage, or the config it was "
                                  "created with")
            budget = st.user_attrs.get("budget")
            if isinstance(budget, int) and budget > s.trials:
                grown.append((s.name, budget))
    if grown:
        name, budget = grown[0]
        most = max(b for _, b in grown)
        raise SearchError(f"experiment {name!r} already has {budget} trials per arm in this storage, more than this "
                          f"panel's {panel.entries[0].settings.trials} (another run grew it), and the pooled data sets "
                          f"must share one budget; pass --trials {most} to bring every data set to it, or use "
                          "another panel.name or --storage")


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
