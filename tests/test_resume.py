"""Interrupted work: a resumed training is the uninterrupted one, a finished job is skipped only when its
config and code match, and a sweep folder is never shared by two sweeps. One real kill of a sweep."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from helpers import QUICK, REPO, cli_env, compose_config, run_cli, run_job, wandb_summary

from experiments import jobs, pipeline
from experiments.data import Digits
from experiments.errors import UserError
from experiments.jobs.cluster.stages import fit_then_train
from experiments.models.autoencoder import ConvAutoencoder
from experiments.models.random_conv_autoencoder import RandomConvAutoencoder
from experiments.models.sparse_coding import SparseCoding
from experiments.resume import finished_results, results_key, stable_run_id, sweep_name


class Killed(Exception):
    """Stands for a SIGKILL between two epochs (a real one is tested end to end below)."""


class KillAtEpoch(pl.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise Killed


def train(model_factory, checkpoint, epochs: int, kill_at: int | None = None, callback: str | None = None
          ) -> pl.LightningModule:
    data = Digits(batch_size=128, fit_limit=600, eval_limit=100, seed=0)
    data.setup()
    pl.seed_everything(0, verbose=False)
    model = model_factory(data)
    callbacks = [] if kill_at is None else [{"_target_": f"{__name__}.KillAtEpoch", "epoch": kill_at}]
    callbacks += [{"_target_": callback}] if callback else []
    cfg = compose_config(f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false", "resume=true")
    cfg.trainer.callbacks = callbacks
    fit_then_train(cfg, model, data, None, checkpoint)  # as the cluster job trains: its fit step (a PCA), then epochs
    return model


@pytest.mark.parametrize("factory", [
    lambda data: ConvAutoencoder(data.image_shape, latent_dim=8),
    lambda data: SparseCoding(data.image_shape, latent_dim=16, fit_iterations=10),  # warm starts are state too
    # its PCA (its fit step) is fitted again before the resumed training starts, then the checkpoint's is restored
    lambda data: RandomConvAutoencoder(data.image_shape, latent_dim=4, hidden=(32,), n_components=20, pool=2),
], ids=["autoencoder", "sparse_coding", "random_conv_autoencoder"])
def test_a_training_killed_after_an_epoch_and_resumed_equals_the_uninterrupted_one(tmp_path, factory):
    straight = train(factory, tmp_path / "a.ckpt", epochs=3)
    with pytest.raises(Killed):
        train(factory, tmp_path / "b.ckpt", epochs=3, kill_at=2)  # killed after epoch 1's checkpoint
    assert (tmp_path / "b.ckpt").exists()
    resumed = train(factory, tmp_path / "b.ckpt", epochs=3)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"{name} differs after the resume")
    assert not (tmp_path / "b.ckpt").exists(), "the partial checkpoint is gone once training is done"


class CtrlC(pl.Callback):
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 2:
            raise KeyboardInterrupt


def test_ctrl_c_keeps_the_epochs_done_and_says_how_to_resume(tmp_path, caplog):
    answer_to_ctrl_c = signal.getsignal(signal.SIGINT)  # Lightning ignores a second Ctrl-C while it shuts down
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(SystemExit):
            train(lambda data: ConvAutoencoder(data.image_shape, latent_dim=8), tmp_path / "c.ckpt", epochs=4,
                  callback=f"{__name__}.CtrlC")
    finally:
        signal.signal(signal.SIGINT, answer_to_ctrl_c)
    assert f"training interrupted after 2 epochs, kept in {tmp_path / 'c.ckpt'}: the same command resumes" in caplog.text
    assert torch.load(tmp_path / "c.ckpt", weights_only=False)["epoch"] == 1


def test_the_same_sweep_command_finds_the_same_folder():
    same = sweep_name(["+sweep=latent_dims", "data=digits", "-m"])
    assert same == sweep_name(["+sweep=latent_dims", "data=digits", "--multirun", "hydra/launcher=joblib",
                               "hydra.launcher.n_jobs=2", "resume=false", "hydra.sweep.dir=x"])
    assert same != sweep_name(["+sweep=latent_dims", "data=fashion_mnist", "-m"])
    assert same.startswith("+sweep=latent_dims,data=digits-")


def test_sweeps_that_differ_in_their_parameters_or_config_name_never_share_a_folder():
    a = sweep_name(["hydra.sweeper.params.x=8,16", "-m"])
    assert a != sweep_name(["hydra.sweeper.params.x=32,64", "-m"])
    assert sweep_name(["--config-name", "other", "-m"]) != sweep_name(["-m"])
    assert sweep_name(["--config-name=other", "-m"]) == sweep_name(["-cn", "other", "-m"])
    assert sweep_name(["-m"]) == sweep_name(["hydra.mode=MULTIRUN"])


def identity(*overrides: str, digest: str = "data") -> tuple[str, str]:
    """(the results key, the code version) of the job these overrides compose, as pipeline.run computes them."""
    cfg = compose_config(*overrides)
    kind = jobs.load(cfg.task.kind)
    settings = kind.settings(cfg)
    return results_key(settings, digest), pipeline.job_code_version(kind, settings)


def test_the_results_key_and_code_version_cover_what_a_kind_reads_not_where_it_logs():
    base = identity()
    for where in ("logger.mode=disabled", "logger=none", "logger=csv", "logger.project=other", "plots.max_points=10",
                  "resume=false", "cache=false", "trainer.enable_progress_bar=false", "task.score=acc"):
        assert identity(where) == base, where
    for what in ("model.latent_dim=8", "seed=1", "trainer.max_epochs=9", "reducer=pca"):
        assert identity(what)[0] != base[0], what
    assert identity(digest="regenerated train.npy")[0] != base[0]
    assert identity("model=sparse_coding")[1] != base[1], "another model's module is other code"
    deblur = identity("task=deblur")
    for unread in ("trainer.max_epochs=9", "data=digits", "+model.unused=1", "logger=none"):
        assert identity("task=deblur", unread) == deblur, f"task=deblur reads no {unread}"
    assert identity("task=deblur", "task.lam=2e-5")[0] != deblur[0]


def write_results(job_dir, **fields):
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "results.json").write_text(json.dumps(fields))


def test_a_finished_job_is_skipped_only_when_its_config_and_code_match(tmp_path, caplog):
    write_results(tmp_path, config_hash="c1", code_version="v1", acc=0.5)
    assert finished_results(tmp_path, "c1", "v1")["acc"] == 0.5
    with caplog.at_level(logging.INFO):
        assert finished_results(tmp_path, "c1", "v2") is None, "other code: run again"
    assert "made by code v1, the code is now v2" in caplog.text
    with pytest.raises(UserError, match="holds the results of a different config; choose another hydra.sweep.dir"):
        finished_results(tmp_path, "c2", "v1")
    with pytest.raises(UserError, match="choose another hydra.run.dir"):  # a single run's folder
        finished_results(tmp_path, "c2", "v1", "hydra.run.dir")


@pytest.mark.parametrize("content", ["", '{"acc": 0.5', "[]", '{"acc": 0.5}'])
def test_an_unreadable_or_partial_results_file_counts_as_unfinished(tmp_path, content):
    (tmp_path / "results.json").write_text(content)
    assert finished_results(tmp_path, "c1", "v1") is None


def test_a_job_run_again_is_skipped_and_returns_its_score(tmp_path):
    settings = [*QUICK, "reducer=pca", "reducer.n_components=4", "plots.tsne=false"]
    first = run_job(tmp_path, *settings, "logger=wandb")
    stamp = (first.dir / "results.json").stat().st_mtime_ns
    again = run_job(tmp_path, *settings, "logger.mode=disabled")  # logged elsewhere: still the same job
    assert again.score == first.score and (first.dir / "results.json").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_a_killed_sweep_run_again_skips_finished_jobs_and_resumes_the_killed_training(tmp_path):
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    settings = ["data=digits", "model.latent_dim=8,16", "trainer.max_epochs=12", "reducer=pca", "reducer.n_components=2",
                "plots.enabled=false"]
    command = [sys.executable, "-m", "experiments", f"hydra.sweep.dir={sweep}", *settings, "-m"]
    process = subprocess.Popen(command, cwd=REPO, env=cli_env(cache), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    try:  # kill it once job 0 is done and job 1 has trained a few epochs
        while time.time() < deadline and process.poll() is None:
            partial = list(cache.glob("*.partial.ckpt"))
            if (sweep / "0" / "results.json").exists() and partial:
                try:
                    if torch.load(partial[0], weights_only=False)["epoch"] >= 3:
                        break
                except (OSError, RuntimeError, EOFError):
                    pass  # being replaced
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert (sweep / "0" / "results.json").exists() and not (sweep / "1" / "results.json").exists()
    with open(sweep / "summary.csv") as f:
        assert [r["Latent Dimension"] for r in csv.DictReader(f)] == ["8"], "the table of what finished, kept"
    killed_at = torch.load(next(cache.glob("*.partial.ckpt")), weights_only=False)["epoch"]
    finished_job = (sweep / "0" / "results.json").stat().st_mtime_ns

    again = run_cli(sweep, *settings, multirun=True, cache=cache)
    assert again.returncode == 0, again.stderr
    assert (sweep / "0" / "results.json").stat().st_mtime_ns == finished_job, "a finished job is not recomputed"
    assert "already finished with this config and code" in again.stdout
    assert "resuming training from" in again.stdout
    with open(sweep / "summary.csv") as f:
        assert sorted(r["Latent Dimension"] for r in csv.DictReader(f)) == ["16", "8"]

    resumed = json.loads((sweep / "1" / "results.json").read_text())
    history = torch.load(resumed["checkpoint"], weights_only=True)["history"]
    assert [row["epoch"] for row in history] == list(range(12)), "the curves run on across the interruption"
    assert killed_at >= 3 and not list(cache.glob("*.partial.ckpt")), "the partial checkpoint is gone once done"

    # W&B names an offline run's folder offline-run-<time>-<run id>: the killed job's run is resumed under its
    # id in the sweep's W&B folder, not duplicated
    run_id = stable_run_id(sweep / "1")
    runs = sorted((sweep / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 2 and Path(resumed["wandb_dir"]) == runs[-1]
    assert wandb_summary(runs[-1])["exit_code"] == 0
