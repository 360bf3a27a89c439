"""Sweeps on a running SLURM cluster: the one-node cluster of scripts/local_slurm.sh (`make slurm-up`), started here
if it is not up and stopped at the end of the session if the tests started it (conftest.py). Every job through
sbatch, srun and SLURM's accounting, as on a real cluster. Skipped, saying why, only where SLURM is not installed
(make test installs it where apt-get can) or cannot be started (not root, or a SLURM of the machine's own)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from helpers import DDP_ON_CPU, REPO, assert_matches_one_process, cli_env, compose_config, run_cli, run_job
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from experiments.callbacks import PreflightChecks
from experiments.errors import UserError
from experiments.launch import check_no_jobs_still_out
from experiments.resume import stable_run_id

SCRIPT = REPO / "scripts" / "local_slurm.sh"
STATE = REPO / "outputs" / "slurm"  # the script's folder; conftest.py stops the cluster if this marker is in it
STARTED_BY_TESTS = STATE / "started-by-tests"

# Small digits jobs on the cluster's CPUs, each in its own folder of the sweep; no model cache, so a job's partial
# checkpoint is in its folder (training-<key>.partial.ckpt) and a test can watch its epochs.
ON_SLURM = ["data=digits", "data.fit_limit=600", "reducer=pca", "reducer.n_components=2", "plots.enabled=false",
            "cache=false", "hydra/launcher=slurm_cpu", "hydra.launcher.timeout_min=10"]


@pytest.fixture(scope="module")
def slurm() -> None:
    """The local cluster, up (the workers of -n auto share it: the first starts it)."""
    if not (shutil.which("slurmctld") or Path("/usr/sbin/slurmctld").exists()):
        pytest.skip("SLURM is not installed here (make test installs Debian's slurm-wlm where apt-get can, as root "
                    "or with sudo)")
    if os.geteuid() != 0:
        pytest.skip("starting a local SLURM cluster's daemons needs root")
    if Path("/etc/slurm/slurm.conf").exists() and not Path("/etc/slurm/slurm.conf").is_symlink():
        pytest.skip("this machine has a SLURM configuration of its own: the tests submit nothing to that cluster")
    STATE.parent.mkdir(exist_ok=True)
    with FileLock(STATE.parent / ".slurm.lock"):
        if subprocess.run([SCRIPT, "status"], capture_output=True, check=False).returncode != 0:
            up = subprocess.run([SCRIPT, "up"], capture_output=True, text=True, timeout=300, check=False)
            assert up.returncode == 0, up.stdout + up.stderr
            STARTED_BY_TESTS.touch()


def sacct_states(job_id: str) -> dict[str, str]:
    """{array task or job id: its state} of a SLURM job, from the accounting database (as submitit polls it)."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "JobID,State"], capture_output=True,
                         text=True, check=True).stdout
    return dict(line.split("|")[:2] for line in out.splitlines() if line)


def settled_states(job_id: str, timeout: float = 120.0) -> dict[str, str]:
    """sacct_states once no task is queued or running: SLURM's accounting lags the controller by a moment, and a
    sweep command that stopped at a failed job leaves the others running (docs/launchers.md)."""
    deadline = time.time() + timeout
    while {"PENDING", "RUNNING", "COMPLETING"} & set((states := sacct_states(job_id)).values()):
        assert time.time() < deadline, f"SLURM job {job_id} still out: {states}"
        time.sleep(0.2)
    return states


def array_of(sweep: Path, after: set[str] = frozenset()) -> str:
    """The SLURM array job id of a sweep's (latest) submission: submitit's folder .submitit/<id>/."""
    ids = {p.name for p in (sweep / ".submitit").iterdir() if p.name.isdigit()} - set(after)
    (job_id,) = ids
    return job_id


def partial_epoch(job_dir: Path) -> int:
    """The last epoch a job's partial checkpoint holds (-1: none yet)."""
    for path in job_dir.glob("training-*.partial.ckpt"):
        try:
            return int(torch.load(path, weights_only=False)["epoch"])
        except (OSError, RuntimeError, EOFError, KeyError):
            return -1  # being written
    return -1


