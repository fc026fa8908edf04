"""Studies bnsearch did not write: any Optuna storage, any studies in it (`bnsearch analyze`).

Each study becomes one arm of the trials frame `analysis.summarize` reads, so the report is the one
`compare` builds (api.Report: the same verdict, tables, files), not a second analysis:

* scores: the objective's values, negated for a minimize study so that higher is better throughout
  the analysis; the verdict and the answer line turn thresholds back into the objective's own units;
* failures: FAIL and PRUNED trials are runs that gave no usable score, as bnsearch's diverged runs
  are: they count in the diverged rate and score the worst value of all the studies (never good);
* pairing: per comparison, when every parameter set of one study (with its `seed` user attr, if
  any) was also evaluated in the other; unpaired otherwise. The report says which and why;
* δ: --tolerance, else the distance from s* to the pooled 90th percentile of the scores (about the
  best 10% of all trials are good): a foreign objective's validation noise is unknown;
* learning rate: the parameter named `lr`, `learning_rate`, ... (or --param) is read as `lr`, the
  name the LR window, the heterogeneity cells and score_vs_lr.png look for.

Studies bnsearch wrote carry their config: the analysis then takes what `summary` takes from it
(task, metric, δ, the data split's context, seed, the epoch budgets), so both commands give the same
report. Foreign studies get no epoch-budget layer: its sentences speak in accuracy points of a score
that rises (analysis.budget), and a foreign study's intermediate steps need not be epochs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .search import SearchError

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from .api import Report

JOURNAL_PREFIX = "journal:"
JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")
DEFAULT_QUANTILE = 0.9  # default δ: s* minus this pooled quantile of the scores
UNKNOWN_SAMPLER = "as stored"  # the sampler of a foreign study is not recorded in Optuna's storage
LR_NAME = re.compile(r"(?:^|[^a-z])(lr|learning_?rate|eta)(?:[^a-z]|$)")


# --------------------------------------------------------------------------- storage and studies

def open_any_storage(storage: str | None):
    """An RDB URL (bnsearch's read-only opening), or an Optuna JournalStorage file: `journal:PATH`,
    or a path (no `://`) to an existing file that is not an SQLite database."""
    from . import search

    text = search.storage_url(storage) if storage is None else str(storage)
    path = None
    if text.startswith(JOURNAL_PREFIX):
        path = Path(text[len(JOURNAL_PREFIX):]).expanduser()
    elif "://" not in text:
        p = Path(text).expanduser()
        if p.is_file() and _is_sqlite(p):
            text = f"sqlite:///{p.resolve()}"
        elif p.is_file() or p.suffix in JOURNAL_SUFFIXES:
            path = p
        else:
            raise SearchError(f"--storage: {text!r} is neither a database URL (e.g. sqlite:///studies.db) nor an "
                              "existing Optuna journal file (e.g. journal:optuna.log)")
    if path is not None:
        if not path.is_file():
            raise SearchError(f"--storage: no journal file at {path}; give the JournalStorage file the studies were "
                              "written to")
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except Exception as exc:  # a file of something else: Optuna's replay fails on its first line
            raise SearchError(f"--storage: {path} is not an Optuna journal file ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None
    with search.reading():  # a report never writes to the storage it reads
        return search.open_storage(text, create=False)


def _is_sqlite(p: Path) -> bool:
    try:
        with p.open("rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _load(storage, names: Sequence[str], shown: str) -> list["optuna.Study"]:
    import optuna

    known = [s.study_name for s in storage.get_all_studies()]
    out = []
    for name in names:
        if name not in known:
            listed = ", ".join(sorted(known)[:12]) + (", …" if len(known) > 12 else "")
            raise SearchError(f"--study {name}: no such study in {shown}; studies here: {listed or 'none'}")
        out.append(optuna.load_study(study_name=name, storage=storage))
    return out


# --------------------------------------------------------------------------- the trials frame

@dataclass
class Foreign:
    """What analyze_studies read: the trials frame and everything `summarize` takes besides it."""
    df: "pd.DataFrame"
    records: list[dict]
    arms: list[str]
    reference: str
    experiment: str
    distributions: dict
    objective: str
    direction: str  # "maximize" | "minimize"
    tolerance: float | None  # None: derived from the validation noise (bnsearch's own studies)
    tolerance_source: str
    paired: dict[str, tuple[bool, str]]  # arm -> (paired, why)
    epochs: int | None  # the epoch-budget layer's full budget (bnsearch's own studies), None without
    notes: list[str] = field(default_factory=list)  # every comparison's
    report_notes: list[str] = field(default_factory=list)  # what was left out
    summarize_kw: dict = field(default_factory=dict)
    own: Any = None  # the stored bnsearch Settings, for studies bnsearch wrote

    @property
    def sign(self) -> int:
        return -1 if self.direction == "minimize" else 1


def _objective(studies, index: int | None) -> tuple[int, str, str]:
    """(objective index, its name, direction), the same for every study, or one line saying why not."""
    from optuna.study import StudyDirection

    multi = [s for s in studies if len(s.directions) > 1]
    if index is None and multi:
        s = multi[0]
        names = s.metric_names or [f"objective {i}" for i in range(len(s.directions))]
        raise SearchError(f"study {s.study_name!r} has {len(s.directions)} objectives ({', '.join(names)}); choose "
                          f"one with --objective 0..{len(s.directions) - 1}")
    i = index or 0
    for s in studies:
        if not 0 <= i < len(s.directions):
            raise SearchError(f"--objective {i}: study {s.study_name!r} has {len(s.directions)} "
                              f"objective{'s' if len(s.directions) > 1 else ''} (0..{len(s.directions) - 1})")
    word = {StudyDirection.MAXIMIZE: "maximize", StudyDirection.MINIMIZE: "minimize"}
    dirs = [word.get(s.directions[i], "not set") for s in studies]
    if len(set(dirs)) > 1:
        a, b = next((x, y) for x in range(len(studies)) for y in range(len(studies)) if dirs[x] != dirs[y])
        raise SearchError(f"studies {studies[a].study_name!r} and {studies[b].study_name!r} differ in direction "
                          f"({dirs[a]} vs {dirs[b]}): their scores cannot be compared")
    if dirs[0] == "not set":
        raise SearchError(f"study {studies[0].study_name!r} has no optimization direction")
    names = [(s.metric_names or [None] * len(s.directions))[i] for s in studies]
    name = next((n for n in names if n), None) or ("value" if len(studies[0].directions) == 1 else f"objective {i}")
    return i, name, dirs[0]


def _arm_names(names: Sequence[str]) -> tuple[list[str], str]:
    """Arms and the experiment label: bnsearch's own `<experiment>/<arm>` studies (any names with one
    common prefix before a '/') read as that experiment's arms, so its words (with BN) are kept."""
    heads = {n.rsplit("/", 1)[0] for n in names if "/" in n}
    if len(heads) == 1 and all("/" in n for n in names):
        return [n.rsplit("/", 1)[1] for n in names], heads.pop()
    return list(names), " vs ".join(names)


