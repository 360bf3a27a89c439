"""Interrupted sweeps: kill one for real, run the same command again, and nothing finished is recomputed."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import wandb_records
from conftest import REPO, run_cli
from test_cli_errors import assert_one_line_error

pytestmark = pytest.mark.slow

SWEEP = ["data=digits", "model.latent_dim=8,16,24", "trainer.max_epochs=60", "reducer=pca", "reducer.n_components=2",
         "plots.tsne=false"]


def test_a_killed_sweep_run_again_skips_finished_jobs_and_resumes_the_killed_training(tmp_path):
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "EXPERIMENTS_CACHE_DIR": str(cache)}
    command = [sys.executable, "-m", "experiments", f"hydra.sweep.dir={sweep}", *SWEEP, "-m"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 300
    try:  # kill it once job 0 is done and job 1 has trained a few epochs
        while time.time() < deadline and process.poll() is None:
            partial = list(cache.glob("*.partial.ckpt"))
            if (sweep / "0" / "results.json").exists() and partial:
                if torch.load(partial[0], weights_only=False)["epoch"] >= 3:
                    break
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert (sweep / "0" / "results.json").exists() and not (sweep / "1" / "results.json").exists()
    killed_at = torch.load(next(cache.glob("*.partial.ckpt")), weights_only=False)["epoch"]
    finished_job = (sweep / "0" / "results.json").stat().st_mtime_ns

    again = run_cli(sweep, *SWEEP, multirun=True, cache=cache)
    assert again.returncode == 0, again.stderr
    assert (sweep / "0" / "results.json").stat().st_mtime_ns == finished_job, "a finished job is not recomputed"
    assert "already finished, skipped" in again.stdout
    assert "resuming training from" in again.stdout
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert sorted(r["Latent Dimension"] for r in rows) == ["16", "24", "8"]

    resumed = json.loads((sweep / "1" / "results.json").read_text())
    history = torch.load(resumed["checkpoint"], weights_only=True)["history"]
    assert [row["epoch"] for row in history] == list(range(60)), "the curves run on across the interruption"
    assert killed_at >= 3 and not list(cache.glob("*.partial.ckpt")), "the partial checkpoint is gone once done"

    # W&B names an offline run's folder offline-run-<time>-<run id>; the killed attempt never flushed a record
    runs = sorted((sweep / "1" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({d.name.rsplit("-", 1)[1] for d in runs}) == 1, (
        "the killed job's W&B run is resumed under its id, not duplicated"
    )
    assert wandb_records.run_info(runs[-1]).run_id == runs[0].name.rsplit("-", 1)[1]
    assert wandb_records.exit_code(runs[-1]) == 0


def test_resuming_over_a_sweep_folder_of_another_config_is_refused(tmp_path):
    settings = ["data=digits", "trainer.max_epochs=1", "reducer=pca", "reducer.n_components=2", "plots.tsne=false",
                "logger=none"]
    first = run_cli(tmp_path / "sweep", *settings, "model.latent_dim=8", multirun=True)
    assert first.returncode == 0, first.stderr
    other = run_cli(tmp_path / "sweep", *settings, "model.latent_dim=12", multirun=True)
    assert_one_line_error(other, "resume:", "different config", "hydra.sweep.dir")
    forced = run_cli(tmp_path / "sweep", *settings, "model.latent_dim=12", "resume=false", multirun=True)
    assert forced.returncode == 0, forced.stderr
    assert json.loads((tmp_path / "sweep" / "0" / "results.json").read_text())["latent_dim"] == 12


def test_the_same_sweep_command_finds_the_same_folder():
    from experiments.resume import sweep_name

    same = sweep_name(["+sweep=latent_dims", "data=digits", "-m"])
    assert same == sweep_name(["+sweep=latent_dims", "data=digits", "--multirun", "hydra/launcher=joblib", "resume=false"])
    assert same != sweep_name(["+sweep=latent_dims", "data=fashion_mnist", "-m"])
    assert same.startswith("+sweep=latent_dims,data=digits-")
