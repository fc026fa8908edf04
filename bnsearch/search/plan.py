"""The experiment's plan: seeded configurations, enqueued once in every arm before any worker starts.

See docs/design.md, Paired plan."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import optuna

from ..optuna_logging import quiet
from .. import __version__
from ..config import Settings, identity_conflict, load_config_text, to_toml
from ._optuna_private import active_config_indices, enqueue_many, ensure_claim_index
from .storage import ACTIVE, ARMS, SearchError, open_storage, plan_locked, study_name
from .stale import fail_stale

# --------------------------------------------------------------------------- configurations

def trial_seed(seed: int, index: int) -> int:
    """Training seed of configuration `index`: the same in both arms, independent of worker order."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] & 0x7FFFFFFF)


# Every setting that shapes an adaptive search, pinned rather than inherited: Optuna 5.0 changed
# TPE's defaults (multivariate, constant liar), so a rerun under another version would otherwise
# sample differently. Stored per study (sampler_settings) so a report says how its trials were drawn.
TPE_SETTINGS = {"multivariate": True, "constant_liar": True, "n_startup_trials": 10, "n_ei_candidates": 24,
                "group": False}
GP_SETTINGS = {"n_startup_trials": 10, "deterministic_objective": False}
_SAMPLER_CLASS = {"random": "RandomSampler", "qmc": "QMCSampler", "tpe": "TPESampler", "gp": "GPSampler"}


def sampler_settings(settings: Settings) -> dict[str, Any]:
    """The sampler's full construction, as stored in the study's user attrs."""
    pinned = {"tpe": TPE_SETTINGS, "gp": GP_SETTINGS, "qmc": {"scramble": True}}.get(settings.sampler, {})
    # Each worker process seeds its own sampler (workers of one arm must not propose the same point).
    seed_rule = "seed" if settings.sampler == "qmc" else "seed + 1000 x (worker pid mod 997)"
    return {"name": _SAMPLER_CLASS[settings.sampler], "optuna_version": optuna.__version__, **pinned,
            "seed": settings.seed, "seed_rule": seed_rule}


def make_sampler(settings: Settings, worker: int = 0) -> optuna.samplers.BaseSampler:
    seed = settings.seed + 1000 * worker
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=settings.seed, scramble=True, warn_independent_sampling=False)
    if settings.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **TPE_SETTINGS)
    return optuna.samplers.GPSampler(seed=seed, **GP_SETTINGS)


@quiet
def sample_configs(settings: Settings, n: int) -> list[dict[str, Any]]:
    """The paired list: n configurations drawn from the seeded sampler in a throwaway study.

    Random and Sobol draws are prefix-stable, so raising `trials` later extends the same list.
    """
    study = optuna.create_study(sampler=make_sampler(settings), direction="maximize")
    dists = settings.distributions()
    out = []
    for _ in range(n):
        t = study.ask(dists)
        out.append(dict(t.params))
        study.tell(t, 0.0)
    return out


# --------------------------------------------------------------------------- experiment setup

@dataclass
class ArmStudy:
    """One arm's study plus what a worker needs to run it, all recovered from storage."""
    study: optuna.Study
    arm: str
    settings: Settings
    budget: int

    @property
    def paired(self) -> bool:
        return self.settings.paired

    @property
    def spec(self):
        """This arm's model/data overrides (bnsearch.arms.ArmSpec)."""
        from ..arms import get
        return get(self.settings.arms, self.arm)

    @property
    def bn(self) -> bool:
        return self.spec.norm == "batchnorm"


def _meta(settings: Settings, arm: str, repeat_of: tuple[str, int] | None = None) -> dict[str, Any]:
    from importlib.metadata import version

    # The installed version without importing torch (a second of start-up before any worker starts).
    torch_version = version("torch")
    # First, so `optuna studies` (which prints every user attr in one column) starts with a line a
    # person can read; the full config follows in config_toml.
    about = (f"bnsearch {settings.name}, arm {arm}: {settings.data.dataset} ({settings.data.inputs}), "
             f"{settings.sampler} sampler, {settings.epochs} epochs")
    return {
        "about": about, "bnsearch": 1, "experiment": settings.name, "arm": arm, "bn": arm == "bn-on",
        "config_toml": to_toml(settings), "config_hash": settings.config_hash(), "seed": settings.seed,
        "data_sha256": settings.data_digest(),
        "paired": settings.paired, "sampler": settings.sampler, "budget": settings.trials,
        "bnsearch_version": __version__, "torch_version": torch_version.split("+")[0],
        "optuna_version": optuna.__version__, "sampler_settings": sampler_settings(settings),
        # Which experiment this one repeats (with seed + repeat): reports pool repeats by this stored
        # identity, never by a name that merely looks like `<experiment>-rep<N>`.
        "repeat_of": repeat_of[0] if repeat_of else None, "repeat": repeat_of[1] if repeat_of else 0,
    }


