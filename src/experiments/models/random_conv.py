"""Random convolutional features (Jarrett et al., 2009; Saxe et al., 2011): fixed random filters, a ReLU and max
pooling, each image's features scaled to unit length and projected at random to `latent_dim`. Nothing is
trained: beside model=pixels, the baseline that says how much of a learned encoder's score its training earns."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from experiments.errors import UserError


class RandomConvFeatures(pl.LightningModule):
    """`n_filters` random filters of `kernel_size` (zero mean, unit length: they respond to edges and spots, not to
    brightness), max-pooled over `pool` x `pool` windows; the pooled maps, scaled to unit length per image, times a
    Gaussian random matrix (Johnson-Lindenstrauss: distances kept within a few percent) give the code. All drawn
    from `seed`. It has no parameters, so training runs no epochs (experiments.training.train_model), and no
    decoder: the job reports no reconstructions."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        n_filters: int = 64,
        kernel_size: int = 5,
        pool: int = 4,
        latent_dim: int = 128,
        seed: int = 0,
    ) -> None:
        super().__init__()
        channels, height, width = image_shape
        if min(n_filters, latent_dim) < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise UserError(f"model=random_conv needs n_filters and latent_dim of at least 1 and an odd kernel_size, "
                            f"got {n_filters}, {latent_dim}, {kernel_size}")
        if not 1 <= pool <= min(height, width):
            raise UserError(f"model.pool={pool} must be between 1 and the images' side ({height}x{width})")
        self.save_hyperparameters(logger=False)
        generator = torch.Generator().manual_seed(seed)
        filters = torch.randn(n_filters, channels, kernel_size, kernel_size, generator=generator)
        filters -= filters.mean(dim=(1, 2, 3), keepdim=True)
        filters /= filters.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        pooled = n_filters * (height // pool) * (width // pool)
        # Buffers, not parameters: saved with the model and moved to its device, never trained.
        self.register_buffer("filters", filters)
        self.register_buffer("projection", torch.randn(pooled, latent_dim, generator=generator) / math.sqrt(latent_dim))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        maps = F.conv2d(images, self.filters, padding=self.hparams.kernel_size // 2)
        # The ReLU after the pooling: the same values (both keep the order), on a pool**2 times smaller tensor
        pooled = F.relu(F.max_pool2d(maps, self.hparams.pool)).flatten(1)
        return F.normalize(pooled, dim=1) @ self.projection
