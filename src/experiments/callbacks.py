"""The Hydra callbacks of a multirun (conf/hydra/default.yaml): the pre-flight checks before its first job, and
the sweep's tables after each job and at its end.

    PreflightChecks  launcher settings and every job of the sweep checked before the first starts; the sweep's
                     plan (how many jobs, which settings vary) written for the jobs to name themselves by
    SweepSummary     summary.csv / summary.md after every job; with figures, and the W&B summary run, at the end
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from experiments import jobs, pipeline
from experiments.errors import UserError
from experiments.launch import check_ddp, check_launcher, read_sweep_plan, sweep_plan, write_sweep_plan
from experiments.summary import job_scores, loss_curves, wandb_tables, write_summary
from experiments.tracking import is_wandb, log_sweep_summary

log = logging.getLogger(__name__)


class PreflightChecks(Callback):
    """Before a multirun's first job: its launcher's settings and every one of its jobs checked as the job will
    check itself (`pipeline.check_sweep`). `check_jobs=False` leaves each job to check itself where it runs: for a
    cluster whose machines hold data this one does not (`hydra.callbacks.preflight.check_jobs=false`)."""

    def __init__(self, check_jobs: bool = True) -> None:
        self.check_jobs = check_jobs

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_launcher(config.hydra, config.get("trainer"))
            if config.trainer.get("strategy") == "ddp":
                check_ddp(jobs.load(config.task.kind), True, config.hydra.launcher, config.trainer)
            started = time.perf_counter()
            checked = pipeline.check_sweep(config) if self.check_jobs else None
        except UserError as e:  # outside the task function: say it in one line here (as __main__ does)
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        if checked is not None:
            log.info("the %d jobs' settings checked in %.1fs", checked, time.perf_counter() - started)
        plan = sweep_plan(config.hydra)
        write_sweep_plan(Path(config.hydra.sweep.dir), plan)
        log.info("sweep of %s jobs over %s", plan["jobs"] if plan["jobs"] is not None else "?",
                 ", ".join(plan["swept"]) or "nothing")


class SweepSummary(Callback):
    """The sweep's tables (experiments/summary.py) on disk after each job, and with their figures and in W&B after
    the sweep."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """The tables of the jobs finished so far, after each job of a sweep: a sweep cut short (a failed job,
        which Hydra reports only once the others have run, or a kill) keeps the table of what finished, and a
        long one can be read as it runs."""
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            tables = write_summary(sweep_dir, figures=False)
        except OSError as e:  # a table that cannot be written now (a full disk) must not stop the sweep's jobs
            log.warning("the sweep's table was not written after job %d: %s", config.hydra.job.num + 1, e)
            return
        if job_return.status == JobStatus.FAILED:
            failed = f"{pipeline.job_counter(config.hydra, read_sweep_plan(sweep_dir))} failed"
            finished = sum(len(t.rows) for t in tables)
            if finished:
                log.warning("%s; the table of the %d finished so far: %s", failed, finished, sweep_dir / "summary.md")
            else:
                log.warning("%s; no job has finished yet", failed)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        tables = write_summary(sweep_dir)
        log.info("sweep summary of %d jobs: %s", sum(len(t.rows) for t in tables), sweep_dir / "summary.md")
        if tables and is_wandb(config.logger):
            log_sweep_summary(config.logger, sweep_dir, config.hydra.runtime.choices.get("sweep"),
                              wandb_tables(tables), job_scores(tables), loss_curves(tables))