def _merge(dists: list) -> Any:
    """One distribution for a parameter the trials sampled from several (a space that changed):
    the span of the numeric ranges, or the union of the choices."""
    from optuna import distributions as od

    first = dists[0]
    if all(d == first for d in dists):
        return first
    if all(isinstance(d, od.CategoricalDistribution) for d in dists):
        choices = list(dict.fromkeys(c for d in dists for c in d.choices))
        return od.CategoricalDistribution(choices)
    if all(isinstance(d, od.IntDistribution) for d in dists):
        return od.IntDistribution(min(d.low for d in dists), max(d.high for d in dists),
                                  log=all(d.log for d in dists))
    if all(isinstance(d, (od.FloatDistribution, od.IntDistribution)) for d in dists):
        return od.FloatDistribution(float(min(d.low for d in dists)), float(max(d.high for d in dists)),
                                    log=all(d.log for d in dists))
    return first  # categorical in one study, numeric in another: the first as found (noted)


def _describe_space(d) -> str:
    from optuna import distributions as od

    if isinstance(d, od.CategoricalDistribution):
        return "{" + ", ".join(map(str, d.choices)) + "}"
    return f"[{d.low:g}, {d.high:g}]" + (" log" if getattr(d, "log", False) else "")


def _positive_numeric(d) -> bool:
    from optuna import distributions as od

    return isinstance(d, (od.FloatDistribution, od.IntDistribution)) and d.low > 0


