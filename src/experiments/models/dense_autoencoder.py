"""N2D's autoencoder (McConville et al., 2019): fully connected layers d-500-500-2000-c and back, on the
flattened image; the code is the last encoder layer's output, without an activation."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torch import nn

from experiments.errors import UserError


class DenseAutoencoder(pl.LightningModule):
    """Flattened images -> `hidden` ReLU layers -> a `latent_dim` code -> the same layers reversed -> pixels.

    N2D trains it with MSE and Adam; its code has as many dimensions as the data has classes (10)."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        latent_dim: int = 10,
        hidden: tuple[int, ...] = (500, 500, 2000),
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise UserError(f"model.latent_dim must be at least 1, got {latent_dim}")
        if not hidden or min(hidden) < 1:
            raise UserError(f"model.hidden must be a non-empty list of positive sizes, got {list(hidden)}")
        self.save_hyperparameters(logger=False)  # the config tree already holds them; no flat copies in W&B
        self.image_shape = tuple(image_shape)
        pixels = math.prod(self.image_shape)
        sizes = (pixels, *hidden)
        encoder: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in zip(sizes, sizes[1:]):
            encoder += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.encoder = nn.Sequential(*encoder, nn.Linear(sizes[-1], latent_dim))
        back = (latent_dim, *reversed(hidden))
        decoder: list[nn.Module] = []
        for n_in, n_out in zip(back, back[1:]):
            decoder += [nn.Linear(n_in, n_out), nn.ReLU()]
        # Pixels lie in [0, 1]: a sigmoid output, as the convolutional autoencoder has.
        self.decoder = nn.Sequential(*decoder, nn.Linear(back[-1], pixels), nn.Sigmoid(), nn.Unflatten(1, self.image_shape))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstruct the images."""
        return self.decoder(self.encoder(images))

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        images = batch[0]  # labels, where the data has them, are not used
        loss = nn.functional.mse_loss(self(images), images)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        images = batch[0]
        self.log("val/recon_mse", nn.functional.mse_loss(self(images), images), prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
