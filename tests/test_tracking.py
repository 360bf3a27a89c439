"""What a run leaves in W&B (read back with W&B's own reader), the progress bars of long work, the sweep plan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CONF, QUICK, compose_config, run_job, wandb_history, wandb_records, wandb_summary
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from experiments import console
from experiments.lasso import solve
from experiments.launch import sweep_plan
from experiments.reduce import OpenTSNE

PCA4 = ["reducer=pca", "reducer.n_components=4", "plots.tsne=false"]


def records(run_dir: str, kind: str) -> list[dict]:
    return [r[kind] for r in wandb_records(run_dir) if r["type"] == kind]


def test_a_single_run_is_named_tagged_typed_and_has_one_config_tree(tmp_path):
    job = run_job(tmp_path, *QUICK, *PCA4, "logger.tags=[mine]", "logger.notes=first try")
    run = wandb_summary(job.results["wandb_dir"])
    assert run["name"] and set(run["tags"]) == {"mine", "model=autoencoder", "data=digits", "reducer=pca",
                                                "clusterer=kmeans"}
    assert run["notes"] == "first try" and records(job.results["wandb_dir"], "run")[0]["job_type"] == "cluster"
    assert "latent_dim" not in run["config"] and "lr" not in run["config"], "no flat copies of model settings"
    assert run["config"]["model"]["latent_dim"] == 32


def test_the_scores_declare_the_best_value_their_kind_declares_and_nothing_else_guesses_one(tmp_path):
    job = run_job(tmp_path, *QUICK, *PCA4, "logger=wandb")
    declared = {m.get("name"): m["summary"] for m in records(job.results["wandb_dir"], "metric") if "summary" in m}
    assert declared == {"public_score": {"max": True}, "private_score": {"max": True}, "acc": {"max": True},
                        "nmi": {"max": True}, "ari": {"max": True}, "knn_acc": {"max": True},
                        "recon_mse": {"min": True}}, "the cluster kind's scores, as JobKind.scores says; no name guessed"


def test_a_cache_hit_replays_the_training_curves_on_the_fresh_runs_axis_and_uses_its_model_artifact(tmp_path):
    fresh = run_job(tmp_path, *QUICK, *PCA4, "logger=wandb", name="fresh")
    hit = run_job(tmp_path, *QUICK, *PCA4, "logger=wandb", name="hit")
    assert (fresh.results["cache"], hit.results["cache"]) == ("miss", "hit")

    def curve(job) -> list[tuple[int, float]]:
        rows = wandb_history(job.results["wandb_dir"])
        return [(row["trainer/global_step"], round(row["train/loss_epoch"], 6)) for row in rows if "train/loss_epoch" in row]

    assert curve(hit) == curve(fresh) and len(curve(fresh)) == 2
    (artifact,) = [a for a in records(fresh.results["wandb_dir"], "artifact") if a["type"] == "model"]
    assert artifact["type"] == "model" and artifact["name"] == fresh.results["model_artifact"]
    assert artifact["name"] == "model-" + Path(fresh.results["checkpoint"]).stem, "named by the cache key"
    # offline, W&B cannot record a use: the hit names the artifact and does not log the model again
    assert all(a["type"] != "model" for a in records(hit.results["wandb_dir"], "artifact"))
    assert wandb_summary(hit.results["wandb_dir"])["summary"]["model_artifact"] == artifact["name"]


def table(run_dir: str, name: str) -> dict:
    (path,) = Path(run_dir).glob(f"files/media/table/{name}_*.table.json")
    return json.loads(path.read_text())


def history_keys_of(job) -> set[str]:
    """The first part of every key the job's W&B run logged to its history."""
    return {key.split(".")[0] for row in wandb_history(job.results["wandb_dir"]) for key in row}


