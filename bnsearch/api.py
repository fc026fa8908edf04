"""Library functions behind the CLI commands: each takes plain arguments and returns data.

Nothing here prints or configures logging; progress is reported through callbacks, and the CLI
(cli.py) alone renders to the terminal.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from . import search
from .config import TABLE_SUFFIXES, ConfigError, Settings, check_jobs, load_config, table_config  # noqa: F401
from .data import DataChanged
from .errors import RunFailed  # noqa: F401  (the CLI catches api.RunFailed)
from .search import ARMS, SearchError, arm_of, arm_state, list_experiments, load_trials  # noqa: F401

if TYPE_CHECKING:
    import pandas as pd


def _settings(config: Path | str | None, **overrides) -> Settings:
    return load_config(config).with_overrides(**overrides)


Progress = Callable[[list[search.ArmStudy]], None]


def run_study(config=None, bn: str | None = "on", *, arm: str | None = None, trials=None, storage=None, seed=None,
              jobs=None, sampler=None, device=None, progress: Progress | None = None,
              pack=None) -> list[search.ArmStudy]:
    """Run (or resume) one arm: ``arm`` by name (any arm of the config), else ``bn`` "on"/"off".
    Returns the prepared arm, whose study holds the trials.

    `progress(arms)` is called with the arms' storage-backed state as trials finish (see
    search.run_arms); the CLI draws its progress bar from it. Nothing is printed.
    `pack`: "off", "auto" (None) or a pack size K (search/packing.py; a run option, not the experiment's).
    """
    arm = arm or arm_of(bn)
    settings = _settings(config, trials=trials, seed=seed, sampler=sampler, device=device)
    check_jobs(jobs)
    pack = check_pack(pack)
    if settings.sampler in ("tpe", "gp") and settings.paired:
        settings = settings.with_overrides(paired=False)
    check_budget(settings, storage, trials)
    return run_arms(settings, storage, [arm], jobs=jobs, progress=progress, pack=pack)


def check_pack(pack):
    """`--pack` as the workers take it ("auto", "off" or K); bad input is one line (SearchError)."""
    from .search.packing import parse_pack

    return parse_pack(pack)


def run_arms(settings: Settings, storage, arms: list[str], *, jobs=None,
             progress: Progress | None = None, warmup: Callable[[], None] | None = None,
             repeat_of: tuple[str, int] | None = None, more: list[Settings] = (), pack=None) -> list[search.ArmStudy]:
    """Prepare and run the given arms of one experiment (and every arm of the `more` experiments,
    with the same workers: search.run_arms); a failed run raises RunFailed."""
    check_jobs(jobs)
    pack = check_pack(pack)
    try:
        return search.run_arms(settings, search.storage_url(storage), arms, jobs=jobs, progress=progress,
                               warmup=warmup, repeat_of=repeat_of, more=more, pack=pack)
    except search.StorageFailure:
        raise
    except DataChanged as exc:  # found by a worker mid-run: the run failed (what finished stays valid)
        raise RunFailed(str(exc)) from None
    except MemoryError:
        # A rerun would fail the same way: say what to change, not "rerun to resume".
        raise RunFailed(search.OUT_OF_MEMORY) from None
    except RuntimeError as exc:
        if search.is_out_of_memory(exc):
            raise RunFailed(search.OUT_OF_MEMORY) from None
        raise RunFailed(str(exc)) from None


def _stored_studies(storage) -> list:
    """The storage's studies, or none when nothing is stored yet (a storage that cannot be opened
    fails later with its own message)."""
    try:
        return search.open_storage(storage, create=False).get_all_studies()
    except SearchError:
        return []


def check_budget(settings: Settings, storage, trials: int | None) -> None:
    """A `--trials` below the stored budget is refused (docs/design.md, Budget): a budget never
    shrinks, because the finished trials beyond it stay part of the experiment and its report."""
    if trials is None:
        return
    studies = _stored_studies(storage)
    for st in studies:
        budget = st.user_attrs.get("budget")
        if st.study_name.rsplit("/", 1)[0] == settings.name and isinstance(budget, int) and trials < budget:
            raise SearchError(
                f"--trials {trials}: experiment {settings.name!r} already has a budget of {budget} trials per arm in "
                f"this storage, and a budget never shrinks; omit --trials (or pass {budget} or more) to use what is "
                "stored, or set a new experiment.name for a smaller experiment")


def run_worker(experiment: str, bn: str | None = None, *, arm: str | None = None, storage=None, device=None,
               progress: Progress | None = None, pack=None) -> int:
    """Join an existing experiment (from any machine) and run trials until none is left: one arm
    (``arm`` or ``bn``) or, by default, every arm of the experiment.
    Returns the number of trials this worker finished."""
    url = search.storage_url(storage)
    pack = check_pack(pack)
    loaded = worker_arms(experiment, bn, arm=arm, storage=storage)  # fails fast on a wrong name or URL
    arms = [a.arm for a in loaded]
    device = device or loaded[0].settings.device
    if progress:
        progress(loaded)
    return search.run_worker(url, experiment, arms, device=device, pack=pack,
                             on_trial=(lambda *_: progress(loaded)) if progress else None)


def worker_arms(experiment: str, bn: str | None = None, *, arm: str | None = None, storage=None) -> list[search.ArmStudy]:
    """The arms a worker would join, loaded from storage (raises SearchError on a wrong name or URL)."""
    url = search.storage_url(storage)
    arms = [arm] if arm else [arm_of(bn)] if bn else stored_arms(url, experiment)
    return [search.load_arm(url, experiment, a) for a in arms]


def stored_arms(storage, experiment: str, all_studies=None) -> list[str]:
    """The arm names of a stored experiment, from the config its studies carry (the default pair for
    experiments stored before arms existed). `all_studies`: the storage's get_all_studies(), when the
    caller has it (a panel reads 33 experiments: reading every study's attrs again for each cost
    ~80 ms apiece)."""
    return _first_arm(storage, experiment, all_studies).settings.arm_names()


def _first_arm(storage, experiment: str, all_studies=None):
    """The experiment's first stored arm that carries its config (stored_arms)."""
    url = search.storage_url(storage)
    if all_studies is None:
        all_studies = search.open_storage(url, create=False).get_all_studies()
    for s in all_studies:
        if s.study_name.rsplit("/", 1)[0] == experiment and "config_toml" in s.user_attrs:
            return search.load_arm(url, experiment, s.study_name.rsplit("/", 1)[1])
    known = sorted({s.study_name.rsplit("/", 1)[0] for s in all_studies if "/" in s.study_name})
    raise SearchError(f"no experiment {experiment!r} in this storage; experiments here: {', '.join(known) or 'none'}")


