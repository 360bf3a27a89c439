"""pytest's hooks for this suite. The helpers the tests share are in helpers.py: this file is also loaded by
pytest-xdist's controller, which runs no test, and it stays light (no torch, Lightning or W&B), so the
controller starts the workers at once instead of after the seconds those imports take (README, Tests)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Tests run on several workers (make test: -n auto): one thread each, for torch, BLAS and OpenMP, and for
    # the commands they start, so the workers share the cores instead of fighting over them (OpenMP's threads
    # spin while they wait). Set here, before any test module imports torch or numpy.
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[variable] = "1"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Where the tests run under coverage (each worker, or the one process without -n), the large libraries are
    imported before the test modules are collected, with coverage paused (tracing.py); xdist's controller
    imports none."""
    if os.environ.get("PYTEST_XDIST_WORKER") or not session.config.getoption("numprocesses", None):
        from tracing import import_large_libraries

        import_large_libraries()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end tests spread evenly through the run: on several workers (make test: -n auto) each worker's
    share of the list holds its share of the long tests, so the workers finish together."""
    slow = [item for item in items if item.get_closest_marker("slow")]
    fast = [item for item in items if not item.get_closest_marker("slow")]
    every = len(fast) // max(len(slow), 1) + 1
    items[:] = [item for i, test in enumerate(fast) for item in ([slow[i // every]] if i % every == 0 and i // every < len(slow) else []) + [test]]
    items += [item for item in slow if item not in items]
    # The tests that wait on a cluster (SLURM's, Ray's: a chain of processes, each waiting for the last) each go first
    # in a worker's share of the list (xdist hands each worker a contiguous share), so their waiting overlaps the
    # other tests instead of holding one worker alone at the end; the longest, the SLURM sweep, first of all.
    waiting = sorted((item for item in items if {"slurm", "ray_cluster"} & set(item.fixturenames)
                      and item.get_closest_marker("slow")), key=lambda item: "sweep_on_slurm" not in item.name)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    rest = [item for item in items if item not in waiting]
    share = -(-len(items) // workers)
    for k, item in enumerate(waiting):
        rest.insert(min((k % workers) * share + k // workers, len(rest)), item)
    items[:] = rest


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked `gpu` runs where a CUDA GPU is visible and is skipped, saying so, elsewhere."""
    # A skip, not a failure: `make test` must pass on the CPU machines CI and most users have. It cannot hide a
    # GPU failure: where a GPU should be tested, `make test-gpu` refuses to start unless torch sees one, so there
    # these tests run or the command fails.
    if item.get_closest_marker("gpu"):
        import torch  # here, not above: the controller never imports it (the module's docstring)

        if not torch.cuda.is_available():
            pytest.skip("no CUDA GPU on this machine: the GPU tests run where there is one (make test-gpu)")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The local SLURM cluster stopped after the session if its tests started it (test_slurm.py): once, from the
    process that ran the session (xdist's controller, after every worker is done)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    repo = Path(__file__).resolve().parents[1]
    if (repo / "outputs" / "slurm" / "started-by-tests").exists():
        subprocess.run([repo / "scripts" / "local_slurm.sh", "down"], capture_output=True, timeout=120, check=False)
