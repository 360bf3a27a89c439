"""What the tests share: compose configs and run jobs in-process (Hydra's compose API), or run
`python -m experiments` in a subprocess as a user would (the few end-to-end tests), and read W&B runs with
W&B's own reader."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from tracing import untraced

import experiments.__main__  # noqa: F401 - as the entry point: the config's resolvers, one shared ConfigStore
from experiments import jobs, pipeline
from experiments.data import ImageDataModule
from experiments.errors import UserError, one_line

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

# Settings that keep a run on the digits small and quick: fit on 1,000 of them, score 600.
QUICK = ["data=digits", "data.fit_limit=1000", "data.eval_limit=600", "trainer.max_epochs=2", "plots.max_points=300"]
# Lightning's DDP over two CPU processes (gloo): the code path of DDP over GPUs.
DDP_ON_CPU = ["accelerator=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]
# How close a DDP job's codes come to one process's: two ranks on batches of 128 train as one process on batches of
# 256 (each rank takes every other image of one order) but for the order of the float sums reduced across them,
# which Adam's first steps, dividing each gradient entry by its own size, turn into differences of about 0.7% of
# the codes' largest magnitude (sparse coding on 512 digits, 2 epochs).
DDP_CODES_TOLERANCE = 0.02


def compose_config(*overrides: str, job_dir: Path | None = None, hydra_context: bool = False) -> DictConfig:
    """The job config `python -m experiments OVERRIDES` would get. With `job_dir` (or `hydra_context`) Hydra's
    own config is set as it is inside a job, its output folder `job_dir`, so `pipeline.run` can run it here."""
    with untraced(), initialize_config_dir(str(CONF), version_base="1.3", job_name="experiments"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=job_dir is not None or hydra_context)
    if job_dir is None and not hydra_context:
        return cfg
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(job_dir)
        cfg.hydra.job.override_dirname = ",".join(overrides)
    HydraConfig.instance().set_config(cfg)
    job_cfg = cfg.copy()
    with open_dict(job_cfg):
        del job_cfg["hydra"]
    return job_cfg


@dataclass
class Job:
    dir: Path
    score: Any

    @property
    def results(self) -> dict:
        return json.loads((self.dir / "results.json").read_text())


def run_job(tmp_path: Path, *overrides: str, name: str = "run", cache: Path | None = None,
            figures: bool = False) -> Job:
    """One job through `pipeline.run`, in this process, in `tmp_path/name`, its cache in `tmp_path/cache`.
    Without Lightning's progress bar: drawing it is a good share of a small job's time (the end-to-end tests
    keep it, as a user has it). Without a W&B run unless an override names the logger (`logger=wandb`,
    `logger.mode=...`): starting and closing one costs a small job half a second to a second. Without figures
    unless `figures=True` (the tests of what a job draws): matplotlib costs a small job one to two seconds,
    twice that under coverage's tracer."""
    job_dir = tmp_path / name
    quiet = [] if any(o.startswith("logger") for o in overrides) else ["logger=none"]
    cfg = compose_config(f"cache_dir={cache or tmp_path / 'cache'}", "trainer.enable_progress_bar=false", *quiet,
                         f"plots.enabled={str(figures).lower()}", *overrides, job_dir=job_dir)
    return Job(job_dir, pipeline.run(cfg))


def check_job(*overrides: str) -> Any:
    """The job kind's pre-flight check on the composed config (with its data loaded, as pipeline.run does)."""
    cfg = compose_config(*overrides)
    kind = jobs.load(cfg.task.kind)
    data: ImageDataModule | None = None
    try:
        if kind.needs_data(cfg):
            data = pipeline.build_data(cfg)
            data.setup()
        return kind.check(cfg, data)
    except Exception as e:  # a UserError raised in a constructor reaches us wrapped by Hydra
        if isinstance(e, UserError) or isinstance(e.__cause__, UserError):
            raise UserError(one_line(e)) from None
        raise


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    dir: Path

    @property
    def results(self) -> dict:
        return json.loads((self.dir / "results.json").read_text())