# --------------------------------------------------------------------------- compare / summary / export

def repeat_settings(settings: Settings, repeats: int) -> list[Settings]:
    """Repeat r of an experiment: seed + r, name `<name>-rep<r>` (repeat 0 keeps the plain name, so a
    single run and the first repeat are the same experiment)."""
    if repeats < 1:
        raise ConfigError(f"--repeats must be at least 1 (got {repeats})")
    return [settings if r == 0 else settings.with_overrides(seed=settings.seed + r, name=f"{settings.name}-rep{r}")
            for r in range(repeats)]


def check_repeats(settings: Settings, repeats: int) -> None:
    """Repeats multiply the work: the trials of all repeats together obey the per-arm trials limit
    (config.max_trials), or `--repeats` would be a way around it (100,000 repeats: a day of work)."""
    from .config import max_trials

    if repeats < 1:
        raise ConfigError(f"--repeats must be at least 1 (got {repeats})")
    limit, why = max_trials()
    if repeats * settings.trials > limit:
        raise ConfigError(f"--repeats {repeats} x {settings.trials} trials is {repeats * settings.trials:,} trials per "
                          f"arm, too many (at most {limit:,}: {why}); use fewer repeats or trials")


def check_out_dir(out: Path) -> Path:
    """Create the export folder and prove it is writable before any training starts."""
    import os
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
        # A fixed probe name would follow a link planted under it and empty the file it points to:
        # mkstemp makes a new name with O_EXCL, so the file written is always one made here.
        fd, probe = tempfile.mkstemp(prefix=".bnsearch-write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SearchError(f"--out: cannot write to {out} ({exc.strerror or exc}); choose a writable folder") from None
    return out


def run_compare(config=None, *, trials=None, repeats: int | None = None, jobs=None, storage=None, out=None, device=None,
                seed=None, epochs=None, progress: Progress | None = None,
                on_repeat: Callable[[int, Settings], None] | None = None, pack=None) -> "Report":
    """Run what is missing of every arm (for every repeat), then analyse and export.

    Returns the Report; its `files` are what was written to `out` (default results/<experiment>/).
    `on_repeat(i, settings)` is called before repeat i runs. Nothing is printed.
    repeats: None takes the config's (Settings.default_repeats: 10 for an adaptive sampler, else 1).
    `pack`: as in run_study; how trials were packed is a note of the report, not part of the experiment.
    """
    settings = _settings(config, trials=trials, device=device, seed=seed, epochs=epochs)
    check_jobs(jobs)
    pack = check_pack(pack)
    repeats = settings.default_repeats() if repeats is None else repeats
    check_repeats(settings, repeats)
    runs = repeat_settings(settings, repeats)
    out_dir = Path(out) if out else Path("results") / settings.name
    refuse_other_data(settings, storage)
    if settings.data.dataset == "csv" or ":" in settings.data.dataset:  # bad data is bad input: refuse it before storage or folders appear
        from .data import load_prepared  # remembered for run_arms' own check and the stored data context
        load_prepared(settings.data, settings.seed)
    made = [d for d in (out_dir, *out_dir.parents) if not d.exists()]
    check_out_dir(out_dir)
    try:
        search.open_storage(storage)  # a bad URL fails here, before anything else
        check_budget(settings, storage, trials)
        for i, s in enumerate(runs):
            if on_repeat:
                on_repeat(i, s)
            run_arms(s, storage, s.arm_names(), jobs=jobs, progress=progress, pack=pack,
                     warmup=lambda s=s: _warm_report(s), repeat_of=(settings.name, i) if i else None)
        report = build_report(storage, settings.name)
        report.files = publish(report, out_dir)
    except BaseException:
        for d in made:  # a failed command leaves no empty results folder behind
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return report


def from_data_file(settings: Settings) -> bool:
    """Settings made by table_config (`compare data.csv --target y`): named after the file."""
    return settings.data.dataset == "csv" and Path(settings.source).suffix.lower() in TABLE_SUFFIXES


def refuse_other_data(settings: Settings, storage) -> None:
    """A data file given instead of a config names its experiment after the file, so another file of
    that name, or this one changed, meets an experiment made from other data. Refused here, before
    the file is parsed or anything trained or written (it took 11.5 s), with the fix this mode
    has: --name."""
    from .config import identity_conflict

    if not from_data_file(settings):
        return
    studies = _stored_studies(storage)
    for st in studies:
        if st.study_name.rsplit("/", 1)[0] == settings.name:
            conflict = identity_conflict(st.user_attrs, settings)
            if conflict:
                raise SearchError(f"experiment {settings.name!r} (named after the data file) already exists in this "
                                  f"storage with other data or settings: {conflict}; pass --name NEW for a new "
                                  "experiment on this file, or give the file it was created with")
            return


def _warm_report(settings: Settings) -> None:
    """What the report needs besides the trials: the analysis and plotting imports (~1.4 s) and the
    reference model (data.load_prepared's split, a scikit-learn fit). search.run_arms calls this in
    this process while the spawned workers already train, instead of after the last trial."""
    import matplotlib

    matplotlib.use("Agg")  # what report.format.pyplot selects; headless
    import matplotlib.pyplot  # noqa: F401

    from . import analysis, report  # noqa: F401

    with contextlib.suppress(OSError, ValueError):  # build_report reports without it
        reference_context(settings)


class Report:
    """Trials of every repeat, every comparison (aggregated over repeats), what holds over all arms
    (`arms`: budgets, interaction; None for adaptive samplers) and the metadata every export carries."""

    def __init__(self, df, comparisons, meta: dict, files: list[Path] | None = None,
                 records: list[dict] | None = None, arms=None, notes: list[str] | None = None,
                 data: dict | None = None):
        # report.Comparisons: every non-reference arm against the reference (the pair has one)
        self.df, self.comparisons, self.meta = df, comparisons, meta
        self.summary = comparisons.first  # the first comparison (the pair's only one)
        # What the reader should know about what was left out (e.g. a study that is not a repeat).
        self.notes: list[str] = notes or []
        self.records: list[dict] = records or []  # lossless per-trial records (trials.jsonl)
        self.files: list[Path] = files or []
        # analysis.multiarm.ArmsAnalysis: every arm vs the reference, epoch budgets, the 2x2 interaction.
        self.arms = arms
        # What loading did to the experiment's data (data.load_dataset's facts; None when not recorded).
        self.data = data

    @property
    def data_line(self) -> str | None:
        from .data import data_line

        return data_line(self.data)

    def __repr__(self) -> str:
        return (f"<bnsearch Report {self.summary.experiment!r}: {len(self.df)} trials, "
                f"{self.summary.n_repeats} repeat(s), {len(self.files)} files>")

    def _repr_markdown_(self) -> str:
        from .report import markdown_text

        return markdown_text(self.comparisons, self.meta, arms=self.arms, repeats=self.summary.n_repeats,
                             data=self.data)


def _experiment_name(config, experiment: str | None) -> str:
    if experiment:
        return experiment
    return load_config(config).name


def _task(settings: Settings) -> str:
    from .data import BUILTIN, load_arrays

    if settings.data.dataset in BUILTIN and settings.data.dataset != "csv":
        return BUILTIN[settings.data.dataset][0]
    if settings.data.dataset.startswith("r:"):
        from .data import CURATED

        curated = CURATED.get(settings.data.dataset[2:])
        return curated.task if curated else "classification"  # data.R_TABLES: classification only
    return settings.data.task or load_arrays(settings.data, settings.seed)[2]


_references: dict[tuple, dict] = {}


# The keys of reference_context that analysis.summarize takes (it takes no others).
SUMMARIZE_CONTEXT = ("n_val", "baseline", "reference", "class_counts", "metric")


def reference_context(settings: Settings, expect: str | None = None) -> dict:
    """What the analysis needs from the data split but cannot read from the trials: the validation-set
    size (for the noise-derived tolerance), the constant predictor's validation score (for the
    failed-to-train rate) and a simple model fitted on the same split (logistic / ridge regression),
    so a reader sees how good "good" is. Nothing is trained with torch.

    Every score is in the experiment's metric (`metric`: accuracy, balanced_accuracy or r2);
    `class_counts` are the validation rows per class label (0 for a class absent from the split;
    None for regression), which the standard error of a balanced accuracy needs. Also `task` and
    `data` (what loading did: data.data_line). `expect`: the data digest an experiment recorded;
    a file whose bytes differ is refused (data.DataChanged) instead of described.

    Remembered like the split itself (data.load_prepared): in this process, and for a built-in data
    set on disk next to its split, so a report does not wait for scikit-learn's import and fit."""
    import json

    from .data import cache_file, write_cached

    spec, seed, metric = settings.data, settings.seed, settings.metric
    memo = (spec, seed, expect or settings.data_digest(), metric)
    if memo in _references:
        return _references[memo]
    # The split is shared by both metrics (Settings.metric is not in the DataSpec), its scores are not.
    path = cache_file(spec, seed, "reference" if metric == "accuracy" else f"reference-{metric}", ".json")
    if path is not None:
        with contextlib.suppress(OSError, ValueError):
            stored = json.loads(path.read_text())
            if isinstance(stored, dict) and {*SUMMARIZE_CONTEXT, "metric", "class_counts", "task"} <= set(stored):
                _references[memo] = stored
                return stored
    context = _references[memo] = _reference_context(settings, expect)
    if path is not None:
        write_cached(path, lambda tmp: tmp.write_text(json.dumps(context)))
    return context


def _reference_context(settings: Settings, expect: str | None = None) -> dict:
    import numpy as np

    from .data import load_prepared

    data = load_prepared(settings.data, settings.seed, expect=expect)
    Xtr, Xva, Xte = (t.numpy().astype(np.float64) for t in (data.X_train, data.X_val, data.X_test))
    ytr, yva, yte = (t.numpy() for t in (data.y_train, data.y_val, data.y_test))
    import warnings

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .train import check_metric

    check_metric(data.task, settings.metric)  # a ValueError, like an unreadable CSV: reported without context
    classification = data.task == "classification"
    balanced = classification and settings.metric == "balanced_accuracy"
    # Convergence warnings of the fit, and scikit-learn's "y_pred contains classes not in y_true" when
    # the model predicts a class the split lacks, must not reach the CLI's output.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if classification:
            from sklearn.linear_model import LogisticRegression
            from sklearn.metrics import balanced_accuracy_score

            model, name = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), "logistic regression"
            constant = np.full_like(yva, np.bincount(ytr).argmax())  # the majority class of the training split
            # Balanced: it recalls one class fully and no other, so 1/K for the K classes in the split.
            baseline = float(balanced_accuracy_score(yva, constant) if balanced else np.mean(yva == constant))
        else:
            from sklearn.linear_model import Ridge

            model, name = make_pipeline(StandardScaler(), Ridge(alpha=1.0)), "ridge regression"
            baseline = float(max(1 - np.sum((yva - ytr.mean()) ** 2) / np.sum((yva - yva.mean()) ** 2), -1.0))
        model.fit(Xtr, ytr)

        def fit_score(X, y) -> float:
            if balanced:
                return float(balanced_accuracy_score(y, model.predict(X)))
            s = model.score(X, y)  # accuracy, or R^2 (clipped as the trainer clips it)
            return float(s) if classification else float(max(s, -1.0))

        reference = {"model": name, "val_score": fit_score(Xva, yva), "test_score": fit_score(Xte, yte)}
    counts = None
    if classification:
        n_classes = int(max(ytr.max(), yva.max(), yte.max())) + 1
        counts = [int(c) for c in np.bincount(yva, minlength=n_classes)]
    return {"n_val": int(len(yva)), "baseline": baseline, "reference": reference,
            "metric": settings.metric if classification else "r2", "class_counts": counts, "task": data.task,
            "data": data.facts}


