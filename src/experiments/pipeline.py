"""One job: pick its kind (conf/task/, experiments/jobs/), skip it if it already finished with these settings
and this code, check everything before the expensive work, run its stages, then write results.json.

The order is the guarantee: every error the config and the data's shape can reveal is raised by the kind's
`check`, before any training and before a W&B run exists. In a sweep, `check_sweep` runs the same checks on
every job before the first starts (the sweep's pre-flight callback, experiments.callbacks.PreflightChecks, calls it).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict
from omegaconf.errors import OmegaConfBaseException
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from experiments import console, jobs
from experiments.accelerators import check_accelerator
from experiments.cache import Cache
from experiments.data import ImageDataModule
from experiments.errors import UserError, build, check_types, one_line
from experiments.files import write_json
from experiments.fingerprint import code_version, module_of_target, settings_key
from experiments.launch import check_ddp, limit_threads, read_sweep_plan, sweep_jobs
from experiments.resume import finished_results, results_key, stable_run_id
from experiments.tracking import RunIdentity, Tracker, make_logger, sweep_group
from experiments.training import Job, StageTimer, resolved

log = logging.getLogger(__name__)

MAX_SEED = 2**32 - 1  # numpy's legacy seeding, which Lightning's seed_everything also seeds, takes 32 bits


@dataclass
class Prepared:
    """A job before its stages: its kind, its optimised score, its data (not loaded yet) and what identifies its
    results (the settings its kind reads, and the code that computes them)."""

    kind: jobs.JobKind
    score: str
    direction: str
    data: ImageDataModule | None
    config_hash: str
    code: str

    @property
    def key(self) -> str:
        """Names the job's checkpoints: other settings or other code never resume them."""
        return settings_key({"results": self.config_hash, "code": self.code})


def run(cfg: DictConfig) -> float | None:
    """Run one job; return its optimised score (`task.score`, by default its kind's), for sweepers."""
    console.quiet_library_warnings()  # again here: Ray's and submitit's workers never ran the entry point
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    job_dir.mkdir(parents=True, exist_ok=True)  # Hydra makes it; so does a caller of run() outside Hydra
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    job = prepare(cfg, hydra_cfg.get("launcher"), multirun)
    if cfg.trainer.get("strategy") == "ddp" and rank_zero_only.rank > 0:  # a process Lightning started for
        pl.seed_everything(cfg.seed, workers=True, verbose=False)        # another device: it only trains
        job.data.setup()
        job.kind.ddp_worker(cfg, job_dir, job.data, job.key)
        return None
    log.info("threads per job: %d", limit_threads(hydra_cfg))
    plan = read_sweep_plan(Path(hydra_cfg.sweep.dir)) if multirun else None  # the sweep's callback wrote it
    identity = run_identity(job.kind, hydra_cfg, plan)
    if counter := job_counter(hydra_cfg, plan):
        log.info("%s: %s", counter, identity.name)
    folder = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if cfg.resume and (done := finished_results(job_dir, job.config_hash, job.code, folder)) is not None:
        log.info("already finished with this config and code (%s), skipped (resume=true): %s", job.code,
                 job_dir / "results.json")
        return done.get(job.score)
    root = Path(hydra_cfg.sweep.dir) if multirun else job_dir  # a sweep's runs share its folder's wandb/
    results = execute(cfg, job, job_dir, identity, root, dict(hydra_cfg.runtime.choices),
                      list(hydra_cfg.overrides.task))
    shown = (job.score, *(s for s in job.kind.shown if s != job.score))
    line = " ".join(f"{k}={fmt(results.get(k))}" for k in shown)
    log.info("results: %s -> %s", line, job_dir / "results.json")
    if counter:
        log.info("%s done: %s", counter, line)
    return results.get(job.score)