def _lr_param(distributions: dict, param: str | None, notes: list[str]) -> str | None:
    """The parameter read as the learning rate: --param, else the one lr-like name with positive
    numeric values (a log range preferred)."""
    if param is not None:
        if param not in distributions:
            raise SearchError(f"--param {param}: no such parameter in these studies; parameters: "
                              f"{', '.join(distributions)}")
        if not _positive_numeric(distributions[param]):
            raise SearchError(f"--param {param}: the LR window counts decades, so it needs a numeric parameter with "
                              f"positive values; {param} ranges over {_describe_space(distributions[param])}")
        return param
    like = [p for p, d in distributions.items() if LR_NAME.search(p.lower()) and _positive_numeric(d)]
    if len(like) > 1:
        logged = [p for p in like if getattr(distributions[p], "log", False)]
        like = logged if len(logged) == 1 else [p for p in like if p.lower() in ("lr", "learning_rate")] or like
    if len(like) > 1:
        notes.append(f"no LR window: several learning-rate-like parameters ({', '.join(like)}); name one with --param")
        return None
    return like[0] if like else None


def _key(trial) -> tuple:
    """A parameter set: what pairs two trials of different studies (with the seed they ran with, when stored)."""
    params = tuple(sorted((k, v) for k, v in trial.params.items()))
    seed = trial.user_attrs.get("seed")
    try:
        hash(seed)
    except TypeError:
        seed = repr(seed)
    return params, seed


def _pairing(keys: dict[str, list[tuple]], treat: str, ref: str, study_names: dict[str, str],
             seeded: bool) -> tuple[bool, str]:
    """Paired when every parameter set of one study was also evaluated in the other."""
    from .analysis.common import MIN_TRIALS_TO_TELL

    kt, kr = set(keys[treat]), set(keys[ref])
    shared = len(kt & kr)
    how = "matched by parameters and the seed user attr" if seeded else "matched by parameters"
    t, r = study_names[treat], study_names[ref]
    small, large = (t, r) if len(kt) <= len(kr) else (r, t)
    if shared >= MIN_TRIALS_TO_TELL and shared == min(len(kt), len(kr)):
        if len(kt) == len(kr):
            return True, f"paired: {t!r} and {r!r} evaluated the same {shared} parameter sets ({how})"
        return True, f"paired: all {shared} parameter sets of {small!r} were also evaluated in {large!r} ({how})"
    if shared == 0:
        why = f"{t!r} and {r!r} evaluated no parameter set in common"
    elif shared < MIN_TRIALS_TO_TELL:
        why = (f"{t!r} and {r!r} share only {shared} parameter set{'s' if shared > 1 else ''} (pairs need "
               f"{MIN_TRIALS_TO_TELL})")
    else:
        why = (f"{t!r} and {r!r} share only {shared} of their {len(kt)} and {len(kr)} parameter sets; pairing needs "
               "every set of one study in the other")
    return False, f"unpaired (Mee score intervals, arms permuted between trials): {why} ({how})"


