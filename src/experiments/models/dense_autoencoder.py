"""N2D's autoencoder (McConville et al., 2019): fully connected layers d-500-500-2000-c and back, on the
flattened image; the code is the last encoder layer's output, without an activation."""

from __future__ import annotations

import math
from itertools import pairwise

from torch import nn

from experiments.errors import UserError
from experiments.models.autoencoder import Autoencoder


class DenseAutoencoder(Autoencoder):
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
        for n_in, n_out in pairwise(sizes):
            encoder += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.encoder = nn.Sequential(*encoder, nn.Linear(sizes[-1], latent_dim))
        back = (latent_dim, *reversed(hidden))
        decoder: list[nn.Module] = []
        for n_in, n_out in pairwise(back):
            decoder += [nn.Linear(n_in, n_out), nn.ReLU()]
        # Pixels lie in [0, 1]: a sigmoid output, as the convolutional autoencoder has.
        self.decoder = nn.Sequential(*decoder, nn.Linear(back[-1], pixels), nn.Sigmoid(), nn.Unflatten(1, self.image_shape))