def build_report(storage, experiment: str) -> Report:
    """Everything `summary`/`export`/`plot` need, from storage alone (no config file, no training)."""
    url = search.storage_url(storage)
    with search.reading():  # a report never writes to the storage it reads
        return _build_report(url, experiment)


def _build_report(url: str, experiment: str) -> Report:
    import functools

    import pandas as pd

    from .offload import Forked
    from .analysis import aggregate_repeats, summarize

    st = search.open_storage(url, create=False)
    all_studies = st.get_all_studies()
    studies = {s.study_name for s in all_studies}
    names = {n.rsplit("/", 1)[0] for n in studies if "/" in n}
    if experiment not in names:
        hint = (f"pass --experiment NAME, e.g. --experiment {sorted(names)[0]}" if names
                else "run `bnsearch compare` first")
        raise SearchError(f"no experiment {experiment!r} in {search.masked(url)}; experiments here: "
                          f"{', '.join(sorted(names)) or 'none'} ({hint})")
    reps, notes = find_repeats(st, experiment, all_studies)
    runs = [_read_run(url, name, all_studies) for name in [experiment, *reps]]
    first = runs[0]  # the experiment's own run: its metadata labels every export, its trials the budgets
    # The N-arm layer (budgets, ~0.4 s) does not need the comparisons: a forked child computes it
    # while this process summarizes (offload.py; computed here instead where that is not possible).
    # Adaptive samplers: no budget layer; its good fractions per epoch budget assume i.i.d. paired draws.
    adaptive = first.settings.sampler in ("tpe", "gp")
    layer = (lambda: None) if adaptive else functools.partial(_analyse_arms, first.df, first.settings, {},
                                                              first.context, first.task)
    with Forked(layer, parallel=not adaptive) as arms_layer:
        by_arm: dict[str, list] = {}
        for run in runs:
            s = run.settings
            kw = dict(distributions=s.distributions(), tolerance=s.tolerance, paired=s.paired, sampler=s.sampler,
                      task=run.task, seed=s.seed, **run.context)
            for a in s.arm_names():
                if a != s.reference:
                    by_arm.setdefault(a, []).append(summarize(run.df, **kw, arms=(a, s.reference)))
        comparisons = {a: s[0] if len(s) == 1 else aggregate_repeats(s) for a, s in by_arm.items()}
        if adaptive:  # the repeats' trials-to-target is the primary outcome
            from .analysis.summary import attach_adaptive

            budget = max(int(r.attrs.get("budget") or r.settings.trials) for r in runs)
            twin, random_df = _random_twin_trials(url, st, experiment, all_studies)
            for c in comparisons.values():
                attach_adaptive(c, [r.df for r in runs], budget=budget, seed=first.settings.seed,
                                sampler_settings=first.attrs.get("sampler_settings"), random_df=random_df,
                                random_source=f"experiment {twin!r}" if twin else "")
        arms = arms_layer.result()
    if arms is not None:
        arms.comparisons = comparisons
    from .report import Comparisons

    view = Comparisons(first.settings.arm_names(), first.settings.reference, comparisons)
    meta = {k: first.attrs.get(k) for k in ("experiment", "config_hash", "seed", "bnsearch_version", "torch_version",
                                            "optuna_version")}
    meta["repeats"] = len(runs)
    # What every score of the exports is (the stored config's data.metric; R^2 for regression): named
    # score_metric, since metrics.csv already has a column "metric" (the row's quantity).
    meta["score_metric"] = "r2" if view.first.task == "regression" else first.settings.metric
    # Never write a database password into exported files (in the user info or as ?password=).
    meta["storage"] = search.masked(url)
    notes += [r.note for r in runs if r.note]
    packed = search.packing_note([rec for r in runs for rec in r.records])
    notes += [packed] if packed else []
    return Report(pd.concat([r.df for r in runs], ignore_index=True), view, meta,
                  records=[rec for r in runs for rec in r.records], arms=arms, notes=notes, data=first.data)