def test_cluster_assignments_and_a_sample_of_the_codes_are_tables_with_the_classes_names(tmp_path):
    job = run_job(tmp_path, *QUICK, *PCA4, "model.latent_dim=12", "logger=wandb", "data.class_names=[zero,one,two,"
                  "three,four,five,six,seven,eight,nine]")
    assignments = table(job.results["wandb_dir"], "assignments")
    assert assignments["columns"] == ["id", "label", "class", "cluster", "cluster_class"]
    assert len(assignments["data"]) == 600 and assignments["data"][0][:3] == [0, 0, "zero"]
    assert {row[4] for row in assignments["data"]} <= {"zero", "one", "two", "three", "four", "five", "six", "seven",
                                                       "eight", "nine"}, "each cluster named by its matched class"
    codes = table(job.results["wandb_dir"], "codes")
    assert codes["columns"] == ["index", "class", "cluster", "code"] and len(codes["data"]) == 300
    # tables in the run's summary (a table panel in W&B's web app), not its history (charts in wandb leet)
    summary = wandb_summary(job.results["wandb_dir"])["summary"]
    assert summary["assignments"]["_type"] == "table-file" and "assignments" not in history_keys_of(job)
    assert all(len(row[3]) == 12 for row in codes["data"]), "the codes themselves, for the embedding projector"
    # drawn without figures (plots.enabled=false, run_job's default): no PNG, image panel or 2-D view anywhere
    assert not (job.dir / "plots").exists() and not (job.dir / "embedding_2d.csv").exists()
    media = {path.name.split("_")[0] for path in Path(job.results["wandb_dir"]).glob("files/media/*/*")}
    assert media == {"assignments", "codes"}, media


def test_the_classifier_logs_its_predictions_and_w_and_bs_own_confusion_matrix(tmp_path):
    job = run_job(tmp_path, "task=classify", "data=digits", "data.eval_fraction=0.3", "trainer.max_epochs=2", "logger=wandb",
                  figures=True)
    keys = history_keys_of(job)
    assert {"confusion_matrix", "confusion_matrix_chart_table"} <= keys, "W&B's chart: in the history, as W&B logs it"
    predictions = table(job.results["wandb_dir"], "predictions")
    assert len(predictions["data"]) == 540 and predictions["columns"] == ["id", "label", "class"]
    assert "predictions" not in keys and {row[2] for row in predictions["data"]} <= {str(d) for d in range(10)}
    assert [a["type"] for a in records(job.results["wandb_dir"], "artifact")].count("model") == 1


@pytest.fixture
def bars_at_once(monkeypatch):
    """Progress bars show after 2 s of work, redrawn every 0.1 s; these tests' work is shorter."""
    monkeypatch.setattr(console, "PROGRESS_DELAY_S", 0.0)
    monkeypatch.setattr(console, "PROGRESS_REFRESH_S", 0.0)


def test_tsne_shows_a_progress_bar_with_the_current_kl(bars_at_once, capsys):
    X = np.random.default_rng(0).normal(size=(200, 5))
    OpenTSNE(perplexity=10, n_iter=100, n_jobs=1, random_state=0, verbose=True).fit(X)
    assert "KL=" in capsys.readouterr().err
    OpenTSNE(perplexity=10, n_iter=100, n_jobs=1, random_state=0).fit(X)
    assert "KL=" not in capsys.readouterr().err, "verbose=False: quiet"


def test_a_long_fista_run_shows_its_progress(bars_at_once, capsys):
    A = torch.randn(20, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    solve(A, A @ torch.ones(40, dtype=torch.float64), 0.1, max_iter=100, tol=0, progress="FISTA for F*")
    err = capsys.readouterr().err
    assert "FISTA for F*" in err and "objective=" in err


def test_the_sweep_plan_counts_the_jobs_and_names_what_varies():
    with initialize_config_dir(str(CONF), version_base="1.3"):  # as in a multirun: the loader expands globs
        hydra_cfg = compose("config", overrides=["+sweep=latent_dims"], return_hydra_config=True).hydra
        hydra_cfg.overrides.task.append("model.lr=0.1,0.2")  # on the command line of a multirun
        assert sweep_plan(hydra_cfg) == {"jobs": 20, "swept": ["sweep/latent_dims", "model.lr"]}
        n2d = compose("config", overrides=["+sweep=n2d"], return_hydra_config=True).hydra
        n2d.overrides.task.append("seed=0,1,2")  # narrows the sweep's seeds 0-4
        clustering_recipes = [p for p in (CONF / "recipe").glob("*.yaml") if not p.stem.startswith("lista_")]
        assert sweep_plan(n2d) == {"jobs": 3 * len(clustering_recipes), "swept": ["recipe", "seed"]}
    compose_config("+sweep=search", "hydra.sweeper.n_trials=7", hydra_context=True)
    assert sweep_plan(HydraConfig.get()) == {"jobs": 7, "swept": ["model.latent_dim", "model.lr",
                                                                   "reducer.n_components", "clusterer"]}