def summary_rows(sweep: Path) -> list[dict[str, str]]:
    with open(sweep / "summary.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_sweep_on_slurm_cancelled_then_run_again_skips_the_finished_jobs_and_resumes_the_cancelled_one(
        slurm, tmp_path):
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    settings = [*ON_SLURM, "trainer.max_epochs=30,1,2"]  # three jobs; the first trains long enough to cancel
    command = [sys.executable, "-m", "experiments", f"hydra.sweep.dir={sweep}", *settings, "-m"]
    first = subprocess.Popen(command, cwd=REPO, env=cli_env(cache), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 180
    try:  # once the first job has trained three epochs: scancel it, as a user (or a preemption) would
        while partial_epoch(sweep / "0") < 2:
            assert first.poll() is None and time.time() < deadline, "the first job never trained"
            time.sleep(0.05)
        array = array_of(sweep)
        subprocess.run(["scancel", f"{array}_0"], check=True)
        assert first.wait(timeout=120) != 0, "the sweep reports the cancelled job"
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    states = settled_states(array)
    assert states[f"{array}_1"] == states[f"{array}_2"] == "COMPLETED" and states[f"{array}_0"].startswith("CANCELLED")
    assert not (sweep / "0" / "results.json").exists() and partial_epoch(sweep / "0") >= 2
    finished = {k: (sweep / str(k) / "results.json").stat().st_mtime_ns for k in (1, 2)}

    again = run_cli(sweep, *settings, multirun=True, cache=cache)  # the same command
    assert again.returncode == 0, again.stderr
    second = array_of(sweep, after={array})
    assert list(settled_states(second).values()) == ["COMPLETED"] * 3
    assert {k: (sweep / str(k) / "results.json").stat().st_mtime_ns for k in (1, 2)} == finished, "not recomputed"
    logs = {k: (sweep / str(k) / "experiments.log").read_text() for k in (0, 1, 2)}
    assert all("already finished with this config and code" in logs[k] for k in (1, 2))
    assert "resuming training from" in logs[0] and partial_epoch(sweep / "0") == -1, "resumed, then done"
    assert "threads per job: 1" in logs[0], "a job's threads are the cores SLURM gave it (cpus_per_task)"
    results = [json.loads((sweep / str(k) / "results.json").read_text()) for k in (0, 1, 2)]
    histories = [torch.load(r["checkpoint"], weights_only=True)["history"] for r in results]
    assert [len(h) for h in histories] == [30, 1, 2], "each job in its own folder; the first's curves run on"
    assert sorted(row["job"] for row in summary_rows(sweep)) == ["0", "1", "2"]

    # The sweep's W&B workspace: a run per job (the cancelled one resumed under its id), and the summary run
    runs = list((sweep / "wandb").glob("offline-run-*"))
    assert sorted(len([r for r in runs if r.name.endswith(stable_run_id(sweep / str(k)))]) for k in (0, 1, 2)) == [1, 1, 2]
    assert len(runs) >= 5, "and the sweep's summary run"


@pytest.mark.slow
def test_ddp_on_slurm_runs_a_rank_per_task_and_matches_a_single_process_run(slurm, tmp_path):
    # Two tasks on the node, srun starting each: Lightning's SLURM environment takes the ranks from SLURM
    sweep = tmp_path / "sweep"
    ddp = [*ON_SLURM, *DDP_ON_CPU, "model=sparse_coding", "trainer.max_epochs=2", "data.fit_limit=512"]
    run = run_cli(sweep, *ddp, "data.batch_size=128", "hydra.launcher.tasks_per_node=2", multirun=True)
    assert run.returncode == 0, run.stderr
    array = array_of(sweep)
    assert settled_states(array) == {array: "COMPLETED"}
    steps = subprocess.run(["sacct", "-n", "-P", "-j", array, "-o", "JobID,NTasks"], capture_output=True, text=True,
                           check=True).stdout
    assert f"{array}.0|2" in steps.split(), "one job step of two tasks"
    log = (sweep / "0" / "experiments.log").read_text()
    assert "rank 0/2 trains on 256 fit images in 2 batches" in log and "rank 1/2 trains on 256" in log
    assert list(sweep.glob("*/results.json")) == [sweep / "0" / "results.json"], "one job folder, one results.json"
    assert len([r for r in (sweep / "wandb").glob(f"offline-run-*-{stable_run_id(sweep / '0')}")]) == 1, "one W&B run"
    assert "srun` command is available" not in run.stderr + (sweep / ".submitit").joinpath(
        array, f"{array}_0_log.err").read_text(), "inside SLURM, no hint to use srun"

    one_process = [o for o in ddp if not o.startswith(("hydra", "accelerator", "trainer.accelerator", "trainer.devices"))]
    assert_matches_one_process(sweep / "0", run_job(tmp_path, *one_process, "data.batch_size=256", name="one"))


def stopped_before_submitting(capsys: pytest.CaptureFixture, *overrides: str) -> str:
    """The one line a slurm_cpu sweep's checks print, exit status 2, before anything is submitted."""
    compose_config("hydra/launcher=slurm_cpu", *overrides, hydra_context=True)
    with pytest.raises(SystemExit) as stopped:
        PreflightChecks().on_multirun_start(config=OmegaConf.create({"hydra": HydraConfig.get()}))
    assert stopped.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    return line


@pytest.mark.parametrize("overrides, fragment", [
    (["hydra.launcher.partition=nope"], "hydra.launcher.partition=nope: this cluster has no partition nope (sinfo lists"),
    (["hydra.launcher.tasks_per_node=2"], "hydra.launcher.tasks_per_node=2 x nodes=1 would run each job 2 times"),
], ids=["bad_partition", "tasks_without_ddp"])
def test_bad_slurm_settings_stop_a_sweep_in_one_line_before_anything_is_submitted(slurm, overrides, fragment, capsys):
    assert stopped_before_submitting(capsys, *overrides).startswith(f"error: {fragment}")


def test_the_slurm_launcher_without_slurm_says_so_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no sinfo
    line = stopped_before_submitting(capsys)
    assert "submits jobs with `sbatch`, which is not on this machine" in line and "make slurm-up" in line


@pytest.mark.parametrize("sinfo, fragment", [
    ("echo 'slurm_load_partitions: Unable to contact slurm controller (connect failure)' >&2; exit 1",
     "SLURM does not answer (`sinfo`: slurm_load_partitions: Unable to contact slurm controller (connect failure))"),
    ("echo cpu; echo gpu", "this cluster has no default partition: name one of cpu, gpu"),
], ids=["controller_down", "no_default_partition"])
def test_a_cluster_that_cannot_take_the_sweep_says_why_in_one_line(sinfo, fragment, monkeypatch, capsys, tmp_path):
    # SLURM's client commands as a login node whose controller is down, or whose partitions have no default, has them
    for name, body in (("sbatch", "exit 0"), ("sinfo", sinfo)):
        (tmp_path / name).write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert fragment in stopped_before_submitting(capsys)


def test_a_sweep_whose_last_jobs_still_run_is_refused_before_a_second_copy_is_submitted(slurm, capsys, tmp_path):
    # A job of the sweep's last submission still on the cluster (after Ctrl-C, or a failed job that stopped the
    # command): running the command again would start a second copy writing the same folder. A job of the same
    # user's elsewhere is no reason to refuse.
    submitted = tmp_path / "sweep" / ".submitit"  # where submitit sends a sweep's jobs' output
    submitted.mkdir(parents=True)
    other, job = (subprocess.run(["sbatch", "--parsable", "--wrap", "sleep 60", "-o", out], capture_output=True,
                                 text=True, check=True).stdout.strip() for out in (os.devnull, f"{submitted}/%j.out"))
    try:
        line = stopped_before_submitting(capsys, f"hydra.sweep.dir={submitted.parent}")
        subprocess.run(["scancel", job], check=True)
        settled_states(job)
        check_no_jobs_still_out(submitted.parent)  # the other job alone
    finally:
        subprocess.run(["scancel", other, job], check=False)
    listed = line.partition("this sweep's jobs from its last submission are still on SLURM (")[2].partition(")")[0]
    assert listed in (f"{job} PENDING", f"{job} RUNNING"), "the sweep's job, not the other"
    assert f"or `scancel {job}`, then run the same command again" in line


def test_only_a_folder_something_was_submitted_from_asks_squeue_and_a_silent_squeue_is_one_line(monkeypatch, tmp_path):
    (tmp_path / "squeue").write_text("#!/bin/sh\necho 'squeue: error: Unable to contact slurm controller' >&2\nexit 1\n")
    (tmp_path / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    check_no_jobs_still_out(tmp_path / "fresh")  # a new sweep: nothing of it can be out, and squeue is not asked
    (tmp_path / "sweep" / ".submitit").mkdir(parents=True)
    with pytest.raises(UserError, match=r"SLURM does not answer \(`squeue`: .*\): is the cluster up\?"):
        check_no_jobs_still_out(tmp_path / "sweep")