def read_studies(studies: Sequence, reference: str | None = None, *, storage=None, tolerance: float | None = None,
                 param: str | None = None, objective: int | None = None) -> Foreign:
    """The studies (names in `storage`, or optuna.Study objects) as one trials frame and its context."""
    import numpy as np
    import pandas as pd
    from optuna.trial import TrialState

    from . import search

    if isinstance(studies, (str, bytes)) or len(studies) < 2:
        raise SearchError("analyze: give at least two studies (--study A --study B)")
    if all(isinstance(s, str) for s in studies):
        shown = search.masked(str(storage)) if storage else search.masked(search.storage_url(None))
        loaded = _load(open_any_storage(storage), list(studies), shown)
    elif all(hasattr(s, "get_trials") and hasattr(s, "directions") for s in studies):
        loaded, shown = list(studies), "the given studies"
    else:
        raise SearchError("analyze_studies: give study names (with storage=) or optuna.Study objects, not a mix")
    names = [s.study_name for s in loaded]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise SearchError(f"--study {twice}: given twice; each study is one arm")
    arms, experiment = _arm_names(names)
    if "delta" in arms:
        raise SearchError("--study delta: 'delta' names the difference column of every table; rename the study")
    by_name = dict(zip(names, arms)) | dict(zip(arms, arms))
    if reference is not None and reference not in by_name:
        raise SearchError(f"--reference {reference}: not one of the studies given ({', '.join(names)})")
    ref = by_name[reference] if reference is not None else arms[-1]
    study_of = dict(zip(arms, names))
    if tolerance is not None and not (math.isfinite(tolerance) and tolerance >= 0):
        raise SearchError(f"--tolerance {tolerance}: must be a finite number ≥ 0, in the objective's units")

    index, obj_name, direction = _objective(loaded, objective)
    sign = -1 if direction == "minimize" else 1
    notes: list[str] = []
    report_notes: list[str] = []

    # Parameter spaces: a study's is what its trials sampled from.
    spaces: dict[str, dict[str, list]] = {}
    for arm, s in zip(arms, loaded):
        for t in s.get_trials(deepcopy=False):
            for p, d in t.distributions.items():
                spaces.setdefault(arm, {}).setdefault(p, []).append(d)
    for arm in arms:
        if not spaces.get(arm):
            raise SearchError(f"study {study_of[arm]!r} has no trial with parameters: nothing to compare")
    for arm in arms:
        if arm != ref and not set(spaces[arm]) & set(spaces[ref]):
            raise SearchError(f"studies {study_of[arm]!r} and {study_of[ref]!r} have disjoint parameter spaces "
                              f"({', '.join(spaces[arm])} vs {', '.join(spaces[ref])}): they are not searches of one "
                              "space")
    per_study = {arm: {p: _merge(ds) for p, ds in sp.items()} for arm, sp in spaces.items()}
    order = list(dict.fromkeys(p for arm in arms for p in spaces[arm]))
    distributions = {p: _merge([per_study[a][p] for a in arms if p in per_study[a]]) for p in order}
    differ = [p for p in order if len({repr(per_study[a].get(p)) for a in arms}) > 1]
    if differ:
        notes.append("the studies' search spaces differ (" + "; ".join(
            f"{p}: " + ", ".join(f"{_describe_space(per_study[a][p]) if p in per_study[a] else 'not searched'} in "
                                 f"{study_of[a]!r}" for a in arms) for p in differ)
            + "): the comparison includes the effect of the spaces")

    own = _own_settings(loaded)
    lr = _lr_param(distributions, param, notes)
    rename = {lr: "lr"} if lr and lr != "lr" else {}
    if rename and "lr" in distributions:  # the analysis reads the learning rate under the name lr
        raise SearchError(f"--param {lr}: these studies already have a parameter lr, which the LR window reads; "
                          "omit --param" if param else
                          f"{lr!r} looks like the learning rate, but these studies also have a parameter lr "
                          f"({_describe_space(distributions['lr'])}) that is not one; rename one of them")
    if rename:
        notes.append(f"lr is the studies' parameter {lr!r} ({'--param' if param else 'found by its name'}): the LR "
                     "window and the lr cells read it")
    distributions = {rename.get(p, p): d for p, d in distributions.items()}

    # Every finished trial, in the objective's units (value) and as the analysis reads it (score).
    rows, records, keys = [], [], {arm: [] for arm in arms}
    left = {}
    state_names = {TrialState.COMPLETE: "COMPLETE", TrialState.FAIL: "FAIL", TrialState.PRUNED: "PRUNED"}
    seeded = False
    as_failure = own is None  # bnsearch's own FAIL is an errored worker, re-queued: summary skips it
    for arm, s in zip(arms, loaded):
        for t in sorted(s.get_trials(deepcopy=False), key=lambda t: t.number):
            if t.state not in state_names:
                left[arm] = left.get(arm, 0) + 1
                continue
            value = t.values[index] if t.state == TrialState.COMPLETE and t.values else None
            ok = value is not None and math.isfinite(value)
            ua = t.user_attrs
            steps = sorted(t.intermediate_values)
            curve = [sign * float(t.intermediate_values[k]) + 0.0 for k in steps]
            seconds = ua.get("seconds")
            if not isinstance(seconds, (int, float)):
                seconds = ((t.datetime_complete - t.datetime_start).total_seconds()
                           if t.datetime_complete and t.datetime_start else math.nan)
            test = ua.get("test_score")
            seeded |= "seed" in ua
            keys[arm].append(_key(t))
            rows.append({
                "experiment": experiment, "arm": arm, "number": t.number,
                # summarize reads COMPLETE rows; a failure is one, at the worst score (filled in below)
                "state": "COMPLETE" if as_failure else state_names[t.state], "optuna_state": state_names[t.state],
                "value": value if ok else math.nan,
                "key": keys[arm][-1], "seed": ua.get("seed"),
                "score": sign * value + 0.0 if ok else math.nan,  # + 0.0: never a -0.0
                "test_score": sign * float(test) + 0.0 if isinstance(test, (int, float)) and ok else math.nan,
                "diverged": (not ok and as_failure) or bool(ua.get("diverged", False)),
                "epochs_run": ua.get("epochs_run") if isinstance(ua.get("epochs_run"), int) else len(curve) or None,
                "seconds": float(seconds), "val_curve": curve or None,
                **{rename.get(p, p): v for p, v in t.params.items()},
            })
            records.append(_record(experiment, arm, s.study_name, t, value if ok else None))
    for arm, n in left.items():
        report_notes.append(f"{n} trial{'s' if n > 1 else ''} of {study_of[arm]!r} still running or waiting "
                            "were left out")
    df = pd.DataFrame(rows)
    if df.empty or not df["score"].notna().any():
        raise SearchError(f"no completed trial with a finite value in {', '.join(repr(n) for n in names)}: nothing "
                          "to compare")
    worst = float(df["score"].min())
    failures = df["score"].isna() & (df["state"] == "COMPLETE")
    df.loc[failures, "score"] = worst
    counts = df.loc[failures, "optuna_state"].value_counts()
    bad = [f"{counts[s]} {s.lower()}" for s in ("FAIL", "PRUNED") if s in counts]
    if bad:
        notes.append(f"{' and '.join(bad)} trials count as failures, as diverged runs do: in the diverged rate, and "
                     f"scored as the worst completed trial of all the studies ({obj_name} {_user(worst, sign)}), never "
                     "good")

    # Parameter sets: one config_index each, in the order they were first run.
    first: dict[tuple, tuple] = {}
    for i, arm in enumerate(arms):
        for number, key in zip(df.loc[df["arm"] == arm, "number"], keys[arm]):
            first[key] = min(first.get(key, (math.inf, i)), (number, i))
    index_of = {k: j for j, k in enumerate(sorted(first, key=first.get))}
    df["config_index"] = pd.array([index_of[k] for k in df["key"]], dtype="Int64")
    paired = {arm: _pairing(keys, arm, ref, study_of, seeded) for arm in arms if arm != ref}

    df = df.drop(columns=["key"])
    if not df["seed"].map(lambda v: v is None or isinstance(v, int)).all():
        df["seed"] = df["seed"].astype(str)  # seeds of any type: one column type for trials.csv

    kw: dict[str, Any] = dict(task=f"{direction} {obj_name}", sampler=UNKNOWN_SAMPLER, seed=0)
    source = ""
    if own is not None:
        kw, own_tolerance = _own_context(own)
        source = "" if tolerance is None else "set by --tolerance"
        tolerance = own_tolerance if tolerance is None else tolerance
    elif tolerance is None:
        pooled = df["score"].to_numpy(float)
        s_star = float(np.max(pooled))
        tolerance = round(s_star - float(np.quantile(pooled, DEFAULT_QUANTILE, method="lower")), 12)
        source = (f"default for a foreign objective, whose validation noise is unknown: s* minus the "
                  f"{100 * DEFAULT_QUANTILE:.0f}th percentile of all {len(pooled)} scores, so about the best "
                  f"{100 - 100 * DEFAULT_QUANTILE:.0f}% are good; set --tolerance in {obj_name}'s units")
    else:
        source = "set by --tolerance"
    if kw["sampler"] == UNKNOWN_SAMPLER:
        notes.append("sampler: as stored; the analysis reads each study's trials as independent draws from its space "
                     "(a random search). Paired tests condition on the parameter sets and hold however they were "
                     "chosen; for an adaptive sampler (Optuna's default TPE) the good fractions and trials to a good "
                     "one describe these trials, not a random search")
    if own is None:
        notes.append("tuning-curve bands are unbounded (−∞ to ∞): a distribution-free band needs the bounds of "
                     f"the score, which {obj_name} does not state; the curves' point estimates stand")
    if sign < 0:
        notes.insert(0, f"scores are −{obj_name}: the studies minimize {obj_name}, so every score, s* and curve here "
                        f"is its negative and higher is better throughout (a score of −0.25 is a {obj_name} of 0.25)")
    return Foreign(df=df, records=records, arms=arms, reference=ref, experiment=experiment,
                   distributions=distributions, objective=obj_name, direction=direction, tolerance=tolerance,
                   tolerance_source=source, paired=paired, epochs=own.epochs if own is not None else None,
                   notes=notes, report_notes=report_notes,
                   summarize_kw=kw, own=own)


