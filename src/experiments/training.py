"""What the job kinds share below them: the job record, stage timing, and training with a checkpoint after
every epoch that a killed job resumes from, keyed by what made it."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from experiments.cache import Cache
from experiments.console import LIGHTNING_INFO, quiet
from experiments.data import ImageDataModule
from experiments.errors import UserError, check_types, one_line
from experiments.fingerprint import code_version, module_of_target, settings_key
from experiments.tracking import Tracker

log = logging.getLogger(__name__)

# Trainer settings that change how training is shown, not the model it produces.
DISPLAY_SETTINGS = {"enable_progress_bar", "enable_model_summary", "log_every_n_steps"}


class StageTimer:
    """Seconds per stage, with a log line as each one ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        log.info("stage %s ...", stage)
        yield
        self.seconds[stage] = round(time.perf_counter() - start, 3)
        log.info("stage %s done in %.1fs", stage, self.seconds[stage])


@dataclass
class Job:
    """What the stages of one job share."""

    cfg: DictConfig
    dir: Path
    choices: dict[str, str]  # the chosen option of each config group (model=..., reducer=...)
    data: ImageDataModule | None  # None when the kind needs no data
    tracker: Tracker
    timer: StageTimer
    cache: Cache | None
    key: str  # settings and code of this job's results: names its checkpoints

    def checkpoint(self) -> Path:
        return job_checkpoint(self.dir, self.key)


def job_checkpoint(job_dir: Path, key: str) -> Path:
    """Where training saves its state every epoch when the model is not cached: named by the job's key, so a
    checkpoint of other settings or other code is never resumed."""
    return job_dir / f"training-{key}.partial.ckpt"


