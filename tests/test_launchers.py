"""The same sweep on Hydra's launcher plugins, run for real; DDP over two CPU processes; the checks that stop a
sweep or a DDP job before any work."""

from __future__ import annotations

import csv
import os

import pytest
import torch
from helpers import CONF, DDP_ON_CPU, assert_matches_one_process, compose_config, run_cli, run_job
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from experiments import jobs, pipeline
from experiments.accelerators import check_accelerator
from experiments.callbacks import PreflightChecks
from experiments.data import Digits
from experiments.errors import UserError
from experiments.launch import check_ddp, check_launcher

# The launchers are what these tests prove: the jobs draw no figures (test_cli's runs do)
SMALL = ["data=digits", "trainer.max_epochs=1", "reducer=pca", "reducer.n_components=2", "plots.enabled=false"]


def summary_rows(sweep):
    with open(sweep / "summary.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_joblib_runs_jobs_in_parallel_processes_with_a_share_of_the_cores_each(tmp_path):
    sweep = tmp_path / "sweep"
    run = run_cli(sweep, *SMALL, "model.latent_dim=8,16", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                  "logger=none", multirun=True)
    assert run.returncode == 0, run.stderr
    assert len(summary_rows(sweep)) == 2
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert all(f"threads per job: {share}" in (sweep / str(i) / "experiments.log").read_text() for i in (0, 1))


@pytest.mark.slow
def test_submitit_local_runs_a_real_two_job_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    run = run_cli(sweep, *SMALL, "model.latent_dim=8,16", "logger=none", "hydra/launcher=submitit_local",
                  "hydra.launcher.timeout_min=10", multirun=True)
    assert run.returncode == 0, run.stderr
    assert sorted(r["Latent Dimension"] for r in summary_rows(sweep)) == ["16", "8"]
    assert list(sweep.glob(".submitit/*/*_log.out")), "the jobs ran through submitit"


@pytest.mark.parametrize(
    "overrides, fragment",
    [(["hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0"),
     (["hydra/launcher=slurm_gpu"], "hydra.launcher.partition")],
    ids=["joblib_n_jobs", "slurm_partition"],
)
def test_bad_launcher_settings_stop_a_sweep_with_one_line_before_any_job(overrides, fragment, capsys):
    compose_config(*overrides, hydra_context=True)
    with pytest.raises(SystemExit) as stopped:
        PreflightChecks().on_multirun_start(config=OmegaConf.create({"hydra": HydraConfig.get()}))
    assert stopped.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and fragment in line


def test_a_ray_cluster_address_nothing_answers_at_is_one_line_not_rays_silent_wait(capsys):
    import socket

    import hydra_plugins.hydra_ray_launcher  # noqa: F401 - make test installs the `ray` extra: a broken one fails here
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        answering = listening.getsockname()[1]
        compose_config("hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address=127.0.0.1:{answering}",
                       hydra_context=True)
        check_launcher(HydraConfig.get())  # something answers: left to Ray
    compose_config("hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address=127.0.0.1:{answering}",
                   hydra_context=True)  # the same port, closed now
    with pytest.raises(SystemExit) as stopped:
        PreflightChecks().on_multirun_start(config=OmegaConf.create({"hydra": HydraConfig.get()}))
    assert stopped.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: hydra.launcher.ray.init.address=127.0.0.1:{answering}: no Ray cluster answers")
    assert f"ray start --head --port={answering}" in line
    compose_config("hydra/launcher=ray_cluster", hydra_context=True)
    check_launcher(HydraConfig.get())  # `auto`: Ray's own search, which fails fast and says so


def sweep_config(tmp_path, *swept: str, fixed: tuple[str, ...] = ()) -> DictConfig:
    """The config a multirun's callback gets: composed from the fixed settings, the swept ones left on its
    command line (hydra.overrides.task), as `python -m experiments ... -m` leaves them. Call it within
    initialize_config_dir: the sweep's jobs are composed by the running Hydra's config loader."""
    fixed = ("data=digits", f"cache_dir={tmp_path / 'cache'}", *fixed)
    cfg = compose("config", overrides=[*fixed, f"hydra.sweep.dir={tmp_path / 'multirun'}"], return_hydra_config=True)
    cfg.hydra.overrides.task.extend([*fixed, *swept])
    return cfg


@pytest.mark.parametrize(
    "swept, fragment",
    [(["seed=0,abc"], r"job 2 of 2 \(data=digits cache_dir=.* seed=abc\): seed='abc': use a whole number"),
     (["model.latent_dim=8,0", "seed=0,1"],
      r"job 3 of 4 \(.*model.latent_dim=0 seed=0\): model.latent_dim must be at least 1"),
     (["reducer=pca,nope"], r"job 2 of 2 \(.*reducer=nope\): .*'reducer/nope'"),
     (["task=cluster,classify"], r"job 2 of 2 \(.*task=classify\): task=classify would score the classifier on its own")],
    ids=["seed", "constructor", "missing_option", "other_kind"],
)
def test_every_job_of_a_sweep_is_checked_before_the_first_starts(tmp_path, swept, fragment):
    with initialize_config_dir(str(CONF), version_base="1.3"), pytest.raises(UserError, match=fragment):
        pipeline.check_sweep(sweep_config(tmp_path, *swept))


def test_a_sweep_that_checks_loads_its_data_once_for_every_seed_and_lets_optuna_pick_its_own(tmp_path, monkeypatch):
    loads = []
    monkeypatch.setattr(Digits, "load_arrays", lambda self, load=Digits.load_arrays: loads.append(1) or load(self))
    with initialize_config_dir(str(CONF), version_base="1.3"):
        assert pipeline.check_sweep(sweep_config(tmp_path, "seed=0,1,2", "model.latent_dim=4,8")) == 6
        assert len(loads) == 1, "the data's seed orders its batches: one load serves every job"
        optuna = sweep_config(tmp_path, fixed=("+sweep=search",))
        assert pipeline.check_sweep(optuna) is None, "Optuna picks its jobs as it goes"


def test_a_sweep_with_a_bad_job_stops_with_one_line_before_any_job(tmp_path, capsys, monkeypatch):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        with pytest.raises(SystemExit) as stopped:
            PreflightChecks().on_multirun_start(config=sweep_config(tmp_path, "seed=0,-1"))
        assert stopped.value.code == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith("error: job 2 of 2 (") and "seed=-1" in line
        assert not (tmp_path / "multirun").exists()
        monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # the traceback instead, as for a single job
        with pytest.raises(UserError, match="job 2 of 2"):
            PreflightChecks().on_multirun_start(config=sweep_config(tmp_path, "seed=0,-1"))
        PreflightChecks(check_jobs=False).on_multirun_start(config=sweep_config(tmp_path, "seed=0,-1"))  # on their own
        assert (tmp_path / "multirun").exists(), "the sweep starts: each job checks itself where it runs"


@pytest.mark.slow
def test_ddp_gives_each_rank_its_shard_only_rank_zero_scores_and_logs_and_matches_one_process(tmp_path):
    # Lightning's DDP over two CPU processes (gloo), started by Lightning itself (no SLURM): the same code path as
    # over GPUs. Sparse coding, whose warm starts index each rank's shard by the images' places in the whole fit
    # set. (Shards padded to equal batch counts, where the images do not divide: test_data.py.)
    settings = [*SMALL, "trainer.max_epochs=2", "model=sparse_coding", "data.fit_limit=512"]
    run = run_cli(tmp_path / "run", *settings, "data.batch_size=128", *DDP_ON_CPU)
    assert run.returncode == 0, run.stderr
    logs = {p.name: p.read_text() for p in run.dir.glob("*.log")}
    assert "rank 0/2 trains on 256 fit images in 2 batches" in logs["experiments.log"]
    assert "rank 1/2 trains on 256 fit images in 2 batches" in logs["train_ddp_process_1.log"]
    assert "results:" not in logs["train_ddp_process_1.log"], "rank 1 only trains"
    assert len(list(run.dir.glob("wandb/offline-run-*"))) == 1, "one W&B run, from rank 0"
    assert run.results["cache"] == "miss" and len(torch.load(run.results["checkpoint"], weights_only=True)["history"]) == 2
    assert_matches_one_process(run.dir, run_job(tmp_path, *settings, "data.batch_size=256", name="one"))


def test_ddp_in_a_sweep_only_where_srun_starts_the_ranks_and_never_for_kinds_that_train_no_encoder():
    cluster = jobs.load("cluster")
    with pytest.raises(UserError, match="task=classify: use accelerator=gpu"):
        check_ddp(jobs.load("classify"), multirun=False)
    check_ddp(cluster, multirun=False)

    def sweep_on(launcher: str, *overrides: str):
        cfg = compose_config("accelerator=ddp", f"hydra/launcher={launcher}", "hydra.launcher.partition=gpu",
                             *overrides, hydra_context=True)
        check_ddp(cluster, True, HydraConfig.get().launcher, cfg.trainer)

    with pytest.raises(UserError, match="needs a SLURM launcher, hydra/launcher=slurm_gpu or slurm_cpu"):
        compose_config("accelerator=ddp", "hydra/launcher=joblib", hydra_context=True)
        check_ddp(cluster, True, HydraConfig.get().launcher, compose_config("accelerator=ddp").trainer)
    with pytest.raises(UserError, match="tasks_per_node=1 must equal trainer.devices=-1"):
        sweep_on("slurm_gpu")
    with pytest.raises(UserError, match="nodes=2 must equal trainer.num_nodes=1"):
        sweep_on("slurm_gpu", "hydra.launcher.tasks_per_node=4", "trainer.devices=4", "hydra.launcher.nodes=2")
    sweep_on("slurm_gpu", "hydra.launcher.tasks_per_node=4", "hydra.launcher.gpus_per_node=4", "trainer.devices=4")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU, so accelerator=gpu is valid here")
@pytest.mark.parametrize("accelerator", ["gpu", "ddp"])
def test_asking_for_a_gpu_that_is_not_there_is_refused(accelerator):
    with pytest.raises(UserError, match=f"accelerator={accelerator} but no CUDA GPU is visible"):
        check_accelerator(compose_config(f"accelerator={accelerator}").trainer)


def test_the_thread_budget_comes_from_the_cpus_this_process_may_use(monkeypatch):
    from experiments.launch import threads_per_job

    joblib = OmegaConf.create({"launcher": {"_target_": "hydra_plugins.hydra_joblib_launcher.JoblibLauncher",
                                            "n_jobs": 2}})
    basic = OmegaConf.create({"launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the machine's count must not matter
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})  # e.g. a SLURM allocation
    assert threads_per_job(basic) == 6
    assert threads_per_job(joblib) == 3
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")  # a cluster that gives a job 4 cores without pinning it to them
    assert threads_per_job(basic) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # set by the user or the scheduler: a cap
    assert threads_per_job(basic) == 2


def test_estimators_with_their_own_pools_get_the_jobs_budget(monkeypatch):
    from hydra.utils import instantiate

    from experiments.jobs.cluster.check import within_thread_budget

    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    tsne = within_thread_budget(instantiate(compose_config("reducer=tsne").reducer))
    assert tsne.get_params()["n_jobs"] == 3
    chosen = within_thread_budget(instantiate(compose_config("reducer=tsne", "reducer.n_jobs=1").reducer))
    assert chosen.get_params()["n_jobs"] == 1  # a count the user chose is kept


@pytest.fixture
def ray_cluster():
    """A real local Ray cluster (`ray start --head`) with token authentication, stopped afterwards; yields its
    address and the environment a client needs to join it."""
    import secrets
    import shlex
    import socket
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import hydra_plugins.hydra_ray_launcher  # noqa: F401 - the `ray` extra, which make test installs: fails if broken
    ray = Path(sys.executable).parent / "ray"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit in 107 characters
    # Its own token, as `ray start` sets up a new cluster by default: a ~/.ray/auth_token left by any earlier
    # local `ray.init()` would otherwise turn authentication on for the cluster only, not for a client given its
    # address, and the sweep would fail to connect
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **auth}
    subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    f"--temp-dir={temp}", "--disable-usage-stats"], check=True, capture_output=True, env=env, timeout=120)
    try:
        yield f"127.0.0.1:{port}", auth
    finally:
        # `ray stop` then waits 6 s for the processes to end, a test worker idle all along: it waits on its own
        stop = f"{shlex.quote(str(ray))} stop --force; rm -rf {shlex.quote(temp)}"
        subprocess.Popen(["sh", "-c", stop], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)


@pytest.mark.slow
def test_ray_runs_a_sweeps_jobs_on_a_real_local_cluster(tmp_path, ray_cluster):
    address, auth = ray_cluster
    sweep = tmp_path / "sweep"
    run = run_cli(sweep, *SMALL, "model.latent_dim=8,16", "hydra/launcher=ray_cluster", "logger=none",
                  f"hydra.launcher.ray.init.address={address}", multirun=True, env=auth)
    assert run.returncode == 0, run.stderr
    assert "_run_job pid=" in run.stdout + run.stderr, "the jobs ran in Ray's workers"
    assert sorted(r["Latent Dimension"] for r in summary_rows(sweep)) == ["16", "8"]
    assert all("threads per job: 1" in (sweep / str(i) / "experiments.log").read_text() for i in (0, 1)), \
        "Ray's num_cpus=1 per job is the job's thread budget"