def _user(score: float, sign: int) -> str:
    v = sign * score + 0.0
    return f"{v:.4g}"


def _record(experiment: str, arm: str, study: str, t, value) -> dict:
    """trials.jsonl's record of one trial: everything Optuna stored, as readback writes bnsearch's own."""
    import json

    from optuna.distributions import distribution_to_json

    return {"experiment": experiment, "arm": arm, "study": study, "number": t.number, "state": t.state.name,
            "value": value, "values": list(t.values) if t.values else None, "params": dict(t.params),
            "distributions": {k: json.loads(distribution_to_json(d)) for k, d in t.distributions.items()},
            "user_attrs": dict(t.user_attrs),
            "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
            "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
            "datetime_complete": t.datetime_complete.isoformat() if t.datetime_complete else None}


def _own_settings(studies):
    """The stored config when every study is an arm of one bnsearch experiment, else None."""
    from .config import ConfigError, load_config_text

    texts = {s.user_attrs.get("config_toml") for s in studies}
    if len(texts) != 1 or None in texts:
        return None
    try:
        return load_config_text(texts.pop(), f"storage:{studies[0].study_name}")
    except (ConfigError, ValueError):
        return None


def _own_context(settings) -> tuple[dict, float | None]:
    """summarize's arguments for a bnsearch experiment, as api._build_report passes them."""
    import contextlib

    from .api import SUMMARIZE_CONTEXT, _task, reference_context

    context: dict = {}
    with contextlib.suppress(OSError, ValueError):  # data no longer readable: no context, as in summary
        context = {k: v for k, v in reference_context(settings).items() if k in SUMMARIZE_CONTEXT}
    sampler = settings.sampler if settings.sampler not in ("tpe", "gp") else UNKNOWN_SAMPLER
    kw = dict(task=_task(settings), sampler=sampler, seed=settings.seed, **context)
    return kw, settings.tolerance


