"""N2D's autoencoder on random convolutional features: fixed random filters and pooling (models/random_conv.py),
the principal components of their features, fitted to the fit images before training, and N2D's dense autoencoder
trained to reconstruct those components. Its code is what the cluster job reduces and clusters."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from torch import nn

from experiments.models.autoencoder import fused_adam
from experiments.models.dense_autoencoder import check_layer_sizes, dense_layers
from experiments.models.random_conv import RandomFilters
from experiments.models.random_conv_pca import PrincipalComponents

log = logging.getLogger(__name__)


class RandomConvAutoencoder(pl.LightningModule):
    """Images -> random filters' features (RandomFilters, drawn from `seed`) -> their first `n_components` principal
    components, scaled to a mean variance of 1 -> N2D's layers (`hidden`) -> a `latent_dim` code -> the layers
    reversed -> the components again, by MSE and Adam.

    The PCA is the model's fit step (models/protocols.py's FitStep): `fit`, on every fit image's features
    (scikit-learn's PCA, seeded), before training; it is saved with the model, so a cached model encodes without it.
    Each fit image's components are computed there once, and each eval image's when training starts (Lightning's
    `setup` hook), and looked up by the batches' indices, since computing the features costs more than the
    autoencoder's steps (the 10,000 eval images' took 2 s of each validation epoch's 2.5). It reconstructs features,
    not images: it has no `decode`, and the cluster job reports no reconstructions.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        latent_dim: int = 10,
        hidden: tuple[int, ...] = (500, 500, 2000),
        n_components: int = 100,
        n_filters: int = 64,
        kernel_size: int = 5,
        pool: int = 4,
        pyramid: bool = False,
        seed: int = 0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        check_layer_sizes(latent_dim, hidden)
        self.save_hyperparameters(logger=False)  # the config tree already holds them; no flat copies in W&B
        self.features = RandomFilters(image_shape, n_filters, kernel_size, pool, torch.Generator().manual_seed(seed),
                                      pyramid)
        # zero until fitted, saved with the model
        self.pca = PrincipalComponents(self.features.n_features, n_components, "n_components")
        # Training state, not model (not saved): each fit and eval image's components, by its index in its set.
        self.register_buffer("fit_components", torch.zeros(0, n_components), persistent=False)
        self.register_buffer("eval_components", torch.zeros(0, n_components), persistent=False)
        self.encoder = nn.Sequential(*dense_layers((n_components, *hidden, latent_dim)))
        self.component_decoder = nn.Sequential(*dense_layers((latent_dim, *reversed(hidden), n_components)))

    def principal_components(self, images: torch.Tensor) -> torch.Tensor:
        return self.pca(self.features(images))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.principal_components(images))

    def setup(self, stage: str) -> None:
        """Lightning's hook before training (and before a resumed training's checkpoint is restored): the eval
        images' components, for the validation steps."""
        if stage == "fit":
            datamodule = self.trainer.datamodule
            if datamodule is None or not self.pca.fitted:
                raise RuntimeError("RandomConvAutoencoder trains on the components of its fit step: call fit(fit_images) "
                                   "first, then trainer.fit with a datamodule")
            self.eval_components = self.pca(self.features.of_images(datamodule.eval_images).to(self.device))

    def check_fit_images(self, n_images: int) -> None:
        self.pca.check_fit_images(n_images)

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> RandomConvAutoencoder:
        """Fit the PCA to the images' features and keep each image's components for the training steps."""
        self.check_fit_images(len(images))
        log.info("PCA of %d fit images' random features to %d components", len(images), self.hparams.n_components)
        features = self.features.of_images(images)
        self.pca.fit(features, self.hparams.seed)
        self.fit_components = self.pca(features.to(self.device))
        return self

    def reconstruct(self, components: torch.Tensor) -> torch.Tensor:
        return self.component_decoder(self.encoder(components))

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        components = self.fit_components[batch[1]]  # (images, index): each image's components, looked up
        loss = nn.functional.mse_loss(self.reconstruct(components), components)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        components = self.eval_components[batch[1]]  # (images, index): each image's components, looked up
        self.log("val/component_mse", nn.functional.mse_loss(self.reconstruct(components), components),
                 prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return fused_adam(self)