def prepare(cfg: DictConfig, launcher: Any, multirun: bool) -> Prepared:
    """The checks that need neither data nor a built model, the data module (not loaded), and the job's results
    key and code version."""
    kind, score, direction = check_settings(cfg)
    if cfg.trainer.get("strategy") == "ddp":
        check_ddp(kind, multirun, launcher, cfg.trainer)
    data = build_data(cfg) if kind.needs_data(cfg) else None
    settings = kind.settings(cfg)
    return Prepared(kind, score, direction, data, results_key(settings, data.source_digest if data else ""),
                    job_code_version(kind, settings))


def execute(cfg: DictConfig, prepared: Prepared, job_dir: Path, identity: RunIdentity, root: Path,
            choices: dict[str, str], overrides: list[str]) -> dict[str, Any]:
    """Load, check, then run the kind's stages with a W&B run (or none) open; results.json written last."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    timer, kind = StageTimer(), prepared.kind
    if prepared.data is not None:
        with timer("load"):
            prepared.data.setup()
    with timer("check"):
        plan = kind.check(cfg, prepared.data)
        cache = job_cache(cfg)
    logger = make_logger(cfg.logger, root, identity, resolved(cfg), run_id=stable_run_id(job_dir))
    tracker = Tracker(job_dir, logger, figures=cfg.plots.enabled)
    job = Job(cfg, job_dir, choices, prepared.data, tracker, timer, cache, prepared.key)
    failed = True
    try:
        results = kind.run(job, plan)
        results |= {"kind": kind.name, "score": prepared.score, "score_direction": prepared.direction,
                    "table": kind.table(), "seconds": timer.seconds, "seed": cfg.seed,
                    "overrides": overrides,  # the seed table groups by these
                    "config_hash": prepared.config_hash, "code_version": prepared.code, "wandb_dir": tracker.wandb_dir}
        tracker.log_summary(results)
        write_json(job_dir / "results.json", results)
        failed = False
    finally:
        tracker.finish(failed)
    if results["wandb_dir"]:
        offline = cfg.logger.get("mode") == "offline"
        log.info("W&B run %s: look at it with `wandb leet %s`%s", identity.name, results["wandb_dir"],
                 f", upload it with `wandb sync {results['wandb_dir']}`" if offline else "")
    return results


def check_seed(seed: Any) -> None:
    """One seed, a whole number numpy and torch accept, for every random draw of the job (Lightning's
    seed_everything would fail on anything else with a traceback, or take a seed of its own for null)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"seed={seed!r}: use a whole number from 0 to {MAX_SEED}; it seeds every random draw "
                        "of the job (training, data order, reducer, clusterer, the public/private split)")


def check_settings(cfg: DictConfig) -> tuple[jobs.JobKind, str, str]:
    """(the job's kind, its optimised score, that score's direction), after the checks that need neither data
    nor a built model: the kind and score names, the seed, the accelerator, the switches (`resume=no` would be a
    word, and true), and a model=custom whose target is still to be named."""
    check_types(cfg, "", flags=("cache", "resume"))
    kind = jobs.load(cfg.task.kind)
    score, direction = kind.score(cfg.task.get("score"))
    check_seed(cfg.seed)
    check_accelerator(cfg.trainer)
    if "model" in kind.reads and "model" in cfg and cfg.model.get("_target_", "???") == "???":
        raise UserError("model=custom: name your LightningModule, model._target_=my_package.MyEncoder (README: Your "
                        "own model)")
    return kind, score, direction


def job_cache(cfg: DictConfig) -> Cache | None:
    """The model cache with its folder made (or refused in one line) before anything trains; None with
    cache=false."""
    if not cfg.cache:
        return None
    cache = Cache(cfg.cache_dir)
    cache.create()
    return cache


def build_data(cfg: DictConfig) -> ImageDataModule:
    """The data module (no I/O yet: setup() loads), its settings checked (`errors.build`)."""
    return build("data", cfg.data)