def cli_env(cache: Path, extra: dict | None = None) -> dict[str, str]:
    # Not the W&B service of this process's in-process runs (WANDB_SERVICE): a user's command starts its own.
    inherited = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "WANDB_SERVICE")}
    return {**inherited, "WANDB_MODE": "offline", "EXPERIMENTS_CACHE_DIR": str(cache), **(extra or {})}


def run_cli(out_dir: Path, *overrides: str, multirun: bool = False, env: dict | None = None, cache: Path | None = None,
            dash_m: bool | None = None) -> Run:
    """Run the CLI with its output folder (run or sweep dir) at `out_dir` and W&B offline; `dash_m` (default:
    `multirun`) says whether the command line has -m (a sweep config sweeps without it)."""
    dir_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    dash_m = multirun if dash_m is None else dash_m
    args = [sys.executable, "-m", "experiments", f"{dir_key}={out_dir}", *overrides] + (["-m"] if dash_m else [])
    done = subprocess.run(args, cwd=REPO, env=cli_env(cache or out_dir.parent / "cache", env), capture_output=True,
                          text=True, timeout=600, check=False)
    return Run(done.returncode, done.stdout, done.stderr, out_dir)


def assert_matches_one_process(ddp_dir: Path, one: Job) -> None:
    """A DDP job's codes and accuracy against one process's (`one`) on the same images, batches twice the size."""
    codes, reference = np.load(ddp_dir / "codes.npy"), np.load(one.dir / "codes.npy")
    assert np.abs(codes - reference).max() <= DDP_CODES_TOLERANCE * np.abs(reference).max()
    assert abs(json.loads((ddp_dir / "results.json").read_text())["acc"] - one.results["acc"]) <= 0.01


def assert_one_line_error(run: Run, *fragments: str) -> None:
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def two_class_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 12, 12, 3) uint8 images of two obvious kinds (horizontal vs vertical stripes) and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    stripes = (np.arange(12) % 4 < 2).astype(np.float32)
    horizontal = np.repeat(stripes[:, None], 12, axis=1)
    images = np.where(labels[:, None, None] == 0, horizontal, horizontal.T)
    images = images[..., None] * rng.uniform(0.6, 1.0, size=(n, 1, 1, 3)) + rng.normal(0, 0.05, (n, 12, 12, 3))
    return (np.clip(images, 0, 1) * 255).astype(np.uint8), labels


def wandb_summary(run_dir: str | Path) -> dict[str, Any]:
    """A W&B run's state, config, summary, name and tags, as W&B's own reader prints them."""
    return json.loads(leet_inspect(run_dir, "--summary"))


def wandb_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of a W&B run's log (run, history, summary, exit, ...), as W&B's own reader prints them."""
    return [json.loads(line) for line in leet_inspect(run_dir).splitlines() if line.strip()]


def leet_inspect(run_dir: str | Path, *flags: str) -> str:
    """`wandb leet inspect --json` of a run folder. A test reads the same run several times and each reader is
    a process of about a second: the answer is kept until the run's log file changes (a resumed run)."""
    logs = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(Path(run_dir).glob("*.wandb")))
    return _leet_inspect(str(run_dir), flags, logs)


@functools.lru_cache(maxsize=256)
def _leet_inspect(run_dir: str, flags: tuple[str, ...], logs: tuple) -> str:  # `logs`: part of the cache key
    done = subprocess.run([str(Path(sys.executable).with_name("wandb")), "leet", "inspect", *flags, "--json", run_dir],
                          capture_output=True, text=True, check=True)
    return done.stdout


def wandb_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's history rows (one per log call), as W&B's own reader prints them."""
    return [r["history"]["item"] for r in wandb_records(run_dir) if r["type"] == "history"]


def history_keys(run_dir: str | Path) -> set[str]:
    """Every key logged to the run's history."""
    return {key for row in wandb_history(run_dir) for key in row}
