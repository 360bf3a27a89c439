"""End-to-end: `python -m experiments` on the digits and on .npy files, checked through the files it leaves."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import wandb_records
from conftest import QUICK, run_cli

pytestmark = pytest.mark.slow

RESULT_KEYS = {
    "public_score", "private_score", "acc", "nmi", "ari", "recon_mse", "recon_mse_examples", "latent_dim",
    "reducer", "reduced_dim", "clusterer", "n_clusters", "seconds", "cache", "wandb_dir",
}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def media(run_dir: Path, pattern: str) -> list[Path]:
    return sorted((run_dir / "files" / "media").glob(pattern))


def test_one_run_scores_the_digits_and_records_everything_in_files_and_wandb(tmp_path):
    run = run_cli(tmp_path / "run", *QUICK, "model.latent_dim=16")
    assert run.returncode == 0, run.stderr
    results = run.results
    assert RESULT_KEYS <= set(results)
    assert results["acc"] > 0.6, "a trained autoencoder + t-SNE + k-means separates the digits far above chance"
    assert all(0 <= results[k] <= 1 for k in ("public_score", "private_score", "nmi"))
    assert (results["latent_dim"], results["reducer"], results["reduced_dim"]) == (16, "tsne", 2)
    assert (results["clusterer"], results["n_clusters"], results["cache"]) == ("kmeans", 10, "miss")
    assert {"load", "fit", "encode", "reduce", "cluster", "score", "plots"} <= set(results["seconds"])
    examples = results["recon_mse_examples"]
    assert len(examples) == 2 and examples[0]["label"] != examples[1]["label"]
    assert all(0 < e["mse"] < 1 for e in examples)

    predictions = read_csv(run.dir / "predictions.csv")
    assert len(predictions) == 1797 and list(predictions[0]) == ["id", "label"]
    assert {int(p["label"]) for p in predictions} == set(range(10))
    assert np.load(run.dir / "codes.npy").shape == (1797, 16)
    for name in ("reconstructions", "embedding_pca", "embedding_tsne"):
        assert (run.dir / "plots" / f"{name}.png").stat().st_size > 1000

    wandb_dir = Path(results["wandb_dir"])
    assert wandb_dir.parent.parent == run.dir, "the W&B run lives under the job's folder"
    summary = wandb_records.summary(wandb_dir)
    assert summary["acc"] == pytest.approx(results["acc"]) and summary["public_score"] == pytest.approx(results["public_score"])
    assert "train/loss_epoch" in summary and "val/recon_mse" in summary, "training curves reach W&B"
    assert wandb_records.config(wandb_dir)["model"]["latent_dim"] == 16, "the resolved config reaches W&B"
    assert summary["reconstructions_panel/count"] == 8
    assert all("MSE" in caption for caption in summary["reconstructions_panel/captions"])
    assert len(media(wandb_dir, "images/reconstructions_panel_*.png")) == 8, "one file per panel image"
    assert media(wandb_dir, "images/embedding/pca_*.png") and media(wandb_dir, "images/embedding/tsne_*.png")
    (table,) = media(wandb_dir, "table/embedding_2d_*.table.json")
    assert summary["embedding_2d/nrows"] == 1000  # 500 sampled codes, by PCA and by t-SNE
    assert wandb_records.exit_code(wandb_dir) == 0


def test_a_second_run_with_the_same_settings_loads_the_model_from_the_cache(tmp_path):
    settings = [*QUICK, "reducer=pca", "reducer.n_components=4", "plots.tsne=false", "logger=none"]
    first = run_cli(tmp_path / "first", *settings)
    second = run_cli(tmp_path / "second", *settings)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert (first.results["cache"], second.results["cache"]) == ("miss", "hit")
    assert second.results["checkpoint"] == first.results["checkpoint"]
    assert second.results["acc"] == first.results["acc"]
    assert second.results["seconds"]["fit"] < first.results["seconds"]["fit"]
    assert first.results["wandb_dir"] is None


def test_the_same_seed_trains_the_same_model_and_another_seed_does_not(tmp_path):
    settings = [*QUICK, "reducer=pca", "reducer.n_components=4", "plots.tsne=false", "logger=none", "cache=false"]
    runs = [run_cli(tmp_path / name, *settings, f"seed={seed}") for name, seed in (("a", 0), ("b", 0), ("c", 1))]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    weights = [torch.load(r.dir / "model.pt", weights_only=True)["state_dict"] for r in runs]
    first_layer = "encoder.0.weight"
    assert torch.equal(weights[0][first_layer], weights[1][first_layer])
    assert not torch.equal(weights[0][first_layer], weights[2][first_layer])
    assert (runs[0].dir / "predictions.csv").read_text() == (runs[1].dir / "predictions.csv").read_text()
    assert runs[0].results["cache"] == "off"


def test_own_npy_images_with_labels_are_scored(tmp_path, npy_files):
    run = run_cli(
        tmp_path / "run", "data=npy", f"data.train_path={npy_files['images']}",
        f"data.eval_labels_path={npy_files['labels']}", "trainer.max_epochs=5", "model.latent_dim=4",
        "reducer=pca", "reducer.n_components=2", "logger=csv",
    )
    assert run.returncode == 0, run.stderr
    assert run.results["n_clusters"] == 2
    assert run.results["acc"] > 0.9, "horizontal and vertical stripes are two obvious clusters"
    assert list((run.dir / "csv").glob("**/metrics.csv")), "logger=csv writes the training curves"


def test_own_npy_images_without_labels_give_null_scores_and_still_predictions(tmp_path, npy_files):
    run = run_cli(
        tmp_path / "run", "data=npy", f"data.train_path={npy_files['images']}", "clusterer.n_clusters=2",
        "trainer.max_epochs=1", "reducer=none", "logger=none", "plots.tsne=false",
    )
    assert run.returncode == 0, run.stderr
    assert all(run.results[k] is None for k in ("public_score", "private_score", "acc", "nmi", "ari"))
    assert run.results["recon_mse"] > 0
    assert len(read_csv(run.dir / "predictions.csv")) == 120
    assert run.results["reduced_dim"] == run.results["latent_dim"] == 32


def test_a_small_multirun_writes_a_sorted_summary_one_wandb_run_per_job_and_trains_each_model_once(tmp_path):
    sweep = tmp_path / "sweep"
    run = run_cli(
        sweep, *QUICK, "plots.tsne=false", "reducer=pca", "model.latent_dim=8,16", "reducer.n_components=2,4",
        multirun=True,
    )
    assert run.returncode == 0, run.stderr
    rows = read_csv(sweep / "summary.csv")
    assert list(rows[0])[:5] == ["Public Score", "Private Score", "Reduced Method", "Latent Dimension", "Reduced Dimension"]
    assert len(rows) == 4
    assert {(r["Latent Dimension"], r["Reduced Dimension"]) for r in rows} == {("8", "2"), ("8", "4"), ("16", "2"), ("16", "4")}
    scores = [float(r["Public Score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert {r["Reduced Method"] for r in rows} == {"PCA"}
    assert sorted(r["cache"] for r in rows) == ["hit", "hit", "miss", "miss"], "two models for four jobs"
    assert (sweep / "summary.md").read_text().startswith("| Public Score | Private Score |")
    assert (sweep / "plots" / "scores.png").stat().st_size > 1000

    # the report command rebuilds the same table from the job folders alone
    table = (sweep / "summary.csv").read_text()
    (sweep / "summary.csv").unlink()
    report = subprocess.run([sys.executable, "-m", "experiments.report", str(sweep)], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert (sweep / "summary.csv").read_text() == table

    job_runs = sorted(sweep.glob("[0-9]*/wandb/offline-run-*"))
    assert len(job_runs) == 4
    infos = [wandb_records.run_info(d) for d in job_runs]
    assert len({i.run_id for i in infos}) == 4
    assert {i.run_group for i in infos} == {str(sweep)}, "one W&B group per multirun"
    assert all(wandb_records.exit_code(d) == 0 for d in job_runs), "every job's run is finished"
    assert all("train/loss_epoch" in wandb_records.history_keys(d) for d in job_runs), (
        "jobs whose model came from the cache show its training curves too"
    )
    (summary_run,) = sweep.glob("wandb/offline-run-*")
    assert wandb_records.run_info(summary_run).run_group == str(sweep)
    assert wandb_records.summary(summary_run)["summary/nrows"] == 4


def test_the_latent_dims_sweep_runs_the_seed_table_on_three_models(tmp_path):
    sweep = tmp_path / "sweep"
    run = run_cli(sweep, "+sweep=latent_dims", *QUICK, "trainer.max_epochs=1", "plots.tsne=false", "logger=none",
                  multirun=True)
    assert run.returncode == 0, run.stderr
    rows = read_csv(sweep / "summary.csv")
    pca = {(r["Latent Dimension"], r["Reduced Dimension"]) for r in rows if r["Reduced Method"] == "PCA"}
    assert pca == {(latent, reduced) for latent in ("32", "64", "128") for reduced in ("8", "16", "32")}
    tsne = [(r["Latent Dimension"], r["Reduced Dimension"]) for r in rows if r["Reduced Method"] == "tSNE (exact)"]
    assert tsne == [("32", "8")], "the seed table's t-SNE row, 32 -> 8"
    assert len(rows) == 10 and [r["cache"] for r in rows].count("miss") == 3


def test_the_tsne_iters_sweep_draws_tsne_at_each_iteration_count_beside_pca(tmp_path):
    sweep = tmp_path / "sweep"
    run = run_cli(
        sweep, "+sweep=tsne_iters", *QUICK, "trainer.max_epochs=1", "data.eval_limit=400", "logger=none",
        multirun=True,
    )
    assert run.returncode == 0, run.stderr
    rows = read_csv(sweep / "summary.csv")
    assert len(rows) == 4 and {r["Reduced Method"] for r in rows} == {"tSNE"}
    for job in sweep.glob("[0-9]*"):
        assert (job / "plots" / "embedding_tsne.png").exists() and (job / "plots" / "embedding_pca.png").exists()
    results = [json.loads(p.read_text()) for p in sweep.glob("[0-9]*/results.json")]
    kl_by_iter = {}
    for job in sweep.glob("[0-9]*"):
        n_iter = int(yaml_value(job / ".hydra" / "overrides.yaml", "reducer.n_iter"))
        kl_by_iter[n_iter] = json.loads((job / "results.json").read_text())["tsne_kl"]
    assert sorted(kl_by_iter) == [250, 500, 750, 1000] and len(results) == 4
    assert kl_by_iter[1000] < kl_by_iter[250], "more iterations fit the embedding better"


def yaml_value(path: Path, key: str) -> str:
    """The value of `key=value` in a Hydra overrides.yaml."""
    for line in path.read_text().splitlines():
        if line.lstrip("- ").startswith(f"{key}="):
            return line.split("=", 1)[1]
    raise KeyError(key)
