"""Launcher settings checked before a sweep starts, the sweep's plan (how many jobs, which settings vary),
and the thread budget of each parallel job."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from experiments.errors import UserError
from experiments.files import write_json

PLAN = "sweep.json"  # in the sweep folder: the plan, for the jobs to say "job k of N" and name their runs


def check_launcher(hydra_cfg: DictConfig, trainer: Any = None) -> None:
    """One-line errors for launcher settings that would fail (or hang) only once jobs are out."""
    launcher = hydra_cfg.launcher
    target = str(launcher.get("_target_", ""))
    if "Joblib" in target:
        n_jobs = launcher.get("n_jobs")
        if n_jobs is None or n_jobs == 0 or n_jobs < -1:
            raise UserError(f"hydra.launcher.n_jobs={n_jobs}: use a number of parallel jobs >= 1 (or -1 for one per core)")
    if "SlurmLauncher" in target:
        check_slurm(launcher, trainer)
        check_no_jobs_still_out(Path(str(hydra_cfg.sweep.dir)))
    if target.endswith(".RayLauncher"):
        check_ray_address(((launcher.get("ray") or {}).get("init") or {}).get("address"))


def check_slurm(launcher: Any, trainer: Any = None) -> None:
    """The SLURM launcher's settings against the cluster itself (`sinfo`), before anything is submitted: a job that
    names a partition the cluster lacks would be refused only at submission, after the sweep had started."""
    partition, processes = launcher.get("partition"), launcher.get("tasks_per_node", 1) * launcher.get("nodes", 1)
    if not partition and launcher.get("gpus_per_node"):
        raise UserError("hydra.launcher.partition is not set: name your cluster's SLURM partition for GPU jobs "
                        "(hydra.launcher.partition=gpu; `sinfo -s` lists them)")
    if processes > 1 and (trainer or {}).get("strategy") != "ddp":
        raise UserError(f"hydra.launcher.tasks_per_node={launcher.get('tasks_per_node')} x nodes="
                        f"{launcher.get('nodes', 1)} would run each job {processes} times over: only accelerator=ddp "
                        f"uses several processes (trainer.devices={processes})")
    if shutil.which("sbatch") is None:
        raise UserError("the SLURM launcher submits jobs with `sbatch`, which is not on this machine: run the sweep "
                        "on your cluster's login node, or start a local one-node cluster with `make slurm-up`")
    partitions = slurm_partitions()
    if partition:
        missing = [p for p in str(partition).split(",") if p not in partitions]
        if missing:
            raise UserError(f"hydra.launcher.partition={partition}: this cluster has no partition {missing[0]} "
                            f"(sinfo lists {', '.join(partitions) or 'none'})")
    elif not any(partitions.values()):
        raise UserError(f"hydra.launcher.partition is not set and this cluster has no default partition: name one of "
                        f"{', '.join(partitions) or 'none'}")


def check_no_jobs_still_out(sweep_dir: Path, timeout: float = 20.0) -> None:
    """Refuse a sweep whose earlier submission still has jobs queued or running: the same command run again (after a
    job failed, or after Ctrl-C, which stops the sweep command but not its SLURM jobs) would start a second copy of
    each, both writing one folder. submitit sends each job's output to <sweep>/.submitit/, which tells this sweep's
    jobs from any other in `squeue`."""
    if not (sweep_dir / ".submitit").is_dir():  # nothing submitted from this folder yet
        return
    folders = tuple({f"{path}/.submitit/" for path in (sweep_dir.absolute(), sweep_dir.resolve())})
    try:  # fixed-width columns: a path may hold spaces
        listed = subprocess.run(["squeue", "--me", "-h", "-O", "JobArrayID:40,ArrayJobID:20,State:20,STDOUT:4096"],
                                capture_output=True, text=True, timeout=timeout, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise UserError(f"SLURM does not answer (`squeue`: {e}): is the cluster up?") from None
    out = [(line[:40].strip(), line[40:60].strip(), line[60:80].strip()) for line in listed.splitlines()
           if line[80:].strip().startswith(folders)]
    if out:
        jobs = ", ".join(f"{job} {state}" for job, _, state in out[:4]) + (", ..." if len(out) > 4 else "")
        arrays = " ".join(sorted({array for _, array, _ in out}))
        raise UserError(f"this sweep's jobs from its last submission are still on SLURM ({jobs}): wait until "
                        f"`squeue --me` no longer lists them, or `scancel {arrays}`, then run the same command again "
                        f"(a second copy of a job would write the same folder)")


def slurm_partitions(timeout: float = 20.0) -> dict[str, bool]:
    """This cluster's partitions, by `sinfo`: {name: whether it is the default}."""
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"SLURM does not answer (`sinfo`: {e}): is the cluster up? (`make slurm-up` for the local "
                        f"one)") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise UserError(f"SLURM does not answer (`sinfo`: {reason}): is the cluster up? (`make slurm-up` for the "
                        f"local one)")
    names = done.stdout.split()
    return {name.rstrip("*"): name.endswith("*") for name in names}


def check_ray_address(address: Any, timeout: float = 5.0) -> None:
    """A Ray cluster named by HOST:PORT must answer there: `ray.init` waits for one silently, for good. `auto`,
    no address (a new local Ray) and Ray Client's `ray://` are left to Ray, which says what it finds."""
    if not isinstance(address, str) or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise UserError(f"hydra.launcher.ray.init.address={address}: no Ray cluster answers there "
                        f"({e.strerror or e}); start one with `ray start --head --port={port}`, or fix the address") from None


