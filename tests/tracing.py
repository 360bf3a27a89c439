"""Line coverage paused for library work that runs no line of src/ (a light module: conftest.py imports it too).

Python 3.11's tracer is called for every line of every frame, measured or not (README, Tests), so a library's
work costs more under it though coverage has nothing to record there."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager

import coverage

# What the test modules import, directly or through src/: imported first, untraced, they took about 2 s less per
# worker to collect (the tests' own imports of src/ then run traced, so its module-level lines still count).
LARGE_LIBRARIES = ("torch", "pytorch_lightning", "wandb", "hydra", "omegaconf", "sklearn.cluster", "sklearn.mixture",
                   "sklearn.manifold", "matplotlib.pyplot", "scipy.optimize", "umap")


@contextmanager
def untraced() -> Iterator[None]:
    """Line coverage paused (as pytest-cov's `no_cover` marker pauses it for a whole test), for library work
    that runs no line of src/ yet slows down under the tracer: Hydra's compose (0.2 s instead of 0.1 s, a few
    hundred times in the suite; the config's resolvers run later, when a value is read), importing the large
    libraries (conftest.py) and umap-learn's numba compilation (tests/test_cluster.py)."""
    tracer = coverage.Coverage.current()
    if tracer is None:
        yield
        return
    tracer.stop()
    try:
        yield
    finally:
        tracer.start()


def import_large_libraries() -> None:
    """Under coverage only: without it there is nothing to save, and a run of one light test file (which
    imports no helpers) would import them all for nothing."""
    if coverage.Coverage.current() is None:
        return
    with untraced():
        for name in LARGE_LIBRARIES:
            importlib.import_module(name)
