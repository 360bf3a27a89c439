"""task=classify (model=mlp) in this process: the job, its features, and the settings it refuses up front."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from helpers import check_job, history_keys, run_job, wandb_summary

from experiments.errors import UserError

MLP = ["task=classify", "data=digits", "data.eval_fraction=0.3", "model.optimizer=adam", "model.lr=0.01"]


def test_mlp_on_digits_scores_test_accuracy_and_logs_curves_and_confusion(tmp_path):
    job = run_job(tmp_path, *MLP, "trainer.max_epochs=15", "logger=wandb", figures=True)
    r = job.results
    assert r["kind"] == "classify" and job.score == r["test_acc"] > 0.9, "an MLP classifies held-out digits well"
    assert r["top1_error"] == pytest.approx(1 - r["test_acc"]) and r["top5_error"] < r["top1_error"]
    assert len(r["per_class_acc"]) == 10 and min(r["per_class_acc"].values()) > 0.6
    assert len(r["curves"]) == 15 and r["curves"][-1]["train/loss_epoch"] < r["curves"][0]["train/loss_epoch"]
    norms = [row["train/output_grad_norm"] for row in r["curves"]]
    assert all(n > 0 for n in norms) and norms[-1] < norms[0], "the output gradient shrinks as the model fits"
    assert (job.dir / "plots" / "confusion_matrix.png").exists() and (job.dir / "plots" / "curves.png").exists()
    with open(job.dir / "predictions.csv") as f:
        assert len(list(csv.DictReader(f))) == 540  # 30% of 1,797
    assert wandb_summary(r["wandb_dir"])["summary"]["test_acc"] == pytest.approx(r["test_acc"])
    assert {"train/output_grad_norm", "val/acc"} <= history_keys(r["wandb_dir"])


def test_manual_and_autograd_gradients_train_the_same_model_through_the_job(tmp_path):
    settings = [*MLP, "trainer.max_epochs=3", "trainer.precision=64-true", "logger=none", "model.batchnorm=true"]
    manual = run_job(tmp_path, *settings, "model.gradients=manual", name="manual")
    auto = run_job(tmp_path, *settings, "model.gradients=autograd", name="auto")
    for a, b in zip(manual.results["curves"], auto.results["curves"]):
        assert a["train/loss_epoch"] == pytest.approx(b["train/loss_epoch"], abs=1e-6)
        assert a["val/loss"] == pytest.approx(b["val/loss"], abs=1e-6)
    assert manual.results["test_acc"] == auto.results["test_acc"]


def test_mlp_on_an_encoders_codes_reuses_the_cached_encoder(tmp_path):
    run_job(tmp_path, "data=digits", "data.eval_fraction=0.3", "model.latent_dim=12", "trainer.max_epochs=2",
            "reducer=pca", "reducer.n_components=2", "plots.tsne=false", "logger=none", name="ae")
    mlp = run_job(tmp_path, *MLP, "task.features=codes", "task.encoder.latent_dim=12",
                  "task.encoder_max_epochs=2", "trainer.max_epochs=5", "logger=none", name="mlp")
    assert mlp.results["features"] == "codes" and mlp.results["n_features"] == 12
    assert mlp.results["test_acc"] > 0.5


def test_the_classifier_reads_the_codes_of_whichever_encoder_task_encoder_names(tmp_path):
    dense = ["model.latent_dim=6", "model.hidden=[32]"]
    run_job(tmp_path, "data=digits", "data.eval_fraction=0.3", "model=dense_autoencoder", *dense, "trainer.max_epochs=1",
            "reducer=pca", "reducer.n_components=2", "plots.tsne=false", name="dense")
    mlp = run_job(tmp_path, *MLP, "task.features=codes", "model@task.encoder=dense_autoencoder",
                  *(f"task.encoder.{d.split('.', 1)[1]}" for d in dense), "task.encoder_max_epochs=1",
                  "trainer.max_epochs=1", name="mlp")
    assert mlp.results["n_features"] == 6, "the dense autoencoder's codes, not a ConvAutoencoder built in its place"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.hidden_dims=[]"], "model.hidden_dims"),
        (["model.hidden_dims=[16,0]"], "model.hidden_dims"),
        (["model.loss=hinge"], "model.loss='hinge'"),
        (["model.activation=tanh"], "model.activation='tanh'"),
        (["model.gradients=numeric"], "model.gradients='numeric'"),
        (["model.lr=0"], "model.lr must be > 0"),
        (["task.standardize=no"], "task.standardize='no': use true or false"),
        (["model.batchnorm=no"], "model.batchnorm='no': use true or false"),  # the constructor's hint
        (["model.optimizer=sgd", "model.momentum=-1"], r"its optimiser refuses the settings \(Invalid momentum value"),
        (["task.features=hog"], "task.features='hog'"),
        (["task.features=codes", "task.encoder.latent_dim=7"], "no cached encoder matches"),
        (["data.eval_fraction=0"], "own training images"),
        # the first 500 images of one array are fit and eval images at once, whatever the limits
        (["data.eval_fraction=0", "data.eval_limit=500"], "own training images"),
        (["data.eval_fraction=0", "data.fit_limit=100", "data.eval_limit=500"], "own training images"),
    ],
)
def test_bad_classifier_settings_are_refused_by_the_check(overrides, message, tmp_path):
    with pytest.raises(UserError, match=message):
        check_job(*MLP, f"cache_dir={tmp_path}", *overrides)


def test_a_model_that_is_not_a_classifier_is_refused_for_classify():
    with pytest.raises(UserError, match="task=classify trains a classifier"):
        check_job("model=autoencoder", "task=classify", "data=digits", "data.eval_fraction=0.3")


def labelled_npy(tmp_path, images: np.ndarray, labels: np.ndarray) -> dict[str, str]:
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", labels)
    return {"x": str(tmp_path / "x.npy"), "y": str(tmp_path / "y.npy")}


def test_an_eval_path_naming_the_train_file_is_scoring_on_training_images(tmp_path):
    files = labelled_npy(tmp_path, np.random.default_rng(0).random((20, 6, 6)), np.arange(20) % 2)
    with pytest.raises(UserError, match="own training images"):
        check_job("task=classify", "data=npy", f"data.train_path={files['x']}", f"data.train_labels_path={files['y']}",
                  f"data.eval_path={tmp_path}/../{tmp_path.name}/x.npy", f"data.eval_labels_path={files['y']}")


def test_mlp_refuses_nan_inputs(tmp_path):
    images = np.random.default_rng(0).random((20, 6, 6))
    images[4, 1, 1] = np.nan
    files = labelled_npy(tmp_path, images, np.arange(20) % 2)
    with pytest.raises(UserError, match="NaN or inf"):
        check_job("task=classify", "data=npy", f"data.train_path={files['x']}", f"data.train_labels_path={files['y']}")


def test_a_partial_checkpoint_of_other_settings_is_never_resumed(tmp_path):
    """Two classifier jobs in one folder (a sweep folder reused): the second must not resume the first's weights
    and optimiser state, whatever the first left behind."""
    killer = ["trainer.callbacks=[{_target_: test_resume.KillAtEpoch, epoch: 2}]"]
    from test_resume import Killed

    with pytest.raises(Killed):
        run_job(tmp_path, *MLP, "trainer.max_epochs=4", "logger=none", *killer)
    (left,) = (tmp_path / "run").glob("training-*.partial.ckpt")
    other = run_job(tmp_path, *MLP, "trainer.max_epochs=4", "logger=none", "model.lr=0.02")
    assert [row["epoch"] for row in other.results["curves"]] == [0, 1, 2, 3], "trained from its own first epoch"
    assert left.exists(), "the killed job's checkpoint is its own, named by its settings and code"
