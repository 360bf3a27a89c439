"""Random convolutional features (Jarrett et al., 2009; Saxe et al., 2011): fixed random filters, a ReLU and max
pooling, each image's features scaled to unit length and projected at random to `latent_dim`. Nothing is
trained: beside model=pixels, the baseline that says how much of a learned encoder's score its training earns."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F


class RandomFilters(nn.Module):
    """`n_filters` random filters of `kernel_size` (zero mean, unit length: they respond to edges and spots, not to
    brightness), max-pooled over `pool` x `pool` windows after a ReLU; each image's pooled maps, flattened and scaled
    to unit length, are its `n_features` features. With `pyramid`, a spatial pyramid (Lazebnik et al., 2006): each
    map's maxima over its four quadrants and over the whole map join the windows', weighted 2 and 4 (fewer cells,
    more weight), features that a shift of a few pixels does not change. Drawn from `generator`; a buffer, never
    trained."""

    def __init__(self, image_shape: tuple[int, int, int], n_filters: int, kernel_size: int, pool: int,
                 generator: torch.Generator, pyramid: bool = False) -> None:
        super().__init__()
        channels, height, width = image_shape
        if n_filters < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"random filters need n_filters of at least 1 and an odd kernel_size, got "
                            f"{n_filters}, {kernel_size}")
        if not 1 <= pool <= min(height, width):
            raise ValueError(f"pool={pool} must be between 1 and the images' side ({height}x{width})")
        self.kernel_size, self.pool, self.pyramid = kernel_size, pool, pyramid
        self.n_features = n_filters * ((height // pool) * (width // pool) + (2 * 2 + 1 if pyramid else 0))
        filters = torch.randn(n_filters, channels, kernel_size, kernel_size, generator=generator)
        filters -= filters.mean(dim=(1, 2, 3), keepdim=True)
        filters /= filters.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        self.register_buffer("filters", filters)  # saved with the model and moved to its device, never trained

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = F.conv2d(images, self.filters, padding=self.kernel_size // 2)
        pooled = F.max_pool2d(maps, self.pool).flatten(1)
        if self.pyramid:
            pooled = torch.cat([pooled, 2 * F.adaptive_max_pool2d(maps, 2).flatten(1), 4 * maps.amax(dim=(2, 3))], 1)
        # The ReLU after the pooling: the same values (both keep the order), on a pool**2 times smaller tensor
        return F.normalize(F.relu(pooled), dim=1)

    @torch.no_grad()
    def of_images(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Every image's features, a batch at a time on the filters' device, gathered on the CPU. Small batches: a
        batch's maps stay in the CPU's cache between the convolution and the pooling (64 images of 28x28: 10 s for
        60,000 on 2 cores, against 17 s in batches of 1,024)."""
        device = self.filters.device
        return torch.cat([self(batch.to(device)).cpu() for batch in images.split(batch_size)])


class RandomConvFeatures(pl.LightningModule):
    """Random filters' features (RandomFilters) times a Gaussian random matrix (Johnson-Lindenstrauss: distances
    kept within a few percent) give the code. All drawn from `seed`. It has no parameters, so training runs no
    epochs (experiments.training.train_model), and no decoder: the job reports no reconstructions."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        n_filters: int = 64,
        kernel_size: int = 5,
        pool: int = 4,
        latent_dim: int = 128,
        seed: int = 0,
        pyramid: bool = False,
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be at least 1, got {latent_dim}")
        self.save_hyperparameters(logger=False)
        generator = torch.Generator().manual_seed(seed)
        self.features = RandomFilters(image_shape, n_filters, kernel_size, pool, generator, pyramid)
        projection = torch.randn(self.features.n_features, latent_dim, generator=generator) / math.sqrt(latent_dim)
        self.register_buffer("projection", projection)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images) @ self.projection
