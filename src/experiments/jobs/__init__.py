"""Job kinds: what one `python -m experiments` job does, one module each.

    cluster/     train an encoder (autoencoder, sparse coding, your own), reduce, cluster and score its codes
    classify.py  train the MLP classifier and score it on held-out images
    lista.py     train learned ISTA and compare it with ISTA and FISTA after T steps
    deblur.py    deblur an image by ISTA and FISTA (no model)

`task=NAME` chooses one (`conf/task/NAME.yaml`, whose `task.kind` names the module, and whose defaults choose the
groups the kind reads: its model, trainer, reducer, ...). Each module holds a `KIND`, a `JobKind` that declares in
one place everything the rest of the framework needs to know: the settings it reads, its scores and their
direction, its sweep-table columns, its pre-flight `check` and its `run`. Adding a kind is one module here and one
config file in conf/task/.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from experiments.errors import UserError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from experiments.data import ImageDataModule
    from experiments.training import Job

MAX, MIN = "max", "min"


@dataclass(frozen=True)
class JobKind:
    """Everything the dispatcher, the sweep table and the sweepers know about a kind of job."""

    name: str
    # Score key in results.json -> "max" or "min" (whether higher or lower is better). The first is what a
    # sweeper optimises and the summary sorts by unless `task.score` names another.
    scores: dict[str, str]
    # The sweep table: (column header, results.json key), the optimised score's column first.
    columns: list[tuple[str, str]]
    # Column headers that name a job in the sweep's scores plot.
    labelled_by: tuple[str, ...]
    # Pre-flight: every error the config and the data's shape can reveal, raised as UserError before any
    # training and before a W&B run exists. Returns what `run` needs (built models, estimators, ...).
    check: Callable[[DictConfig, ImageDataModule | None], Any]
    # The stages: (job, what check returned) -> results.
    run: Callable[[Job, Any], dict[str, Any]]
    # The config paths the job reads besides `seed` (and `data`, where it needs the data group): only these enter
    # its results key and its code version, so changing the logger, the launcher or the plots reruns nothing.
    reads: tuple[str, ...] = ("task",)
    # Whether the job reads the data group (cfg -> bool).
    needs_data: Callable[[DictConfig], bool] = field(default=lambda cfg: True)
    # Scores shown in the last log line, after the optimised one.
    shown: tuple[str, ...] = ()
    # The config groups whose choice tags its W&B runs (model=autoencoder, reducer=tsne, ...).
    tagged_by: tuple[str, ...] = ("model", "data")
    # The modules whose code shapes this kind's results besides those named by the config's _target_s.
    code: tuple[str, ...] = ()
    # Under accelerator=ddp, what the processes of rank > 0 do: (cfg, job_dir, data set up, job key) -> None.
    # None: the kind refuses ddp.
    ddp_worker: Callable[[DictConfig, Path, ImageDataModule, str], None] | None = field(default=None)

    def settings(self, cfg: DictConfig) -> dict[str, Any]:
        """What of `cfg` shapes this kind's results, resolved: the settings at `reads`, `data` when it needs the data
        group, and the seed."""
        paths = (*self.reads, *(("data",) if self.needs_data(cfg) else ()))
        return {"seed": cfg.seed, **{path: to_plain(OmegaConf.select(cfg, path)) for path in paths}}

    def table(self) -> dict[str, Any]:
        """How a sweep tabulates this kind's results (written into each results.json, so that the summary needs no
        job module: `python -m experiments.report` imports neither torch nor Lightning)."""
        return {"scores": dict(self.scores), "columns": [list(c) for c in self.columns],
                "labelled_by": list(self.labelled_by)}

    def score(self, requested: str | None = None) -> tuple[str, str]:
        """(the optimised score's key, "max" or "min"): `requested` (task.score), by default the kind's first."""
        name = requested or next(iter(self.scores))
        if name not in self.scores:
            raise UserError(f"task.score={name!r} is not a score of task={self.name}; use one of "
                            f"{', '.join(self.scores)}")
        return name, self.scores[name]


def to_plain(value: Any) -> Any:
    """A config node as plain, resolved values."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def load(name: str) -> JobKind:
    """The kind named `name`: the KIND of experiments.jobs.<name>."""
    if not name.isidentifier():
        raise UserError(f"task.kind={name!r} is not a job kind (a module of experiments.jobs)")
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise UserError(f"task.kind={name!r}: no module experiments/jobs/{name}.py") from None
    return module.KIND


def direction(kind: str, score: str | None = None) -> str:
    """"maximize" or "minimize": Optuna's direction for `score` (None: the kind's own) of `kind`.

    The config resolver `${score_direction:${task.kind},${task.score}}` (conf/sweep/search.yaml).
    """
    return "maximize" if load(kind).score(score)[1] == MAX else "minimize"
