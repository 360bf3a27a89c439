"""The table of a whole sweep, built from each job's results.json (so it works whatever ran the jobs)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments import plots
from experiments.errors import UserError
from experiments.files import atomic_path, write_text
from experiments.launch import check_launcher
from experiments.tracking import make_logger, sweep_group, write_csv

log = logging.getLogger(__name__)

REDUCED_METHOD = {"pca": "PCA", "tsne": "tSNE", "tsne_exact": "tSNE (exact)", "none": "none"}

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
    ("code_sparsity", "code_sparsity"),
    ("clusterer", "clusterer"),
    ("n_clusters", "n_clusters"),
    ("model", "model"),
    ("cache", "cache"),
    ("seconds", "seconds"),
    ("job", "job"),
]


# A classifier sweep (model=mlp) reports test accuracy instead of clustering scores.
CLASSIFIER_COLUMNS: list[tuple[str, str]] = [
    ("Test Accuracy", "test_acc"),
    ("Loss", "loss"),
    ("Learning Rate", "lr"),
    ("Top-5 Error", "top5_error"),
    ("final_train_loss", "final_train_loss"),
    ("final_val_loss", "final_val_loss"),
    ("hidden_dims", "hidden_dims"),
    ("activation", "activation"),
    ("l2", "l2"),
    ("optimizer", "optimizer"),
    ("gradients", "gradients"),
    ("features", "features"),
    ("seconds", "seconds"),
    ("job", "job"),
]


# A deblurring sweep (task=deblur, e.g. over task.lam) reports image quality and the solvers' objectives.
DEBLUR_COLUMNS: list[tuple[str, str]] = [
    ("PSNR FISTA", "psnr_fista"),
    ("PSNR ISTA", "psnr_ista"),
    ("PSNR blurred", "psnr_blurred"),
    ("lam", "lam"),
    ("basis", "basis"),
    ("image", "image"),
    ("objective_fista_at_100", "objective_fista_at_100"),
    ("objective_ista_at_1000", "objective_ista_at_1000"),
    ("seconds", "seconds"),
    ("job", "job"),
]

# A learned-ISTA sweep (model=lista): code error (dB, lower is better) of LISTA and the solvers after T steps.
LISTA_COLUMNS: list[tuple[str, str]] = [
    ("LISTA NMSE (dB)", "nmse_db_lista"),
    ("FISTA NMSE (dB)", "nmse_db_fista"),
    ("ISTA NMSE (dB)", "nmse_db_ista"),
    ("layers", "layers"),
    ("problem", "problem"),
    ("against", "scored_against"),
    ("tied", "tied"),
    ("fista_iterations_to_match_lista", "fista_iterations_to_match_lista"),
    ("ista_iterations_to_match_lista", "ista_iterations_to_match_lista"),
    ("seconds", "seconds"),
    ("job", "job"),
]

# Per kind of job: the key its results.json has, its columns, and the columns that label its bars.
TABLES = [
    ("test_acc", CLASSIFIER_COLUMNS, ("Loss", "Learning Rate")),
    ("psnr_fista", DEBLUR_COLUMNS, ("lam", "basis")),
    ("nmse_db_lista", LISTA_COLUMNS, ("layers", "problem")),
]
LOWER_IS_BETTER = {"nmse_db_lista"}
CLUSTER_LABELS = ("model", "Reduced Method", "Latent Dimension", "Reduced Dimension", "clusterer")


def collect_results(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job's results.json below the sweep folder, with its folder as `job`."""
    rows = []
    for path in sorted(sweep_dir.glob("**/results.json")):
        with open(path) as f:
            results = json.load(f)
        results["job"] = str(path.parent.relative_to(sweep_dir))
        rows.append(results)
    return rows


def columns_for(results: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], tuple[str, ...]]:
    """The table's columns and the columns that label a job in the scores plot."""
    for key, columns, labelled_by in TABLES:
        if results and all(key in r for r in results):
            return columns, labelled_by
    return COLUMNS, CLUSTER_LABELS


def summary_rows(results: list[dict[str, Any]], columns: list[tuple[str, str]]) -> list[list[Any]]:
    """One row per job in `columns` order, best score (the first column) first, jobs without one last."""
    score = columns[0][1]
    sign = 1.0 if score in LOWER_IS_BETTER else -1.0
    ordered = sorted(results, key=lambda r: (r.get(score) is None, sign * (r.get(score) or 0.0)))
    rows = []
    for r in ordered:
        row = {**r, "reducer": REDUCED_METHOD.get(r.get("reducer"), r.get("reducer"))}
        row["seconds"] = round(sum(r.get("seconds", {}).values()), 1)
        # Five significant digits, not five decimals: a lam of 3e-6 must not show as 0.0.
        rows.append([float(f"{v:.5g}") if isinstance(v, float) else v for v in (row.get(key) for _, key in columns)])
    return rows


def markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: Path) -> tuple[list[str], list[list[Any]], list[dict[str, Any]]]:
    """Write summary.csv, summary.md and plots/scores.png (and, for classifiers, plots/loss_curves.png)."""
    results = collect_results(sweep_dir)
    columns, labelled_by = columns_for(results)
    names = [name for name, _ in columns]
    rows = summary_rows(results, columns)
    write_csv(sweep_dir / "summary.csv", names, rows)
    write_text(sweep_dir / "summary.md", markdown_table(names, rows))
    if rows:
        labels = [" ".join(f"{row[names.index(n)]}" for n in labelled_by) + f" (job {row[-1]})" for row in rows]
        save_figure(sweep_dir / "plots" / "scores.png", plots.scores_figure(labels, [row[0] for row in rows], names[0]))
    curves = {r["job"]: r["curves"] for r in results if r.get("curves")}
    if curves:
        save_figure(sweep_dir / "plots" / "loss_curves.png", plots.loss_curves_figure(curves))
    return names, rows, results


def save_figure(path: Path, figure: Any) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plots.plt.close(figure)


class SweepSummary(Callback):
    """Hydra callback: launcher settings checked before a multirun; its table on disk and in W&B after."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_launcher(config.hydra)
        except UserError as e:  # outside the task function: say it in one line here
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        columns, rows, results = write_summary(sweep_dir)
        log.info("sweep summary of %d jobs: %s", len(rows), sweep_dir / "summary.md")
        if not rows or not str(config.logger.get("_target_", "")).endswith("WandbLogger"):
            return
        logger = make_logger(
            config.logger, sweep_dir, group=sweep_group(sweep_dir), name="summary", config={"sweep_dir": str(sweep_dir)}
        )
        import wandb

        run = logger.experiment
        run.log({"summary": wandb.Table(columns=columns, data=[[str(v) if isinstance(v, list) else v for v in row] for row in rows])})
        with_curves = [r for r in results if r.get("curves")]
        if with_curves:  # every job's eval loss per epoch in one W&B chart
            run.log({"loss_curves": wandb.plot.line_series(
                xs=[[row["epoch"] for row in r["curves"]] for r in with_curves],
                ys=[[row.get("val/loss") for row in r["curves"]] for r in with_curves],
                keys=[f"job {r['job']}: loss={r.get('loss')} lr={r.get('lr')}" for r in with_curves],
                title="eval loss per epoch", xname="epoch",
            )})
        run.finish()