def check_job(cfg: DictConfig, loaded_data: dict[str, ImageDataModule]) -> None:
    """What run() checks before a job's expensive work, for a job not started yet (`cfg` without its hydra
    node). `loaded_data`: data modules already set up, by their settings, shared between the jobs checked."""
    kind, _, _ = check_settings(cfg)
    data = None
    if kind.needs_data(cfg):
        # Its seed only orders the training batches, which no check reads: one load serves every seed.
        settings = json.dumps({k: v for k, v in resolved(cfg.data).items() if k != "seed"}, sort_keys=True, default=str)
        if settings not in loaded_data:
            loaded_data[settings] = build_data(cfg)
            loaded_data[settings].setup()
        data = loaded_data[settings]
    kind.check(cfg, data)
    job_cache(cfg)


def check_sweep(config: DictConfig) -> int | None:
    """Every job of a basic sweep composed as its launcher will compose it and checked as run() checks it,
    before the first job starts: a bad value in the sweep's 40th job stops it now, not after 39 jobs' work.
    Returns how many jobs were checked; None for a sweeper that picks its jobs as it goes (Optuna)."""
    job_overrides = sweep_jobs(config.hydra)
    if job_overrides is None:
        return None
    loader = GlobalHydra.instance().config_loader()
    loaded_data: dict[str, ImageDataModule] = {}
    for number, overrides in enumerate(job_overrides, start=1):
        try:
            job_cfg = loader.load_sweep_config(config, overrides)
            with open_dict(job_cfg):
                del job_cfg["hydra"]  # as Hydra hands the job its config
            check_job(job_cfg, loaded_data)
        except (UserError, HydraException, OmegaConfBaseException) as e:
            raise UserError(f"job {number} of {len(job_overrides)} ({' '.join(overrides)}): "
                            f"{one_line(e, name_target=True)}") from e
    return len(job_overrides)


def run_identity(kind: jobs.JobKind, hydra_cfg: DictConfig, plan: dict[str, Any] | None) -> RunIdentity:
    """The W&B run's name, group, type and tags. In a sweep (`plan`: its sweep plan) the name is the job's
    values of the settings the sweep varies (distinct within it) and the group is the sweep folder; alone,
    its command-line overrides."""
    choices = hydra_cfg.runtime.choices
    tags = [f"{group}={choices[group]}" for group in kind.tagged_by if choices.get(group)]
    if choices.get("sweep"):
        tags.append(f"sweep={choices['sweep']}")
    if plan is None:
        return RunIdentity(hydra_cfg.job.override_dirname or "defaults", None, kind.name, tags, dict(kind.scores))
    swept = set(plan["swept"])
    varied = [o for o in hydra_cfg.overrides.task if o.split("=", 1)[0].lstrip("+~") in swept]
    name = f"{' '.join(varied) or hydra_cfg.job.override_dirname or 'job'} #{hydra_cfg.job.num}"
    return RunIdentity(name, sweep_group(hydra_cfg.sweep.dir), kind.name, tags, dict(kind.scores))


def job_counter(hydra_cfg: DictConfig, plan: dict[str, Any] | None) -> str | None:
    """"job k of N" in a sweep (N when the sweeper said how many), None alone."""
    if plan is None:
        return None
    total = plan["jobs"]
    return f"job {hydra_cfg.job.num + 1} of {total if total is not None else '?'}"


def job_code_version(kind: jobs.JobKind, settings: dict[str, Any]) -> str:
    """The code that shapes this job's results: its kind's module and every module the settings it reads name as
    a `_target_` (model, data, reducer, clusterer; yours too), with what they import."""
    targets = [module_of_target(t) for t in config_targets(settings)]
    return code_version(f"{jobs.__name__}.{kind.name}", *kind.code, *targets)


def config_targets(node: Any) -> list[str]:
    """Every `_target_` in a config tree."""
    if isinstance(node, dict):
        own = [node["_target_"]] if isinstance(node.get("_target_"), str) else []
        return own + [t for value in node.values() for t in config_targets(value)]
    if isinstance(node, list):
        return [t for value in node for t in config_targets(value)]
    return []


def fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
