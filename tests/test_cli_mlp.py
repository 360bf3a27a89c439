"""End-to-end: model=mlp, reducer=tsne_exact and the loss_compare sweep, as a user runs them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import wandb_records
from conftest import QUICK, run_cli
from test_cli_errors import assert_one_line_error

pytestmark = pytest.mark.slow

MLP = ["model=mlp", "data=digits", "data.eval_fraction=0.3", "model.optimizer=adam", "model.lr=0.01"]


def test_mlp_on_digits_scores_test_accuracy_and_logs_curves_and_confusion(tmp_path):
    run = run_cli(tmp_path / "run", *MLP, "trainer.max_epochs=15")
    assert run.returncode == 0, run.stderr
    r = run.results
    assert r["test_acc"] > 0.9, "an MLP classifies held-out digits well"
    assert r["top1_error"] == pytest.approx(1 - r["test_acc"]) and r["top5_error"] < r["top1_error"]
    assert len(r["per_class_acc"]) == 10 and min(r["per_class_acc"].values()) > 0.6
    assert len(r["curves"]) == 15 and r["curves"][-1]["train/loss_epoch"] < r["curves"][0]["train/loss_epoch"]
    norms = [row["train/output_grad_norm"] for row in r["curves"]]
    assert all(n > 0 for n in norms) and norms[-1] < norms[0], "the output gradient shrinks as the model fits"
    assert (run.dir / "plots" / "confusion_matrix.png").exists() and (run.dir / "plots" / "curves.png").exists()
    assert len(list(csv.DictReader(open(run.dir / "predictions.csv")))) == 540  # 30% of 1,797
    summary = wandb_records.summary(Path(r["wandb_dir"]))
    assert summary["test_acc"] == pytest.approx(r["test_acc"])
    assert "train/output_grad_norm" in summary and "val/acc" in summary
    assert summary["confusion_matrix/_type"] == "image-file"


def test_manual_and_autograd_gradients_train_the_same_model_through_the_cli(tmp_path):
    settings = [*MLP, "trainer.max_epochs=3", "trainer.precision=64-true", "logger=none", "model.batchnorm=true"]
    manual = run_cli(tmp_path / "manual", *settings, "model.gradients=manual")
    auto = run_cli(tmp_path / "auto", *settings, "model.gradients=autograd")
    assert manual.returncode == 0 and auto.returncode == 0, manual.stderr + auto.stderr
    for a, b in zip(manual.results["curves"], auto.results["curves"]):
        assert a["train/loss_epoch"] == pytest.approx(b["train/loss_epoch"], abs=1e-6)
        assert a["val/loss"] == pytest.approx(b["val/loss"], abs=1e-6)
    assert manual.results["test_acc"] == auto.results["test_acc"]


def test_mlp_on_autoencoder_codes_reuses_the_cached_autoencoder(tmp_path):
    cache = tmp_path / "cache"
    encoder = run_cli(tmp_path / "ae", "data=digits", "data.eval_fraction=0.3", "model.latent_dim=12",
                      "trainer.max_epochs=2", "reducer=pca", "reducer.n_components=2", "plots.tsne=false",
                      "logger=none", cache=cache)
    assert encoder.returncode == 0, encoder.stderr
    mlp = run_cli(tmp_path / "mlp", *MLP, "model.features=autoencoder", "model.encoder.latent_dim=12",
                  "model.encoder_max_epochs=2", "trainer.max_epochs=5", "logger=none", cache=cache)
    assert mlp.returncode == 0, mlp.stderr
    assert mlp.results["features"] == "autoencoder" and mlp.results["n_features"] == 12
    assert mlp.results["test_acc"] > 0.5


def test_mlp_features_from_a_missing_autoencoder_is_a_one_line_error(tmp_path):
    run = run_cli(tmp_path / "run", *MLP, "model.features=autoencoder", "model.encoder.latent_dim=7", "logger=none")
    assert_one_line_error(run, "model.features=autoencoder", "no cached autoencoder")


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (["model.hidden_dims=[]"], ["model.hidden_dims"]),
        (["model.hidden_dims=[16,0]"], ["model.hidden_dims"]),
        (["model.loss=hinge"], ["model.loss='hinge'"]),
        (["model.activation=tanh"], ["model.activation='tanh'"]),
        (["model.features=hog"], ["model.features='hog'"]),
        (["data.eval_fraction=0"], ["own training images", "data.eval_fraction"]),
    ],
    ids=["empty_hidden", "zero_hidden", "loss", "activation", "features", "no_holdout"],
)
def test_bad_mlp_settings_give_one_line_naming_the_setting(tmp_path, overrides, fragments):
    run = run_cli(tmp_path / "run", *MLP, "logger=none", *overrides)
    assert_one_line_error(run, *fragments)


def test_mlp_refuses_nan_inputs(tmp_path):
    images = np.random.default_rng(0).random((20, 6, 6))
    images[4, 1, 1] = np.nan
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", np.arange(20) % 2)
    run = run_cli(tmp_path / "run", "model=mlp", "data=npy", f"data.train_path={tmp_path / 'x.npy'}",
                  f"data.train_labels_path={tmp_path / 'y.npy'}", f"data.eval_path={tmp_path / 'x.npy'}",
                  f"data.eval_labels_path={tmp_path / 'y.npy'}", "logger=none")
    assert_one_line_error(run, "NaN or inf")


def test_loss_compare_sweep_tables_ce_against_mse_at_three_learning_rates(tmp_path):
    sweep = tmp_path / "sweep"
    run = run_cli(sweep, "+sweep=loss_compare", "data=digits", "data.eval_fraction=0.3", "trainer.max_epochs=4",
                  multirun=True)
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert list(rows[0])[:3] == ["Test Accuracy", "Loss", "Learning Rate"]
    assert {(r["Loss"], r["Learning Rate"]) for r in rows} == {
        (loss, lr) for loss in ("cross_entropy", "mse") for lr in ("0.01", "0.1", "0.5")
    }
    accuracies = [float(r["Test Accuracy"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert (sweep / "plots" / "loss_curves.png").exists()
    (summary_run,) = sweep.glob("wandb/offline-run-*")
    summary = wandb_records.summary(summary_run)
    assert summary["summary/nrows"] == 6
    assert summary["loss_curves_table/nrows"] == 6 * 4, "a line chart of every job's eval loss per epoch"


def test_tsne_exact_reduces_codes_to_eight_dimensions(tmp_path):
    run = run_cli(tmp_path / "run", *QUICK, "reducer=tsne_exact", "reducer.n_components=8", "reducer.n_iter=300",
                  "data.eval_limit=500", "plots.tsne=false", "logger=none")
    assert run.returncode == 0, run.stderr
    r = run.results
    assert (r["reducer"], r["reduced_dim"]) == ("tsne_exact", 8)
    assert r["acc"] > 0.6 and r["tsne_kl"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU, so accelerator=gpu is valid here")
def test_tsne_exact_on_a_gpu_that_is_not_there_is_refused(tmp_path):
    run = run_cli(tmp_path / "run", *QUICK, "reducer=tsne_exact", "accelerator=gpu", "logger=none")
    assert_one_line_error(run, "accelerator=gpu")
