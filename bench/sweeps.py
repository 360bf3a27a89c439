"""Bench sections on whole commands: a sweep with the model cache against without (sweep), on the joblib launcher
against the basic one (joblib), and `--help` against importing Hydra (help)."""

from __future__ import annotations

import subprocess
import sys
import time

from common import REPO, Context, Row, Section, faster, timed_sweep


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


SECTIONS = {"sweep": Section(sweep, sweep_rows), "joblib": Section(joblib, joblib_rows),
            "help": Section(help_time, help_rows)}