def _family(attrs: dict, also_ignore: tuple[str, ...] = ()) -> str | None:
    """What repeats of one experiment share: the stored identity (config_hash's inputs) without the
    experiment's name and seed (and `also_ignore`), with the data identified by its stored digest."""
    import hashlib
    import json
    import tomllib

    from .config import NOT_IDENTITY, _flat

    try:
        flat = _flat(tomllib.loads(attrs["config_toml"]))
    except (KeyError, TypeError, tomllib.TOMLDecodeError):
        return None
    d = {k: v for k, v in flat.items() if k not in (*NOT_IDENTITY, "experiment.name", "experiment.seed", *also_ignore)}
    if "data_sha256" in attrs:
        d["data.sha256"] = attrs["data_sha256"]
    else:  # stored before the digest existed: the path was its identity
        d["data.path"] = flat.get("data.path")
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


_SEARCH_KEYS = ("search.sampler", "search.paired")


def random_twin(storage, experiment: str, studies=None) -> str | None:
    """A random-search (or QMC) experiment on the same space, data, arms and training as the adaptive
    `experiment` (the stored identity apart from name, seed, sampler and pairing), not itself a
    repeat; the first by name. The adaptive report states the sampler's speed-up over it."""
    studies = storage.get_all_studies() if studies is None else studies
    own = next((s.user_attrs for s in studies if s.study_name.rsplit("/", 1)[0] == experiment
                and "config_toml" in s.user_attrs), None)
    family = _family(own, _SEARCH_KEYS) if own else None
    if family is None:
        return None
    for s in sorted(studies, key=lambda s: s.study_name):
        a = s.user_attrs
        name = s.study_name.rsplit("/", 1)[0]
        if (name != experiment and a.get("sampler") in ("random", "qmc") and not a.get("repeat_of")
                and _family(a, _SEARCH_KEYS) == family):
            return name
    return None


