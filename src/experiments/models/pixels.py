"""The identity encoder: an image's code is its pixels. The baseline every learned encoder is measured against
(model=pixels reducer=none clusterer=kmeans: k-means on the raw pixels)."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torch import nn


class Pixels(pl.LightningModule):
    """Flattened pixels as the code, the code reshaped as the reconstruction (exact). It has no parameters,
    so training runs no epochs (experiments.training.train_model)."""

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.hparams["latent_dim"] = math.prod(image_shape)  # the code size the checks and tables read
        self.encoder = nn.Flatten()
        self.decoder = nn.Unflatten(1, tuple(image_shape))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(images))