@plan_locked
@quiet
def prepare_experiment(settings: Settings, url: str | None, arms: Iterable[str] = ARMS, *,
                       repeat_of: tuple[str, int] | None = None) -> list[ArmStudy]:
    """Create (or check) the studies and enqueue what is missing — once, before workers start.
    `repeat_of`: (experiment, r) when this is repeat r of that experiment (api.repeat_settings).

    Parallel first-time table creation races (docs/design.md, Storage), and so would two processes
    enqueueing the same configuration, so this is the single place that writes the plan.
    """
    arms = list(arms)
    unknown = [a for a in arms if a not in settings.arm_names()]
    if unknown:
        raise SearchError(f"--arm: no arm {unknown[0]!r} in experiment {settings.name!r}; "
                          f"arms: {', '.join(settings.arm_names())}")
    storage = open_storage(url)
    ensure_claim_index(storage)
    existing = {s.study_name: s for s in storage.get_all_studies()}
    # Check every arm before writing anything, so a rejected command leaves storage untouched.
    # A new arm is checked against its stored siblings' data: a file replaced between `study --bn on`
    # and `study --bn off` gave the two arms different data, compared as one experiment.
    siblings = [s for n, s in existing.items()
                if n.rsplit("/", 1)[0] == settings.name and "data_sha256" in s.user_attrs]
    for arm in arms:
        old = existing.get(study_name(settings.name, arm)) or next(
            (s for s in siblings if s.user_attrs["data_sha256"] != settings.data_digest()), None)
        conflict = identity_conflict(old.user_attrs, settings) if old is not None else None
        if conflict:
            raise SearchError(
                f"experiment {settings.name!r} already exists in this storage with a different config: {conflict}; "
                "use a new experiment.name or the config it was created with")
    configs = sample_configs(settings, settings.trials) if settings.paired else []
    out = []
    for arm in arms:
        study = optuna.create_study(storage=storage, study_name=study_name(settings.name, arm),
                                    direction="maximize", load_if_exists=True, sampler=make_sampler(settings))
        meta = _meta(settings, arm, repeat_of)
        old_budget = study.user_attrs.get("budget", 0)
        for k, v in meta.items():
            if k == "budget":
                v = max(v, old_budget)  # a smaller --trials never shrinks a stored plan
            if k in ("repeat_of", "repeat") and repeat_of is None and study.user_attrs.get("repeat_of"):
                continue  # `study` run on a stored repeat keeps it a repeat
            # Versions and sampler settings stay those the first trials were drawn with.
            first_only = k.endswith("_version") or k == "sampler_settings"
            if (k not in study.user_attrs or study.user_attrs[k] != v) and not (first_only and k in study.user_attrs):
                study.set_user_attr(k, v)
        fail_stale(study)
        if settings.paired:
            _enqueue_missing(study, settings, configs)
        out.append(ArmStudy(study, arm, settings, max(settings.trials, old_budget)))
    return out


def _enqueue_missing(study: optuna.Study, settings: Settings, configs: list[dict[str, Any]]) -> int:
    """Enqueue every configuration index that has no COMPLETE, RUNNING or WAITING trial, in one
    transaction (Study.enqueue_trial is a transaction per trial: 1000 trials took seconds)."""
    covered = active_config_indices(study, ACTIVE)
    missing = [(params, {"config_index": i, "seed": trial_seed(settings.seed, i)})
               for i, params in enumerate(configs) if i not in covered]
    return len(enqueue_many(study, missing))


@quiet
def load_arm(url: str | None, experiment: str, arm: str) -> ArmStudy:
    storage = open_storage(url, create=False)
    name = study_name(experiment, arm)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = sorted({s.study_name.rsplit("/", 1)[0] for s in storage.get_all_studies()})
        if experiment in known:
            arms = sorted(s.study_name.rsplit("/", 1)[1] for s in storage.get_all_studies()
                          if s.study_name.rsplit("/", 1)[0] == experiment)
            raise SearchError(f"experiment {experiment!r} has no arm {arm!r}; arms: {', '.join(arms)}") from None
        raise SearchError(f"no study {name!r} in this storage; experiments here: {', '.join(known) or 'none'}") from None
    text = study.user_attrs.get("config_toml")
    if text is None:
        raise SearchError(f"study {name!r} was not created by bnsearch (no config_toml user attr)")
    settings = load_config_text(text, f"storage:{name}")
    if arm not in settings.arm_names():
        raise SearchError(f"study {name!r}: arm {arm!r} is not in its config's arms ({', '.join(settings.arm_names())})")
    study.sampler = make_sampler(settings, worker=os.getpid() % 997)
    return ArmStudy(study, arm, settings, int(study.user_attrs.get("budget", settings.trials)))

