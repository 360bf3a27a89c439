"""The table of a whole sweep, built from each job's results.json (so it works whatever ran the jobs)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.files import write_text
from experiments.tracking import make_logger, write_csv

log = logging.getLogger(__name__)

REDUCED_METHOD = {"pca": "PCA", "tsne": "tSNE", "none": "none"}

# The seed report's columns first, in its order, then the rest of what a job reports.
COLUMNS: list[tuple[str, str]] = [
    ("Public Score", "public_score"),
    ("Private Score", "private_score"),
    ("Reduced Method", "reducer"),
    ("Latent Dimension", "latent_dim"),
    ("Reduced Dimension", "reduced_dim"),
    ("acc", "acc"),
    ("nmi", "nmi"),
    ("ari", "ari"),
    ("recon_mse", "recon_mse"),
    ("clusterer", "clusterer"),
    ("n_clusters", "n_clusters"),
    ("model", "model"),
    ("cache", "cache"),
    ("seconds", "seconds"),
    ("job", "job"),
]


def collect_results(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job's results.json below the sweep folder, with its folder as `job`."""
    rows = []
    for path in sorted(sweep_dir.glob("**/results.json")):
        with open(path) as f:
            results = json.load(f)
        results["job"] = str(path.parent.relative_to(sweep_dir))
        rows.append(results)
    return rows


def summary_rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per job in COLUMNS order, best public score first (jobs without a score last)."""
    ordered = sorted(results, key=lambda r: (r.get("public_score") is None, -(r.get("public_score") or 0.0)))
    rows = []
    for r in ordered:
        row = {**r, "reducer": REDUCED_METHOD.get(r.get("reducer"), r.get("reducer"))}
        row["seconds"] = round(sum(r.get("seconds", {}).values()), 1)
        rows.append([round(v, 5) if isinstance(v, float) else v for v in (row.get(key) for _, key in COLUMNS)])
    return rows


def markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: Path) -> tuple[list[str], list[list[Any]]]:
    """Write summary.csv and summary.md in the sweep folder; return the table."""
    columns = [name for name, _ in COLUMNS]
    rows = summary_rows(collect_results(sweep_dir))
    write_csv(sweep_dir / "summary.csv", columns, rows)
    write_text(sweep_dir / "summary.md", markdown_table(columns, rows))
    return columns, rows


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, the sweep's table on disk and in W&B."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        columns, rows = write_summary(sweep_dir)
        log.info("sweep summary of %d jobs: %s", len(rows), sweep_dir / "summary.md")
        if not rows or not str(config.logger.get("_target_", "")).endswith("WandbLogger"):
            return
        logger = make_logger(
            config.logger, sweep_dir, group=str(sweep_dir), name="summary", config={"sweep_dir": str(sweep_dir)}
        )
        import wandb

        run = logger.experiment
        run.log({"summary": wandb.Table(columns=columns, data=rows)})
        run.finish()
