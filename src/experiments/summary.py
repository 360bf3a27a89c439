"""The table of a whole sweep, built from each job's results.json alone (so it works whatever ran the jobs, and
`python -m experiments.report` imports neither torch nor Lightning).

Each job's results.json says its kind, its optimised score and whether higher or lower is better, and how its kind
tabulates it (`table`: the scores and their directions, the columns, the columns that label a job; declared by the
kind, experiments/jobs/). A sweep of one kind writes summary.csv and summary.md; a sweep mixing kinds writes one
pair per kind (summary-<kind>.csv, ...).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments import plots
from experiments.files import atomic_path, write_csv, write_text

log = logging.getLogger(__name__)

MAX, MIN = "max", "min"  # as experiments.jobs declares a score's direction

# Every table ends with these, whatever the kind.
COMMON_COLUMNS = [("seconds", "seconds"), ("job", "job")]


@dataclass(frozen=True)
class KindTable:
    """How a kind's jobs are tabulated, as its results.json says (`JobKind.table`)."""

    name: str
    scores: dict[str, str]  # score -> "max" or "min"
    columns: list[tuple[str, str]]  # (header, results.json key)
    labelled_by: tuple[str, ...]  # the headers that name a job in the scores plot

    @staticmethod
    def of(results: dict[str, Any]) -> KindTable:
        table = results["table"]
        return KindTable(results["kind"], dict(table["scores"]), [tuple(c) for c in table["columns"]],
                         tuple(table["labelled_by"]))


def collect_results(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job's readable results.json below the sweep folder, with its folder as `job`."""
    rows = []
    for path in sorted(sweep_dir.glob("**/results.json")):
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            log.warning("summary: skipping unreadable %s (%s)", path, e)
            continue
        if not isinstance(results, dict) or not {"kind", "table"} <= results.keys():
            log.warning("summary: skipping %s, not written by this version (no kind or table)", path)
            continue
        results["job"] = str(path.parent.relative_to(sweep_dir))
        rows.append(results)
    return rows


def is_missing(value: Any) -> bool:
    """None or NaN: a job that has no score (no labels, or a diverged run) sorts last."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def columns_for(kind: KindTable, score: str) -> list[tuple[str, str]]:
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

    def __init__(self, kind: KindTable, results: list[dict[str, Any]]) -> None:
        self.kind, self.results = kind, results
        self.score = results[0].get("score") or next(iter(kind.scores))
        direction = results[0].get("score_direction") or kind.scores.get(self.score, MAX)
        self.columns = columns_for(kind, self.score)
        self.names = [name for name, _ in self.columns]
        self.lower_is_better = direction == MIN
        self.rows = summary_rows(results, self.columns, self.lower_is_better)
        # A sweep over seeds also gets the mean and spread of each configuration.
        self.by_seed = SeedTable(self) if len({r.get("seed") for r in results}) > 1 else None


def sweep_tables(results: list[dict[str, Any]]) -> list[Table]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_kind.setdefault(r["kind"], []).append(r)
    return [Table(KindTable.of(group[-1]), group) for _, group in sorted(by_kind.items())]


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


def wandb_tables(tables: list[Table]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """The sweep's tables by the names they take in its W&B summary run."""
    out: dict[str, tuple[list[str], list[list[Any]]]] = {}
    for table in tables:
        name = "summary" if len(tables) == 1 else f"summary-{table.kind.name}"
        out[name] = (table.names, table.rows)
        if table.by_seed is not None:
            out[name.replace("summary", "summary_by_seed")] = (table.by_seed.names, table.by_seed.rows)
    return out


def job_scores(tables: list[Table]) -> tuple[list[dict[str, float]], dict[str, str]]:
    """Each job's scores (its kind's, those it has), with its number as "job": what the sweep's W&B summary run
    charts against the job; and each score's direction ("max" or "min"), for the run's summary of the best. In a
    sweep of several kinds each score is named KIND/SCORE."""
    rows, directions = [], {}
    for table in tables:
        prefix = "" if len(tables) == 1 else f"{table.kind.name}/"
        directions |= {f"{prefix}{s}": d for s, d in table.kind.scores.items()}
        for r in table.results:
            values = {f"{prefix}{s}": r[s] for s in table.kind.scores if isinstance(r.get(s), (int, float))}
            rows.append({"job": int(r["job"]) if str(r["job"]).isdigit() else len(rows), **values})
    return sorted(rows, key=lambda row: row["job"]), directions


def loss_curves(tables: list[Table]) -> dict[str, tuple[list[float], list[float | None]]]:
    """Each trained job's eval loss per epoch: "job J: loss=L lr=R" -> (epochs, losses)."""
    return {f"job {r['job']}: loss={r.get('loss')} lr={r.get('lr')}": ([row["epoch"] for row in r["curves"]],
                                                                      [row.get("val/loss") for row in r["curves"]])
            for t in tables for r in t.results if r.get("curves")}