def _random_twin_trials(url: str, storage, experiment: str, all_studies):
    """(name, trials of it and its repeats) of random_twin, or (None, None)."""
    import pandas as pd

    twin = random_twin(storage, experiment, all_studies)
    if twin is None:
        return None, None
    reps, _ = find_repeats(storage, twin, all_studies)
    try:
        return twin, pd.concat([_read_run(url, n, all_studies).df for n in [twin, *reps]], ignore_index=True)
    except SearchError:  # an arm missing there: no comparison, the report goes on without it
        return None, None


def find_repeats(storage, experiment: str, studies=None) -> tuple[list[str], list[str]]:
    """The stored repeats of `experiment` (names, in repeat order) and a note for every study that
    claims to be one but is not counted.

    A repeat is identified by what it is: its studies' `repeat_of`/`repeat` attrs (stored by
    `compare --repeats`), the same config and data as the experiment apart from name and seed,
    seed = the experiment's + repeat, and finished (nothing queued or running, something complete).
    Studies stored before `repeat_of` existed are recognised by the name `<experiment>-rep<N>`,
    with the same checks. Another experiment that merely has such a name is never pooled."""
    import re

    from optuna.trial import TrialState

    from .config import load_config_text
    from .search._optuna_private import study_id

    studies = storage.get_all_studies() if studies is None else studies
    groups: dict[str, list] = {}
    for s in studies:
        if "/" in s.study_name and "config_toml" in s.user_attrs:
            groups.setdefault(s.study_name.rsplit("/", 1)[0], []).append(s)
    if experiment not in groups:
        return [], []
    base = groups[experiment][0].user_attrs
    family = _family(base)
    found, notes = [], []
    for name, group in sorted(groups.items()):
        attrs = group[0].user_attrs
        if name == experiment:
            continue
        m = re.fullmatch(re.escape(experiment) + r"-rep(\d+)", name)
        if "repeat_of" in attrs:
            if attrs["repeat_of"] != experiment:
                if m is not None:  # named like one, so someone may expect it in the report
                    notes.append(f"{name!r} is not counted as a repeat of {experiment!r}: it is a separate "
                                 "experiment (not stored by `compare --repeats`)")
                continue
            r = attrs.get("repeat")
        elif m is None:
            continue
        else:
            r = int(m.group(1))
        why = None
        if _family(attrs) != family or any(_family(s.user_attrs) != family for s in group):
            why = f"its config or data differ from {experiment!r}'s"
        elif not isinstance(r, int) or r < 1 or attrs.get("seed") != (base.get("seed") or 0) + r:
            why = f"its seed ({attrs.get('seed')}) is not {experiment!r}'s seed + {r}"
        else:
            arms = sorted(s.study_name.rsplit("/", 1)[1] for s in group)
            try:
                wanted = sorted(load_config_text(attrs["config_toml"], f"storage:{name}").arm_names())
            except (ConfigError, ValueError):
                wanted = arms
            if arms != wanted:
                why = f"it lacks arm(s) {', '.join(sorted(set(wanted) - set(arms)))}"
            for s in group if why is None else []:
                states = [t.state for t in storage.get_all_trials(study_id(s), deepcopy=False)]
                left = states.count(TrialState.WAITING) + states.count(TrialState.RUNNING)
                done = states.count(TrialState.COMPLETE)
                paired = s.user_attrs.get("paired", True)
                if left or not done or (not paired and done < (s.user_attrs.get("budget") or 0)):
                    why = (f"it is unfinished ({s.study_name}: {done} trials complete, {left} queued or running); "
                           "rerun `bnsearch compare` with the same --repeats to finish it")
                    break
        if why:
            notes.append(f"{name!r} is not counted as a repeat of {experiment!r}: {why}")
        else:
            found.append((r, name))
    return [n for _, n in sorted(found)], notes


