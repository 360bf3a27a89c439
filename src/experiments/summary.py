"""The table of a whole sweep, built from each job's results.json (so it works whatever ran the jobs).

Each job's results.json says its kind, its optimised score and whether higher or lower is better; the
kind (experiments/jobs/) declares the table's columns. A sweep of one kind writes summary.csv and
summary.md; a sweep mixing kinds writes one pair per kind (summary-<kind>.csv, ...).
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from experiments import jobs, pipeline, plots
from experiments.errors import UserError
from experiments.files import atomic_path, write_csv, write_text
from experiments.launch import check_ddp, check_launcher, read_sweep_plan, sweep_plan, write_sweep_plan
from experiments.tracking import RunIdentity, is_wandb, start_wandb_run, sweep_group

log = logging.getLogger(__name__)

# Every table ends with these, whatever the kind.
COMMON_COLUMNS = [("seconds", "seconds"), ("job", "job")]


def collect_results(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job's readable results.json below the sweep folder, with its folder as `job`."""
    rows = []
    for path in sorted(sweep_dir.glob("**/results.json")):
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            log.warning("summary: skipping unreadable %s (%s)", path, e)
            continue
        results["job"] = str(path.parent.relative_to(sweep_dir))
        rows.append(results)
    return rows


def is_missing(value: Any) -> bool:
    """None or NaN: a job that has no score (no labels, or a diverged run) sorts last."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def columns_for(kind: jobs.JobKind, score: str) -> list[tuple[str, str]]:
    """The kind's columns with the optimised score's first, then the common ones."""
    columns = list(kind.columns)
    ranked = [c for c in columns if c[1] == score] or [(score, score)]
    return ranked + [c for c in columns if c[1] != score] + COMMON_COLUMNS


def summary_rows(results: list[dict[str, Any]], columns: list[tuple[str, str]], lower_is_better: bool) -> list[list[Any]]:
    """One row per job in `columns` order, best score (the first column) first; jobs without a score last."""
    score = columns[0][1]
    sign = 1.0 if lower_is_better else -1.0

    def order(r: dict[str, Any]) -> tuple[bool, float]:
        value = r.get(score)
        return (True, 0.0) if is_missing(value) else (False, sign * value)

    rows = []
    for r in sorted(results, key=order):
        row = {**r, "seconds": round(sum(r.get("seconds", {}).values()), 1)}
        rows.append([cell(row.get(key)) for _, key in columns])
    return rows


def cell(value: Any) -> Any:
    """Five significant digits, not five decimals (a lam of 3e-6 must not show as 0.0); NaN as missing."""
    if isinstance(value, float):
        return None if math.isnan(value) else float(f"{value:.5g}")
    return value


def markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


class Table:
    """One kind's table of a sweep."""

    def __init__(self, kind: jobs.JobKind, results: list[dict[str, Any]]) -> None:
        self.kind, self.results = kind, results
        self.score = results[0].get("score") or kind.score()[0]
        direction = results[0].get("score_direction") or kind.scores.get(self.score, jobs.MAX)
        self.columns = columns_for(kind, self.score)
        self.names = [name for name, _ in self.columns]
        self.lower_is_better = direction == jobs.MIN
        self.rows = summary_rows(results, self.columns, self.lower_is_better)
        # A sweep over seeds also gets the mean and spread of each configuration.
        self.by_seed = SeedTable(self) if len({r.get("seed") for r in results}) > 1 else None


def sweep_tables(results: list[dict[str, Any]]) -> list[Table]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_kind.setdefault(r.get("kind", "cluster"), []).append(r)
    return [Table(jobs.load(name), group) for name, group in sorted(by_kind.items())]


def settings_but_seed(r: dict[str, Any]) -> frozenset[str]:
    return frozenset(o for o in r.get("overrides", []) if o.split("=", 1)[0].lstrip("+~") != "seed")


def configuration(r: dict[str, Any], common: set[str]) -> str:
    """A job's command-line settings but its seed and those every job of the sweep shares: the jobs that
    differ only by seed share it."""
    return " ".join(sorted(settings_but_seed(r) - common)) or "defaults"


