"""Launcher settings checked before a sweep starts, and the thread budget of each parallel job."""

from __future__ import annotations

import os

import torch
from omegaconf import DictConfig

from experiments.errors import UserError


def check_launcher(hydra_cfg: DictConfig) -> None:
    """One-line errors for launcher settings that would fail (or hang) only once jobs are out."""
    launcher = hydra_cfg.launcher
    target = str(launcher.get("_target_", ""))
    if "Joblib" in target:
        n_jobs = launcher.get("n_jobs")
        if n_jobs is None or n_jobs == 0 or n_jobs < -1:
            raise UserError(f"hydra.launcher.n_jobs={n_jobs}: use a number of parallel jobs >= 1 (or -1 for one per core)")
    if "SlurmLauncher" in target and not launcher.get("partition"):
        raise UserError("hydra.launcher.partition is not set: name your cluster's SLURM partition "
                        "(hydra.launcher.partition=gpu)")


def parallel_jobs(hydra_cfg: DictConfig) -> int:
    """How many jobs of this sweep run at once on this machine (1 unless the joblib launcher runs them)."""
    launcher = hydra_cfg.get("launcher") or {}
    if "Joblib" not in str(launcher.get("_target_", "")):
        return 1
    n_jobs = launcher.get("n_jobs", -1)
    return (os.cpu_count() or 1) if n_jobs == -1 else max(1, int(n_jobs))


def threads_per_job(hydra_cfg: DictConfig) -> int:
    """The rule: the machine's cores shared evenly between the jobs that run at once, at least one each."""
    return max(1, (os.cpu_count() or 1) // parallel_jobs(hydra_cfg))


def limit_threads(hydra_cfg: DictConfig) -> int:
    """Apply `threads_per_job` to torch and to the BLAS/OpenMP pools (scikit-learn, numpy)."""
    from threadpoolctl import threadpool_limits

    threads = threads_per_job(hydra_cfg)
    if parallel_jobs(hydra_cfg) > 1:
        torch.set_num_threads(threads)
        threadpool_limits(threads)
    return threads
