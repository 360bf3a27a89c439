"""The identity encoder: an image's code is its pixels. The baseline every learned encoder is measured against
(+recipe=raw_pixels: k-means on the raw pixels)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class Pixels(pl.LightningModule):
    """Flattened pixels as the code, the code reshaped as the reconstruction (exact). It has no parameters,
    so training runs no epochs (experiments.training.train_model)."""

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.image_shape = tuple(image_shape)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes.reshape(-1, *self.image_shape)