def sweep_plan(hydra_cfg: DictConfig) -> dict[str, Any]:
    """{"jobs": N (None when the sweeper does not say), "swept": the settings that vary between jobs}.

    For Hydra's basic sweeper, its own parser and splitter applied to the sweep's parameters and command
    line (globs expanded by the config loader); for Optuna, its trial count and search space.
    """
    sweeper = hydra_cfg.sweeper
    basic = basic_sweep(hydra_cfg)
    if basic is not None:
        overrides, job_overrides = basic
        return {"jobs": len(job_overrides),
                "swept": list(dict.fromkeys(o.key_or_group for o in overrides if o.is_sweep_override()))}  # once each
        # (a key swept by the sweep config and again on the command line: the command line's values win)
    params = {str(k): str(v) for k, v in (sweeper.get("params") or {}).items()}
    return {"jobs": sweeper.get("n_trials"), "swept": [key.lstrip("+~") for key in params]}


def sweep_jobs(hydra_cfg: DictConfig) -> list[list[str]] | None:
    """Each job's overrides, in the order Hydra's basic sweeper launches them; None for a sweeper that picks
    its jobs as it goes (Optuna)."""
    basic = basic_sweep(hydra_cfg)
    return None if basic is None else basic[1]


def basic_sweep(hydra_cfg: DictConfig) -> tuple[list[Any], list[list[str]]] | None:
    """(the parsed overrides, each job's overrides) of a basic sweeper's sweep, by its own parser and splitter."""
    sweeper = hydra_cfg.sweeper
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = {str(k): str(v) for k, v in (sweeper.get("params") or {}).items()}
    loader = GlobalHydra.instance().config_loader() if GlobalHydra.instance().is_initialized() else None
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(
        [f"{k}={v}" for k, v in params.items()] + list(hydra_cfg.overrides.task))
    return overrides, [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def write_sweep_plan(sweep_dir: Path, plan: dict[str, Any]) -> None:
    write_json(sweep_dir / PLAN, plan)


def read_sweep_plan(sweep_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((sweep_dir / PLAN).read_text())
    except (OSError, ValueError):  # a launcher that ran the job without the sweep's callback
        return {"jobs": None, "swept": []}


def parallel_jobs(hydra_cfg: DictConfig) -> int:
    """How many jobs of this sweep run at once on this machine (1 unless the joblib launcher runs them)."""
    launcher = hydra_cfg.get("launcher") or {}
    if "Joblib" not in str(launcher.get("_target_", "")):
        return 1
    n_jobs = launcher.get("n_jobs", -1)
    return available_cpus() if n_jobs == -1 else max(1, int(n_jobs))


def threads_per_job(hydra_cfg: DictConfig) -> int:
    """The rule: the CPUs this process may use shared evenly between the jobs that run at once, at least one
    each, and no more than OMP_NUM_THREADS or SLURM's cores per task where the user or the scheduler set them
    (a cluster that does not pin its jobs to their cores still says how many each was given)."""
    share = max(1, available_cpus() // parallel_jobs(hydra_cfg))
    caps = [int(cap) for name in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK")
            if (cap := os.environ.get(name, "")).isdigit() and int(cap) > 0]
    return min([share, *caps])


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity: cgroups, SLURM, taskset), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


def limit_threads(hydra_cfg: DictConfig) -> int:
    """Apply `threads_per_job` to torch and to the BLAS/OpenMP pools (scikit-learn, numpy); the stages that
    take a thread count of their own (openTSNE, UMAP: n_jobs=-1) read it from torch.get_num_threads()."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = threads_per_job(hydra_cfg)
    torch.set_num_threads(threads)
    threadpool_limits(threads)
    return threads


def check_ddp(kind: Any, multirun: bool, launcher: Any = None, trainer: Any = None) -> None:
    """`kind` (an experiments.jobs.JobKind) under DDP: alone, or in a sweep on SLURM where srun starts one
    process per device (Lightning then starts none: every rank runs the job, its rank from SLURM_PROCID)."""
    if kind.ddp_worker is None:
        raise UserError(f"accelerator=ddp trains the encoders of task=cluster only (autoencoder, sparse_coding, ...); "
                        f"task={kind.name}: use accelerator=gpu")
    if not multirun:
        return
    if "SlurmLauncher" not in str((launcher or {}).get("_target_", "")):
        raise UserError(
            "accelerator=ddp in a sweep needs a SLURM launcher, hydra/launcher=slurm_gpu or slurm_cpu (srun starts "
            "each device's process); "
            "elsewhere Lightning starts them by running the command again, which -m would turn into a new sweep"
        )
    tasks, devices = launcher.get("tasks_per_node"), trainer.get("devices")
    if tasks != devices:
        raise UserError(f"accelerator=ddp on SLURM: hydra.launcher.tasks_per_node={tasks} must equal "
                        f"trainer.devices={devices} (srun starts one process per device; set both)")
    nodes, num_nodes = launcher.get("nodes", 1), trainer.get("num_nodes", 1)
    if nodes != num_nodes:
        raise UserError(f"accelerator=ddp on SLURM: hydra.launcher.nodes={nodes} must equal trainer.num_nodes={num_nodes}")