# --------------------------------------------------------------------------- the report

def analyze_studies(studies: Sequence, reference: str | None = None, *, storage=None, tolerance: float | None = None,
                    param: str | None = None, objective: int | None = None) -> "Report":
    """The report `compare` builds, for any Optuna studies of one objective: every study against the
    reference (default: the last), `publish(report, out)` writes its files.

    studies: study names in `storage` (an RDB URL, or a JournalStorage file: `journal:PATH` or a plain
    path), or optuna.Study objects. tolerance: δ in the objective's units (default: s* minus the pooled
    90th percentile). param: the parameter read as the learning rate. objective: which value of a
    multi-objective study.
    """
    import optuna

    from . import __version__
    from .analysis import summarize
    from .analysis.verdict import verdict
    from .api import Report
    from .optuna_logging import quiet_optuna
    from .report import Comparisons

    with quiet_optuna():
        f = read_studies(studies, reference, storage=storage, tolerance=tolerance, param=param, objective=objective)
    comparisons = {}
    for arm in f.arms:
        if arm == f.reference:
            continue
        paired, why = f.paired[arm]
        c = summarize(f.df, distributions=f.distributions, tolerance=f.tolerance, paired=paired,
                      arms=(arm, f.reference), **f.summarize_kw)
        if f.tolerance_source:
            c.tolerance_source = f.tolerance_source
        if f.own is None:
            # the score is the objective's (summarize names any non-accuracy score r2)
            c.context.update(metric=f.objective, objective=f.objective, sign=f.sign, failures="failed or were pruned")
            c.notes = [why, *f.notes, *c.notes]
            c.verdict = verdict(c)  # with the objective's own words (context)
        comparisons[arm] = c
    arms = _arms_layer(f, comparisons) if f.epochs else None
    own = f.own
    meta: dict[str, Any] = {"experiment": f.experiment, "studies": ", ".join(
        f"{a}{' (reference)' if a == f.reference else ''}" for a in f.arms)}
    meta["pairing"] = "; ".join((f"{a} vs {f.reference}: " if len(f.paired) > 1 else "") + why
                                for a, (_, why) in f.paired.items())
    if own is None:
        meta.update(objective=f.objective, direction=f.direction,
                    score_metric=("−" if f.sign < 0 else "") + f.objective)
    else:
        meta.update(config_hash=own.config_hash(), seed=own.seed,
                    score_metric="r2" if comparisons[next(iter(comparisons))].task == "regression" else own.metric)
    meta.update(bnsearch_version=__version__, optuna_version=optuna.__version__, repeats=1)
    if storage is not None or all(isinstance(s, str) for s in studies):
        from .search import masked, storage_url

        meta["storage"] = masked(str(storage) if storage else storage_url(None))
    view = Comparisons(f.arms, f.reference, comparisons)
    return Report(f.df, view, meta, records=f.records, arms=arms, notes=f.report_notes)


def _arms_layer(f: Foreign, comparisons: dict):
    from .analysis.multiarm import analyse_arms

    kw = {k: v for k, v in f.summarize_kw.items() if k != "reference"}  # analyse_arms takes no reference model
    paired = all(p for p, _ in f.paired.values())
    from . import arms as arm_specs

    s = f.own
    norm = next((a.norm for a in s.arms if a.norm != "none"), "batchnorm")
    extra = dict(descriptions={a.name: a.describe(s.data.inputs) for a in s.arms},
                 cells=arm_specs.two_by_two(s.arms, s.data.inputs),
                 norm_label={"batchnorm": "BN", "layernorm": "LayerNorm"}[norm])
    return analyse_arms(f.df, arms=f.arms, reference=f.reference, epochs=f.epochs, tolerance=f.tolerance,
                        distributions=f.distributions, paired=paired, summaries=comparisons, **kw, **extra)
