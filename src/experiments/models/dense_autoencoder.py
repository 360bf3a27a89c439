"""N2D's autoencoder (McConville et al., 2019): fully connected layers d-500-500-2000-c and back, on the
flattened image; the code is the last encoder layer's output, without an activation."""

from __future__ import annotations

import math
from itertools import pairwise

from torch import nn

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
        check_layer_sizes(latent_dim, hidden)
        self.save_hyperparameters(logger=False)  # the config tree already holds them; no flat copies in W&B
        self.image_shape = tuple(image_shape)
        pixels = math.prod(self.image_shape)
        self.encoder = nn.Sequential(nn.Flatten(), *dense_layers((pixels, *hidden, latent_dim)))
        # Pixels lie in [0, 1]: a sigmoid output, as the convolutional autoencoder has.
        self.decoder = nn.Sequential(*dense_layers((latent_dim, *reversed(hidden), pixels)), nn.Sigmoid(),
                                     nn.Unflatten(1, self.image_shape))


def check_layer_sizes(latent_dim: int, hidden: tuple[int, ...]) -> None:
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be at least 1, got {latent_dim}")
    if not hidden or min(hidden) < 1:
        raise ValueError(f"hidden must be a non-empty list of positive sizes, got {list(hidden)}")


def dense_layers(sizes: tuple[int, ...]) -> list[nn.Module]:
    """Fully connected layers from sizes[0] to sizes[-1], a ReLU after each but the last."""
    layers: list[nn.Module] = []
    for n_in, n_out in pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return layers[:-1]
