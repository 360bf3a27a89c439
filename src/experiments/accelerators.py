"""Lightning's accelerator names as torch devices, and the one-line error for a GPU that is not there."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from experiments.errors import UserError


def device_for(accelerator: str) -> torch.device:
    """cpu, or cuda for gpu/cuda (and for auto where a GPU is visible)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def check_accelerator(trainer_cfg: DictConfig) -> None:
    if trainer_cfg.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        name = "ddp" if trainer_cfg.get("strategy") == "ddp" else "gpu"
        raise UserError(f"accelerator={name} but no CUDA GPU is visible here; use accelerator=cpu or accelerator=auto")
