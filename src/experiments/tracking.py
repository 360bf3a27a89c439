"""Where a job's records go: PNGs and CSVs in the job folder always, and W&B when it is the logger.

The W&B run is started here with `wandb.init` (named, tagged, typed by the job's kind) and handed to
Lightning's WandbLogger. In a multirun every job's run and the sweep's summary run are written under
SWEEP_DIR/wandb/, one workspace: `wandb leet SWEEP_DIR/wandb` shows them side by side and
`wandb sync SWEEP_DIR/wandb/offline-run-*` uploads them. A single run keeps its own under the job folder.

This is the one module that imports `wandb`: the jobs draw their charts through `Tracker`'s methods. A job kind's
scores have their best value (`summary="max"|"min"`) as the kind declares it (`JobKind.scores`); the training
curves keep W&B's default summary, their last value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, WandbLogger

from experiments.errors import UserError
from experiments.files import atomic_path, write_csv

log = logging.getLogger(__name__)


@dataclass
class RunIdentity:
    """How a run is found among others: name, group (the sweep), job type (the kind), tags."""

    name: str | None
    group: str | None
    job_type: str
    tags: list[str] = field(default_factory=list)
    declared: dict[str, str] = field(default_factory=dict)  # score -> "max"/"min": the job kind's `scores`


def close_leftover_wandb_run() -> None:
    """Finish a W&B run left open by an earlier job in this process (multirun, joblib workers)."""
    import wandb

    if wandb.run is not None:
        log.warning("closing W&B run %s left open by an earlier job", wandb.run.id)
        wandb.run.finish(exit_code=1)


def sweep_group(sweep_dir: str | Path) -> str:
    """The W&B group of a sweep's runs: its folder, relative to the working directory when inside it."""
    path = Path(sweep_dir).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def start_wandb_run(logger_cfg: DictConfig, root: Path, identity: RunIdentity, config: dict,
                    run_id: str | None = None) -> Any:
    """A W&B run under `root`/wandb/, resumed if `run_id` exists there ("allow"). W&B's own console output is
    off (the job logs where the run is and how to look at it); a failed start is a one-line error."""
    import wandb

    close_leftover_wandb_run()
    settings = OmegaConf.to_container(logger_cfg, resolve=True)
    root.mkdir(parents=True, exist_ok=True)
    try:
        run = wandb.init(
            project=settings.get("project"), entity=settings.get("entity"), mode=settings.get("mode"), dir=str(root),
            name=identity.name, group=identity.group, job_type=identity.job_type,
            tags=sorted({*identity.tags, *(settings.get("tags") or [])}), notes=settings.get("notes"), config=config,
            id=run_id, resume="allow" if run_id else None, settings=wandb.Settings(silent=True),
        )
    except Exception as e:  # noqa: BLE001 - wandb raises several types for a failed start (network, auth, settings)
        raise UserError(
            f"logger: W&B could not start a run ({type(e).__name__}: {e}); "
            "use logger.mode=offline (sync later with `wandb sync`) or logger=csv"
        ) from None
    # The training curves' x-axis, as Lightning sets it for runs it starts itself.
    run.define_metric("trainer/global_step")
    run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
    for name, best in identity.declared.items():
        run.define_metric(name, summary=best)
    return run


def is_wandb(logger_cfg: DictConfig | None) -> bool:
    return bool(logger_cfg) and str(logger_cfg.get("_target_", "")).endswith("WandbLogger")


def make_logger(logger_cfg: DictConfig, root: Path, identity: RunIdentity, config: dict,
                run_id: str | None = None) -> Logger | None:
    """The configured Lightning logger (None for logger=none); for W&B over a run started now, so a W&B
    problem shows before any work."""
    if not logger_cfg or logger_cfg.get("_target_") is None:
        return None
    if is_wandb(logger_cfg):
        run = start_wandb_run(logger_cfg, root, identity, config, run_id)
        return WandbLogger(experiment=run, log_model=False)  # models go to W&B as artifacts (Tracker.log_model)
    return instantiate(logger_cfg, save_dir=str(root))