def resolved(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def trainer_settings(trainer_cfg: DictConfig) -> dict[str, Any]:
    """The trainer's settings that shape a model (not how its training is shown)."""
    return {k: v for k, v in resolved(trainer_cfg).items() if k not in DISPLAY_SETTINGS}


def model_code_version(model_cfg: DictConfig, data_cfg: DictConfig) -> str:
    """The code that shapes a trained model: its module, its data module, this training loop (and what they import)."""
    return code_version(module_of_target(model_cfg._target_), module_of_target(data_cfg._target_), __name__)


def model_cache_key(cfg: DictConfig, data_digest: str, model: DictConfig | None = None,
                    max_epochs: int | None = None) -> str:
    """The cache key of the model that `cfg` trains (or of `model` trained for `max_epochs` on its data):
    data settings and files, model, trainer, seed and the code that trains it."""
    model = cfg.model if model is None else model
    trainer = trainer_settings(cfg.trainer)
    if max_epochs is not None:
        trainer["max_epochs"] = max_epochs
    data = {k: v for k, v in resolved(cfg.data).items()  # what the classes are called and how large: not the model's
            if k not in ("num_workers", "class_names", "class_sizes")}
    return settings_key({"data": data, "data_files": data_digest, "model": resolved(model), "trainer": trainer,
                         "seed": cfg.seed, "code": model_code_version(model, cfg.data)})


def build_trainer(trainer_cfg: DictConfig, logger: Any, callbacks: list[pl.Callback]) -> pl.Trainer:
    """The configured Lightning Trainer, with the user's callbacks (trainer.callbacks) before `callbacks`."""
    settings = OmegaConf.to_container(trainer_cfg, resolve=True)
    user_callbacks = [instantiate(c) for c in settings.pop("callbacks", None) or []]
    return instantiate(settings, logger=logger or False, callbacks=[*user_callbacks, *callbacks])


# Counts the Trainer stores as given and asserts on only once fit() runs (max_epochs="abc" fails mid-fit), and
# switches it takes by their truth (enable_progress_bar=maybe is on).
WHOLE_NUMBER_SETTINGS = ("max_epochs", "min_epochs", "max_steps", "min_steps", "check_val_every_n_epoch",
                         "log_every_n_steps", "accumulate_grad_batches", "num_sanity_val_steps")
FLAG_SETTINGS = ("enable_progress_bar", "enable_checkpointing", "enable_model_summary", "benchmark", "inference_mode",
                 "use_distributed_sampler", "sync_batchnorm", "detect_anomaly", "barebones")


def check_trainer(trainer_cfg: DictConfig) -> None:
    """Build the Trainer once, so Lightning's own checks of its settings (precision, devices, strategy,
    callbacks) fail before any training or W&B run; check the counts it leaves to fit(); and refuse a
    training nothing would end."""
    check_types(trainer_cfg, "trainer", whole=WHOLE_NUMBER_SETTINGS, flags=FLAG_SETTINGS)
    if trainer_cfg.get("deterministic") not in (None, True, False, "warn"):
        raise UserError(f"trainer.deterministic={trainer_cfg.deterministic!r}: use true, false or warn")
    no_limit = trainer_cfg.get("max_epochs") == -1 and trainer_cfg.get("max_steps", -1) in (-1, None)  # Lightning's
    if no_limit and not trainer_cfg.get("max_time") and not trainer_cfg.get("callbacks"):  # (an early stop may end it)
        raise UserError("trainer.max_epochs=-1 trains without end; give a number of epochs, or a limit to stop at "
                        "(+trainer.max_steps=N, +trainer.max_time=DD:HH:MM:SS)")
    try:
        with quiet(LIGHTNING_INFO):  # the real Trainer says "GPU available: ..." once, when it is built
            build_trainer(trainer_cfg, None, [])
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - Lightning raises several types (Misconfiguration, Value, Import)
        raise UserError(f"trainer: {one_line(e)}") from None


def trains(model: pl.LightningModule) -> bool:
    """Whether the model has parameters to train (model=pixels has none: no epochs run, no optimiser is built)."""
    return any(parameter.requires_grad for parameter in model.parameters())


def check_optimizer(model: pl.LightningModule) -> None:
    """Build the model's optimiser once: torch checks its settings (a negative learning rate, momentum or
    weight decay) only when it is built, which Lightning does inside fit(), after the W&B run has started."""
    if not trains(model):
        return  # Lightning never asks it for an optimiser
    try:
        model.configure_optimizers()
    except (ValueError, TypeError) as e:  # torch's checks: a value out of range, or a word where a number goes
        raise UserError(f"model: its optimiser refuses the settings ({one_line(e)})") from None
    except Exception:  # noqa: BLE001 - one that needs its Trainer (a schedule sized by the Trainer's steps)
        log.debug("%s's optimiser needs its Trainer: fit() builds it", type(model).__name__)


def train_model(trainer_cfg: DictConfig, model: pl.LightningModule, logger: Any, checkpoint: Path, resume: bool,
                **fit_args: Any) -> list[dict[str, float]]:
    """Fit `model` with the configured Lightning Trainer, saving its whole state to `checkpoint` after every
    epoch and, with `resume`, continuing from there; return the per-epoch metrics.

    `checkpoint` is named by everything that shapes the training (settings and code), so an existing one
    is this training's. A resumed training is the uninterrupted one: the data order of each epoch comes
    from (seed, epoch), and the checkpoint holds the optimiser, the callbacks' state and torch's RNG.
    """
    if not trains(model):
        log.info("%s has no parameters to train: no epochs run", type(model).__name__)
        return []
    history = EpochHistory()
    trainer = build_trainer(trainer_cfg, logger, [history, EpochCheckpoint(checkpoint)])
    start_from = None
    if resume and checkpoint.exists():
        log.info("resuming training from %s", checkpoint)
        start_from = checkpoint
    with warnings.catch_warnings():
        # In-memory tensors need no loader workers; Lightning suggests them regardless. A model without a
        # validation_step (one of yours) has no validation curve: nothing to warn about.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*val_dataloader` but have no `validation_step`.*")
        try:
            trainer.fit(model, ckpt_path=start_from, weights_only=False, **fit_args)
        except SystemExit:  # how Lightning ends the process after Ctrl-C, once it has torn the epoch down
            if trainer.interrupted and checkpoint.exists():
                log.warning("training interrupted after %d epochs, kept in %s: the same command resumes it (with "
                            "cache=false, a single run needs its hydra.run.dir too)", len(history.epochs), checkpoint)
            raise
    checkpoint.unlink(missing_ok=True)
    return history.epochs


class EpochHistory(pl.Callback):
    """Per-epoch training curves, kept with the cached model so a cache hit can log them too."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if not k.endswith("_step")}
        # The step too: a cache hit replays the curves on the axis a fresh run logs them against (Lightning
        # logs epoch-end metrics at the epoch's last step).
        self.epochs.append({"epoch": trainer.current_epoch, "step": trainer.global_step - 1, **metrics})

    # Saved in checkpoints, so a resumed training keeps the epochs from before its interruption.
    def state_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs = list(state_dict["epochs"])


class EpochCheckpoint(pl.Callback):
    """Saves the whole training state after every epoch, atomically, so a killed job resumes from it.

    torch's global RNG is saved too: a model that draws random numbers while training (dropout, noise)
    resumes the draws of the uninterrupted run.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The same temporary name on every rank: under DDP rank 0 alone writes it, after a barrier.
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.path)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])
