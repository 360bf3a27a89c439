"""Bench sections on whole commands: a sweep with the model cache against without (sweep), on the joblib launcher
against the basic one (joblib), `--help` against importing Hydra (help), and make run's job against the same command
on the code before its speed-up (make_run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, Context, Row, Section, faster, timed_sweep

# The code make run's job is measured against: main before the speed-up of 2026-12-07 (one neighbour search shared,
# the random features computed once, UMAP's 100 epochs)
BEFORE_SPEEDUP = "217fc175b2334ac6714bcec38678dceee9d8bdaf"


def sweep(context: Context) -> dict:
    cached = timed_sweep(context.out / "cached", context.data_overrides)
    uncached = timed_sweep(context.out / "uncached", [*context.data_overrides, "cache=false"])
    return {"cached_s": cached, "uncached_s": uncached, "speedup": uncached / cached}


def sweep_rows(r: dict) -> list[Row]:
    return [("latent_dims sweep, 9 jobs: model cache vs cache=false (wall time)", faster(r["speedup"]),
             f"{r['cached_s']:.0f} s vs {r['uncached_s']:.0f} s")]


def joblib(context: Context) -> dict:
    """The same sweep (fresh cache each) on the basic launcher and on joblib with two workers."""
    basic = timed_sweep(context.out / "basic", context.data_overrides)
    parallel = timed_sweep(context.out / "joblib", [*context.data_overrides, "hydra/launcher=joblib",
                                                    "hydra.launcher.n_jobs=2"])
    return {"basic_s": basic, "joblib_s": parallel, "speedup": basic / parallel}


def joblib_rows(r: dict) -> list[Row]:
    return [("latent_dims sweep, 9 jobs: joblib launcher (n_jobs=2, 1 thread each) vs basic launcher (wall time)",
             faster(r["speedup"]), f"{r['joblib_s']:.0f} s vs {r['basic_s']:.0f} s")]


def help_time(context: Context, repeats: int = 5) -> dict:
    """`python -m experiments --help` against `python -c "import hydra"`: best of `repeats` each, alternated."""
    def run(args: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start

    hydra_s, help_s = [], []
    for _ in range(repeats):
        hydra_s.append(run(["-c", "import hydra"]))
        help_s.append(run(["-m", "experiments", "--help"]))
    return {"help_s": min(help_s), "import_hydra_s": min(hydra_s), "ratio": min(help_s) / min(hydra_s)}


def help_rows(r: dict) -> list[Row]:
    return [("`python -m experiments --help` vs `python -c \"import hydra\"` (wall time, best of 5; target: within 5x)",
             f"{r['ratio']:.1f}x the time", f"{r['help_s']:.2f} s vs {r['import_hydra_s']:.2f} s")]


def recipe_job(out: Path, src: Path, overrides: list[str]) -> dict:
    """One `python -m experiments` job of the code in `src` (and its configs beside it): its results.json."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(src), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    args = [sys.executable, "-m", "experiments", f"hydra.run.dir={out}", "logger=none", "cache=false", *overrides]
    subprocess.run(args, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "results.json").read_text())


def make_run(context: Context) -> dict:
    """make run's job (+recipe=random_conv_pca, seed 0) on this code and on the code before its speed-up, checked out
    beside it (git worktree), back to back: the job's seconds (its stages, not the start of Python) and scores."""
    before = context.out / "before-speedup"
    shutil.rmtree(before, ignore_errors=True)
    subprocess.run(["git", "worktree", "prune"], cwd=REPO, check=True)
    subprocess.run(["git", "worktree", "add", "--detach", str(before), BEFORE_SPEEDUP], cwd=REPO, check=True,
                   capture_output=True)
    overrides = ["+recipe=random_conv_pca", *context.data_overrides]
    try:
        old = recipe_job(context.out / "make_run_before", before / "src", overrides)
        new = recipe_job(context.out / "make_run_now", REPO / "src", overrides)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=REPO, check=False)
    seconds = {name: sum(r["seconds"].values()) for name, r in (("before", old), ("now", new))}
    return {"before_s": seconds["before"], "now_s": seconds["now"], "speedup": seconds["before"] / seconds["now"],
            "before_acc": old["acc"], "now_acc": new["acc"], "before_nmi": old["nmi"], "now_nmi": new["nmi"]}


def make_run_rows(r: dict) -> list[Row]:
    return [((f"make run's job (+recipe=random_conv_pca, seed 0): now vs the code before its speed-up "
              f"({BEFORE_SPEEDUP[:7]}; target: within half its time; acc, NMI)"), faster(r["speedup"]),
             (f"{r['now_s']:.0f} s vs {r['before_s']:.0f} s; acc {r['now_acc']:.4f} vs {r['before_acc']:.4f}, "
              f"NMI {r['now_nmi']:.4f} vs {r['before_nmi']:.4f}"))]


SECTIONS = {"sweep": Section(sweep, sweep_rows), "joblib": Section(joblib, joblib_rows),
            "help": Section(help_time, help_rows), "make_run": Section(make_run, make_run_rows)}
