"""Where a job's records go: PNGs and CSVs in the job folder always, and W&B when it is the logger."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from matplotlib.figure import Figure
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger, WandbLogger

from experiments.errors import UserError
from experiments.files import atomic_path, write_csv

log = logging.getLogger(__name__)


def close_leftover_wandb_run() -> None:
    """Finish a W&B run left open by an earlier job in this process.

    Lightning's WandbLogger reuses an open `wandb.run`, so without this a job would log into the
    run of a job that failed before it in the same process (multirun, joblib workers).
    """
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


def make_logger(
    logger_cfg: DictConfig, job_dir: Path, group: str | None, name: str | None, config: dict, run_id: str | None = None
) -> Logger | None:
    """Instantiate the configured Lightning logger (None for logger=none), with its run started.

    A W&B run with `run_id` is resumed if it exists ("allow"), so a job run again continues its run.
    """
    if not logger_cfg or logger_cfg.get("_target_") is None:
        return None
    target = logger_cfg._target_
    if target.endswith("WandbLogger"):
        close_leftover_wandb_run()
        # `config` is also instantiate's own first argument, so it is passed to the partial instead.
        ids = {"id": run_id, "resume": "allow"} if run_id else {}
        logger = instantiate(logger_cfg, _partial_=True)(save_dir=str(job_dir), group=group, name=name, config=config, **ids)
        try:
            logger.experiment  # start the run now, so a W&B problem shows before training
        except Exception as e:  # wandb raises several types for a failed start (network, auth, settings)
            raise UserError(
                f"logger: W&B could not start a run ({type(e).__name__}: {e}); "
                "use logger.mode=offline (sync later with `wandb sync`) or logger=csv"
            ) from None
        return logger
    return instantiate(logger_cfg, save_dir=str(job_dir))


class Tracker:
    """One job's records: figures, tables and images go to the job folder and, if open, the W&B run."""

    def __init__(self, job_dir: Path, logger: Logger | None) -> None:
        self.job_dir = job_dir
        self.logger = logger
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

    def log_figure(self, name: str, fig: Figure) -> Path:
        """Save `plots/<name>.png` and log it to W&B as an image under `name`."""
        import matplotlib.pyplot as plt

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
        if self.wandb_run is not None:
            import wandb

            panel = [wandb.Image(to_uint8_pixels(image), caption=c) for image, c in zip(images, captions)]
            self.wandb_run.log({name: panel})

    def log_table(self, name: str, columns: list[str], rows: list[list[Any]]) -> Path:
        """Save `<name>.csv` in the job folder and log it to W&B as a `wandb.Table`."""
        path = self.job_dir / f"{name.replace('/', '_')}.csv"
        write_csv(path, columns, rows)
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({name: wandb.Table(columns=columns, data=rows)})
        return path

    def log_summary(self, results: dict[str, Any]) -> None:
        run = self.wandb_run
        if run is not None:
            run.summary.update({k: v for k, v in results.items() if isinstance(v, (int, float, str)) or v is None})

    def finish(self, failed: bool) -> None:
        """Close the W&B run (marked failed when the job failed) and flush other loggers."""
        if self.logger is None:
            return
        if isinstance(self.logger, WandbLogger):
            run = self.logger.experiment
            run.finish(exit_code=1 if failed else 0)
        else:
            self.logger.finalize("failed" if failed else "success")


def to_uint8_pixels(image: np.ndarray, min_height: int = 96) -> np.ndarray:
    """[0, 1] floats to uint8, enlarged by whole pixels so small images stay visible in W&B.

    (W&B writes the same file for every float array in a list of images, hence uint8.)
    """
    scale = max(1, min_height // image.shape[0])
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1)
