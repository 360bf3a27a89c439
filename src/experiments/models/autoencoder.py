"""A convolutional autoencoder that builds itself for any image size and channel count."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn

from experiments.derivations import conv_output_size, conv_transpose_output_size


def encoder_sizes(size: int, n_layers: int, kernel: int, stride: int, padding: int) -> list[int]:
    """Spatial size after each encoder convolution, starting with the input's."""
    sizes = [size]
    for _ in range(n_layers):
        sizes.append(conv_output_size(sizes[-1], kernel, stride, padding))
    return sizes


class Autoencoder(pl.LightningModule):
    """What every autoencoder here shares: `self.encoder` to a code, `self.decoder` back to the images, trained
    on the pixels' MSE by Adam (`lr`, `weight_decay` in its hyperparameters). Subclasses build the two."""

    encoder: nn.Module
    decoder: nn.Module

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(codes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstruct the images."""
        return self.decoder(self.encoder(images))

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        images = batch[0]  # (images, index): the index is not needed
        loss = nn.functional.mse_loss(self(images), images)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        images = batch[0]
        self.log("val/recon_mse", nn.functional.mse_loss(self(images), images), prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return fused_adam(self)


def fused_adam(model: pl.LightningModule) -> torch.optim.Optimizer:
    """Adam with the model's `lr` and `weight_decay` hyperparameters, fused: one kernel for all parameters. On the
    CPU torch's default Adam loops over them in Python: for N2D's dense autoencoder 15 ms of a 50 ms step on 2
    cores, 3 ms fused (an epoch 10.5 s -> 9.0 s)."""
    return torch.optim.Adam(model.parameters(), lr=model.hparams.lr, weight_decay=model.hparams.weight_decay,
                            fused=True)


class ConvAutoencoder(Autoencoder):
    """Strided convolutions down to a `latent_dim` code, transposed convolutions back to the input's shape.

    The decoder mirrors the encoder; each transposed convolution's output_padding is chosen from the
    conv size formulas so that the reconstruction has exactly the input's height and width.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        latent_dim: int = 32,
        channels: tuple[int, ...] = (32, 64),
        kernel_size: int = 3,
        stride: int = 2,
        padding: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be at least 1, got {latent_dim}")
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive sizes, got {list(channels)}")
        if kernel_size < 1 or stride < 1:
            raise ValueError(f"kernel_size and stride must be at least 1, got {kernel_size}, {stride}")
        padding = kernel_size // 2 if padding is None else padding
        self.save_hyperparameters(logger=False)  # the config tree already holds them; no flat copies in W&B
        in_channels, height, width = image_shape
        heights = encoder_sizes(height, len(channels), kernel_size, stride, padding)
        widths = encoder_sizes(width, len(channels), kernel_size, stride, padding)
        if min(heights + widths) < 1:
            raise ValueError(
                f"channels: {len(channels)} convolutions (kernel {kernel_size}, stride {stride}, padding {padding}) "
                f"shrink a {height}x{width} image to nothing (sizes {heights} x {widths}); "
                "use fewer channels, a smaller stride or more padding"
            )

        encoder: list[nn.Module] = []
        for c_in, c_out in zip((in_channels, *channels), channels):
            encoder += [nn.Conv2d(c_in, c_out, kernel_size, stride, padding), nn.BatchNorm2d(c_out), nn.ReLU()]
        feature_shape = (channels[-1], heights[-1], widths[-1])
        n_features = channels[-1] * heights[-1] * widths[-1]
        self.encoder = nn.Sequential(*encoder, nn.Flatten(), nn.Linear(n_features, latent_dim))

        decoder: list[nn.Module] = [nn.Linear(latent_dim, n_features), nn.ReLU(), nn.Unflatten(1, feature_shape)]
        c_outs = (*reversed(channels[:-1]), in_channels)
        for i, (c_in, c_out) in enumerate(zip(reversed(channels), c_outs)):
            step = len(channels) - i  # decoder layer i undoes encoder layer `step`
            output_padding = tuple(
                target - conv_transpose_output_size(current, kernel_size, stride, padding)
                for current, target in ((heights[step], heights[step - 1]), (widths[step], widths[step - 1]))
            )
            if not all(0 <= pad < max(stride, 1) for pad in output_padding):
                raise ValueError(
                    f"padding: a transposed convolution cannot undo kernel {kernel_size}, stride {stride}, "
                    f"padding {padding} exactly; use padding = kernel_size // 2"
                )
            decoder.append(nn.ConvTranspose2d(c_in, c_out, kernel_size, stride, padding, output_padding))
            last = c_out == in_channels and step == 1
            decoder += [nn.Sigmoid()] if last else [nn.BatchNorm2d(c_out), nn.ReLU()]
        self.decoder = nn.Sequential(*decoder)