@dataclasses.dataclass
class _Run:
    df: "pd.DataFrame"
    records: list[dict]
    settings: Settings
    context: dict
    attrs: dict
    task: str = "classification"
    data: dict | None = None  # what loading did to the data (Report.data)
    note: str | None = None  # why the report lacks what it needs from the data


def _read_run(url: str, name: str, all_studies) -> _Run:
    """One run's trials (the experiment, or one of its repeats) and what summarizing them needs.
    `all_studies`: the storage's get_all_studies()."""
    stored = _first_arm(url, name, all_studies)
    arm_names = stored.settings.arm_names()
    studies = {s.study_name for s in all_studies}
    missing = [a for a in arm_names if f"{name}/{a}" not in studies]
    if missing:
        flag = f"--bn {missing[0][3:]}" if missing[0] in ARMS else f"--arm {missing[0]}"
        raise SearchError(f"experiment {name!r} lacks arm {missing[0]}; run `bnsearch study {flag}` or "
                          "`bnsearch compare` to add it")
    first = stored if stored.arm == arm_names[0] else search.load_arm(url, name, arm_names[0])
    df, records = search.load_trials_and_records(url, name, arm_names)
    attrs = first.study.user_attrs
    full, note = attrs.get("data_context"), None
    # What the run recorded at creation (worker._record_data_context) describes the data its trials
    # were scored on; the file may have moved or changed since. Experiments stored before that re-read
    # the file, and only while its digest is still the recorded one.
    if not isinstance(full, dict):
        try:
            full = reference_context(first.settings, expect=attrs.get("data_sha256"))
        except (OSError, ValueError) as exc:
            full = {}
            why = "its data file changed since" if isinstance(exc, DataChanged) else str(exc)
            note = (f"{name!r}: the report's data context (validation rows for δ, the constant predictor, the "
                    f"reference model) is left out: this older experiment did not store it, and its data cannot "
                    f"be re-read as they were ({why})")
    # summarize takes SUMMARIZE_CONTEXT only; the metric reaches the report through Report.meta
    context = {k: v for k, v in full.items() if k in SUMMARIZE_CONTEXT}
    task = full.get("task")
    if task is None:
        try:
            task = _task(first.settings)
        except (OSError, ValueError):
            # An older experiment whose file is gone: R^2 is the only score below 0 (accuracy never is).
            task = "regression" if (df["score"] < 0).any() else "classification"
    return _Run(df, records, first.settings, context, attrs, task, full.get("data"), note)


