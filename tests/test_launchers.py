"""The same sweep on Hydra's launcher and sweeper plugins, run for real."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml

import wandb_records
from conftest import run_cli
from test_cli_errors import assert_one_line_error

pytestmark = pytest.mark.slow

SMALL = ["data=digits", "trainer.max_epochs=1", "reducer=pca", "reducer.n_components=2", "plots.tsne=false"]


def summary_rows(sweep):
    return list(csv.DictReader(open(sweep / "summary.csv")))


def test_joblib_runs_jobs_in_parallel_processes_with_a_share_of_the_cores_each(tmp_path):
    sweep = tmp_path / "sweep"
    run = run_cli(sweep, *SMALL, "model.latent_dim=8,16", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                  multirun=True)
    assert run.returncode == 0, run.stderr
    assert len(summary_rows(sweep)) == 2
    logs = [(sweep / str(i) / "__main__.log").read_text() for i in (0, 1)]
    assert all("threads per job" in log for log in logs)
    # W&B runs stay apart although joblib reuses its worker processes
    ids = {wandb_records.run_info(d).run_id for d in sweep.glob("[01]/wandb/offline-run-*")}
    assert len(ids) == 2


def test_submitit_local_runs_a_real_two_job_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    run = run_cli(sweep, *SMALL, "model.latent_dim=8,16", "logger=none", "hydra/launcher=submitit_local",
                  "hydra.launcher.timeout_min=10", multirun=True)
    assert run.returncode == 0, run.stderr
    assert sorted(r["Latent Dimension"] for r in summary_rows(sweep)) == ["16", "8"]
    assert list(sweep.glob(".submitit/*/*_log.out")), "the jobs ran through submitit"


def test_optuna_search_lands_its_trials_in_the_summary(tmp_path):
    sweep = tmp_path / "sweep"
    run = run_cli(sweep, "+sweep=search", *SMALL, "hydra.sweeper.n_trials=3", "logger=none", multirun=True)
    assert run.returncode == 0, run.stderr
    rows = summary_rows(sweep)
    assert len(rows) == 3 and all(r["Public Score"] for r in rows)
    optimization = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = max(float(r["Public Score"]) for r in rows)
    assert optimization["best_value"] == pytest.approx(best, abs=1e-5), "Optuna saw each job's public score"


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], ["hydra.launcher.n_jobs=0"]),
        (["hydra/launcher=slurm_gpu"], ["hydra.launcher.partition"]),
    ],
    ids=["joblib_n_jobs", "slurm_partition"],
)
def test_bad_launcher_settings_give_one_line_before_any_job_runs(tmp_path, overrides, fragments):
    run = run_cli(tmp_path / "sweep", *SMALL, "model.latent_dim=8,16", "logger=none", *overrides, multirun=True)
    assert_one_line_error(run, *fragments)
    assert not list((tmp_path / "sweep").glob("*/results.json"))


def test_an_unknown_launcher_is_refused_by_hydra_with_the_choices(tmp_path):
    run = run_cli(tmp_path / "sweep", *SMALL, "hydra/launcher=ray", multirun=True)
    assert run.returncode != 0 and "hydra/launcher/ray" in run.stderr and "joblib" in run.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_ddp_without_a_gpu_says_so(tmp_path):
    run = run_cli(tmp_path / "run", *SMALL, "accelerator=ddp", "logger=none")
    assert_one_line_error(run, "accelerator=ddp", "no CUDA GPU")


def test_an_offline_run_says_how_to_upload_it_and_disabled_mode_records_nothing(tmp_path):
    run = run_cli(tmp_path / "offline", *SMALL)
    assert run.returncode == 0, run.stderr
    wandb_dir = run.results["wandb_dir"]
    assert f"wandb sync {wandb_dir}" in run.stdout
    disabled = run_cli(tmp_path / "disabled", *SMALL, "logger.mode=disabled")
    assert disabled.returncode == 0, disabled.stderr
    assert not list((tmp_path / "disabled").glob("wandb/*-run-*"))
    assert json.loads((tmp_path / "disabled" / "results.json").read_text())["acc"] > 0


DDP_ON_CPU = ["accelerator=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]


@pytest.mark.parametrize("model", ["autoencoder", "ista"])
def test_ddp_shards_the_data_and_only_rank_zero_scores_and_logs(tmp_path, model):
    # Lightning's DDP over two CPU processes (gloo): the same code path as over GPUs. Sparse coding's
    # warm starts index each process's shard by the images' places in the whole fit set.
    run = run_cli(tmp_path / "run", *SMALL, "trainer.max_epochs=2", f"model={model}", *DDP_ON_CPU)
    assert run.returncode == 0, run.stderr
    logs = {p.name: p.read_text() for p in run.dir.glob("*.log")}
    assert "rank 0/2 trains on 899 fit images" in logs["__main__.log"]
    assert "rank 1/2 trains on 898 fit images" in logs["train_ddp_process_1.log"]
    assert "results:" not in logs["train_ddp_process_1.log"], "rank 1 only trains"
    assert len(list(run.dir.glob("wandb/offline-run-*"))) == 1, "one W&B run, from rank 0"
    assert run.results["cache"] == "miss" and len(torch.load(run.results["checkpoint"], weights_only=True)["history"]) == 2


def test_ddp_in_a_multirun_is_refused_with_the_alternative(tmp_path):
    run = run_cli(tmp_path / "sweep", *SMALL, "model.latent_dim=8,16", "logger=none", *DDP_ON_CPU, multirun=True)
    assert_one_line_error(run, "accelerator=ddp", "slurm_gpu")