class Tracker:
    """One job's records: figures, tables and images go to the job folder and, if open, the W&B run.

    With `figures=False` (plots.enabled=false) no figure is drawn and no image panel logged: a second or
    more of matplotlib a job that a long sweep may not want; scores, tables and curves are recorded as ever.
    """

    def __init__(self, job_dir: Path, logger: Logger | None, figures: bool = True) -> None:
        self.job_dir = job_dir
        self.logger = logger
        self.figures = figures
        self.plots_dir = job_dir / "plots"

    @property
    def wandb_run(self) -> Any | None:
        return self.logger.experiment if isinstance(self.logger, WandbLogger) else None

    @property
    def wandb_dir(self) -> str | None:
        run = self.wandb_run
        return None if run is None or not getattr(run, "dir", None) else str(Path(run.dir).parent)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.logger is not None:
            self.logger.log_metrics(metrics, step=step)

    def log_confusion_matrix(self, name: str, truth: list[int], predicted: list[int], class_names: list[str]) -> None:
        """W&B's interactive confusion matrix (a custom chart), beside the PNG a job draws with log_figure."""
        if self.figures and self.wandb_run is not None:
            import wandb

            self.wandb_run.log({name: wandb.plot.confusion_matrix(y_true=truth, preds=predicted,
                                                                  class_names=class_names)})

    def log_line_series(self, name: str, curves: dict[str, list[float]], title: str, xname: str) -> None:
        """Several curves, each against 1, 2, 3, ..., as one W&B line chart."""
        if self.wandb_run is not None:
            import wandb

            names = list(curves)
            self.wandb_run.log({name: wandb.plot.line_series(
                xs=[list(range(1, len(curves[n]) + 1)) for n in names], ys=[curves[n] for n in names], keys=names,
                title=title, xname=xname)})

    def log_series(self, prefix: str, step: str, rows: list[dict[str, float]]) -> None:
        """Metrics against an axis of their own (`PREFIX/STEP`, e.g. a solver's iteration), not the training
        step: each row logged as PREFIX/key, its x-axis its value of `step`."""
        run = self.wandb_run
        if run is None:
            return
        run.define_metric(f"{prefix}/{step}")
        run.define_metric(f"{prefix}/*", step_metric=f"{prefix}/{step}")
        for row in rows:
            run.log({f"{prefix}/{key}": value for key, value in row.items() if value is not None})

    def log_figure(self, name: str, draw: Callable[..., Figure], *args: Any) -> Path | None:
        """Draw the figure (`draw(*args)`, only where figures are on), save `plots/<name>.png` and log it to
        W&B as an image under `name`."""
        if not self.figures:
            return None
        import matplotlib.pyplot as plt

        fig = draw(*args)
        path = self.plots_dir / f"{name.replace('/', '_')}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({name: wandb.Image(str(path))})
        return path

    def log_images(self, name: str, images: list[np.ndarray], captions: list[str]) -> None:
        """A W&B image panel; images are (H, W) or (H, W, C) in [0, 1]."""
        if self.figures and self.wandb_run is not None:
            import wandb

            panel = [wandb.Image(to_uint8_pixels(image), caption=c) for image, c in zip(images, captions)]
            self.wandb_run.log({name: panel})

    def log_table(self, name: str, columns: list[str], rows: list[list[Any]], csv: bool = True) -> Path | None:
        """Save `<name>.csv` in the job folder (unless `csv=False`) and put it in the W&B run as a `wandb.Table`.

        In the run's summary, not its history: W&B's web app draws a table panel from the summary all the same, and
        the history is what `wandb leet` charts (a table logged there becomes charts of its row and column counts)."""
        path = self.job_dir / f"{name.replace('/', '_')}.csv" if csv else None
        if path is not None:
            write_csv(path, columns, rows)
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.summary[name] = wandb.Table(columns=columns, data=rows)
        return path

    def log_model(self, path: str | Path, key: str, cache_hit: bool, metadata: dict[str, Any]) -> str | None:
        """The trained model as a W&B model artifact `model-<key>` (the cache key names it). A model from the
        cache is recorded as used by this run, not logged again; offline, where W&B cannot record a use, the
        returned name, which the job puts in its results (and so in the run's summary), says which it is."""
        run = self.wandb_run
        if run is None or getattr(run, "disabled", False):
            return None
        import wandb

        name = f"model-{key}"
        online = run.settings.mode == "online"
        if cache_hit:
            if online:
                run.use_artifact(f"{name}:latest", type="model")
            return name
        artifact = wandb.Artifact(name, type="model", metadata=metadata)
        artifact.add_file(str(path), name="model.pt")
        run.log_artifact(artifact, aliases=["latest"])
        return name

    def log_summary(self, results: dict[str, Any]) -> None:
        run = self.wandb_run
        if run is not None:
            run.summary.update({k: v for k, v in results.items() if isinstance(v, (int, float, str)) or v is None})

    def finish(self, failed: bool) -> None:
        """Close the W&B run (marked failed when the job failed) and flush other loggers."""
        if self.logger is None:
            return
        if isinstance(self.logger, WandbLogger):
            self.logger.experiment.finish(exit_code=1 if failed else 0)
        else:
            self.logger.finalize("failed" if failed else "success")


def log_sweep_summary(logger_cfg: DictConfig, sweep_dir: Path, sweep: str | None,
                      tables: dict[str, tuple[list[str], list[list[Any]]]],
                      scores: tuple[list[dict[str, float]], dict[str, str]],
                      curves: dict[str, tuple[list[float], list[float | None]]]) -> None:
    """The sweep's summary run in its W&B workspace: each job's scores charted against its number (`scores`: one
    dict a job, its "job" the x-axis; and each score's direction, which makes the run's summary the sweep's best),
    each table (name -> (columns, rows)) as a W&B table in the summary, and the jobs' eval loss per epoch (job ->
    (epochs, losses)) in one chart."""
    import wandb

    identity = RunIdentity("summary", sweep_group(sweep_dir), "summary", [f"sweep={sweep}"] if sweep else [])
    identity.declared = scores[1]
    run = start_wandb_run(logger_cfg, sweep_dir, identity, config={"sweep_dir": str(sweep_dir)})
    run.define_metric("job", hidden=True)  # the x-axis, not a chart of its own
    for name in scores[1]:
        run.define_metric(name, step_metric="job")
    for row in scores[0]:
        run.log(row)
    for name, (columns, rows) in tables.items():
        run.summary[name] = wandb.Table(columns=columns, data=[[str(v) if isinstance(v, list) else v for v in row]
                                                               for row in rows])
    if curves:
        run.log({"loss_curves": wandb.plot.line_series(
            xs=[epochs for epochs, _ in curves.values()], ys=[losses for _, losses in curves.values()],
            keys=list(curves), title="eval loss per epoch", xname="epoch")})
    run.finish()


def to_uint8_pixels(image: np.ndarray, min_height: int = 96) -> np.ndarray:
    """[0, 1] floats to uint8, enlarged by whole pixels so small images stay visible in W&B.

    (W&B writes the same file for every float array in a list of images, hence uint8.)
    """
    scale = max(1, min_height // image.shape[0])
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1)