def _analyse_arms(df, settings: Settings, comparisons, context: dict, task: str | None = None):
    """The N-arm layer (budgets, interaction) of the experiment's first run; repeats enter through the
    aggregated comparisons only."""
    from . import arms as arm_specs
    from .analysis.multiarm import analyse_arms

    cells = arm_specs.two_by_two(settings.arms, settings.data.inputs)
    norm = next((s.norm for s in settings.arms if s.norm != "none"), "batchnorm")
    return analyse_arms(df, arms=settings.arm_names(), reference=settings.reference, epochs=settings.epochs,
                        tolerance=settings.tolerance, n_val=context.get("n_val"), baseline=context.get("baseline"),
                        class_counts=context.get("class_counts"), metric=context.get("metric") or "accuracy",
                        distributions=settings.distributions(),
                        paired=settings.paired, sampler=settings.sampler, task=task or _task(settings),
                        seed=settings.seed,
                        descriptions={s.name: s.describe(settings.data.inputs) for s in settings.arms},
                        cells=cells, norm_label={"batchnorm": "BN", "layernorm": "LayerNorm"}[norm],
                        summaries=comparisons)


def publish(report: Report, out_dir: Path, *, csv: bool = True, plots: bool = True) -> list[Path]:
    """Write the report's CSVs, PNGs and report.md to out_dir; returns the files written."""
    from .report import publish as write_all

    check_out_dir(out_dir)
    return write_all(report, out_dir, csv=csv, plots=plots)


def show_summary(config=None, *, experiment=None, storage=None) -> Report:
    """The report of a stored experiment (named by CONFIG or --experiment), from storage alone."""
    return build_report(storage, _experiment_name(config, experiment))


def export(config=None, *, experiment=None, out=None, storage=None, csv: bool = True,
           on_note: Callable[[str], None] | None = None) -> list[Path]:
    """Write a stored experiment's exports (CSVs unless csv=False, PNGs, report.md); returns the files.
    `on_note(text)` receives the report's notes (e.g. a study left out as not a repeat)."""
    name = _experiment_name(config, experiment)
    report = build_report(storage, name)  # a storage that cannot be read leaves no empty folder behind
    for note in report.notes if on_note else []:
        on_note(note)
    report.files = publish(report, Path(out) if out else Path("results") / name, csv=csv)
    return report.files


__all__ = ["Report", "run_compare", "build_report", "show_summary", "export", "RunFailed", "run_study", "run_worker", "load_config", "load_trials", "list_experiments", "ConfigError",
           "SearchError"]