class SeedTable:
    """One row per configuration of a sweep that varies the seed: the mean and the standard deviation (over
    seeds, ddof=1; none for one seed) of each of the kind's scores, the seeds, and the seconds per seed."""

    def __init__(self, table: Table) -> None:
        groups: dict[str, list[dict[str, Any]]] = {}
        settings = {settings_but_seed(r) for r in table.results}
        # Named by what differs between configurations; a sweep of one configuration by all its settings.
        common = set.intersection(*map(set, settings)) if len(settings) > 1 else set()
        for r in table.results:
            groups.setdefault(configuration(r, common), []).append(r)
        scores = [s for s in table.kind.scores if any(not is_missing(r.get(s)) for r in table.results)]
        scores.sort(key=lambda s: s != table.score)  # the optimised score first
        self.names = ["configuration", "n_seeds"] + [f"{s}_{stat}" for s in scores for stat in ("mean", "std")]
        self.names += ["seconds_per_seed", "seeds"]
        rows = []
        for name, group in groups.items():
            row: list[Any] = [name, len(group)]
            for s in scores:
                values = [r[s] for r in group if not is_missing(r.get(s))]
                row += [cell(statistics.fmean(values)) if values else None,
                        cell(statistics.stdev(values)) if len(values) > 1 else None]
            seconds = statistics.fmean(sum(r.get("seconds", {}).values()) for r in group)
            seeds = sorted(r.get("seed") for r in group if r.get("seed") is not None)
            rows.append(row + [round(seconds, 1), " ".join(map(str, seeds))])
        sign = 1.0 if table.lower_is_better else -1.0
        self.rows = sorted(rows, key=lambda row: (True, 0.0) if is_missing(row[2]) else (False, sign * row[2]))


def write_summary(sweep_dir: Path, figures: bool = True) -> list[Table]:
    """Write summary.csv, summary.md and plots/scores.png (and, for trained models, plots/loss_curves.png);
    for a sweep over seeds, also summary_by_seed.csv and .md. `figures=False`: the tables only."""
    tables = sweep_tables(collect_results(sweep_dir))
    for table in tables:
        suffix = "" if len(tables) == 1 else f"-{table.kind.name}"
        write_csv(sweep_dir / f"summary{suffix}.csv", table.names, table.rows)
        write_text(sweep_dir / f"summary{suffix}.md", markdown_table(table.names, table.rows))
        if (by_seed := table.by_seed) is not None:
            write_csv(sweep_dir / f"summary_by_seed{suffix}.csv", by_seed.names, by_seed.rows)
            write_text(sweep_dir / f"summary_by_seed{suffix}.md", markdown_table(by_seed.names, by_seed.rows))
        if not figures:
            continue
        labels = [" ".join(f"{row[table.names.index(n)]}" for n in table.kind.labelled_by) + f" (job {row[-1]})"
                  for row in table.rows]
        save_figure(sweep_dir / "plots" / f"scores{suffix}.png",
                    plots.scores_figure(labels, [row[0] for row in table.rows], table.names[0]))
    curves = {r["job"]: r["curves"] for t in tables for r in t.results if r.get("curves")}
    if curves and figures:
        save_figure(sweep_dir / "plots" / "loss_curves.png", plots.loss_curves_figure(curves))
    return tables


def save_figure(path: Path, figure: Any) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plots.plt.close(figure)


class SweepSummary(Callback):
    """Hydra callback: launcher settings and every job checked before a multirun; its tables on disk after each
    job, and with their figures and in W&B after the sweep. `check_jobs=False` leaves each job to check itself
    where it runs: for a cluster whose machines hold data this one does not
    (`hydra.callbacks.sweep_summary.check_jobs=false`)."""

    def __init__(self, check_jobs: bool = True) -> None:
        self.check_jobs = check_jobs

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_launcher(config.hydra)
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
        if not tables or not is_wandb(config.logger):
            return
        sweep = config.hydra.runtime.choices.get("sweep")
        identity = RunIdentity("summary", sweep_group(sweep_dir), "summary", [f"sweep={sweep}"] if sweep else [])
        run = start_wandb_run(config.logger, sweep_dir, identity, config={"sweep_dir": str(sweep_dir)})
        import wandb

        for table in tables:
            name = "summary" if len(tables) == 1 else f"summary-{table.kind.name}"
            run.log({name: wandb.Table(columns=table.names,
                                       data=[[str(v) if isinstance(v, list) else v for v in row] for row in table.rows])})
            if table.by_seed is not None:
                run.log({name.replace("summary", "summary_by_seed"): wandb.Table(columns=table.by_seed.names,
                                                                                 data=table.by_seed.rows)})
        with_curves = [r for t in tables for r in t.results if r.get("curves")]
        if with_curves:  # every job's eval loss per epoch in one W&B chart
            run.log({"loss_curves": wandb.plot.line_series(
                xs=[[row["epoch"] for row in r["curves"]] for r in with_curves],
                ys=[[row.get("val/loss") for row in r["curves"]] for r in with_curves],
                keys=[f"job {r['job']}: loss={r.get('loss')} lr={r.get('lr')}" for r in with_curves],
                title="eval loss per epoch", xname="epoch",
            )})
        run.finish()
