"""Random convolutional features (models/random_conv.py) onto their principal components, fitted to the fit
images: the PCA is the model's fit step, and nothing is trained. On Fashion-MNIST with the spatial pyramid it clusters
as well as N2D's autoencoder trained on the same components (README, Results)."""

from __future__ import annotations

import logging

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.decomposition import PCA
from torch import nn

from experiments.errors import UserError
from experiments.models.random_conv import RandomFilters

log = logging.getLogger(__name__)


class PrincipalComponents(nn.Module):
    """The first `n_components` principal components of `n_features` features, scaled to a mean variance of 1.
    Fitted by `fit` (scikit-learn's PCA, seeded); buffers, saved with the model and moved to its device, never
    trained. `setting` names the count in errors (the models call it model.n_components or model.latent_dim)."""

    def __init__(self, n_features: int, n_components: int, setting: str) -> None:
        super().__init__()
        if not 1 <= n_components <= n_features:
            raise UserError(f"{setting} must be between 1 and the {n_features} features of the random filters' "
                            "pooled maps")
        self.setting = setting
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("components", torch.zeros(n_components, n_features))
        self.register_buffer("scale", torch.zeros(()))  # zero until fitted

    def check_fit_images(self, n_images: int) -> None:
        """Enough images to fit: the cluster job's check calls it (through the model), before W&B and training."""
        if n_images < len(self.components):
            raise UserError(f"{self.setting} is more than the {n_images} fit images")

    @torch.no_grad()
    def fit(self, features: torch.Tensor, seed: int) -> None:
        """All the features at once (60,000 Fashion-MNIST images: 3,456 features each, 830 MB): scikit-learn's
        randomized PCA of them takes 10 s on 2 cores, half of what accumulating their covariance takes."""
        pca = PCA(len(self.components), random_state=seed).fit(features.numpy())
        self.mean.copy_(torch.from_numpy(pca.mean_))
        self.components.copy_(torch.from_numpy(pca.components_))
        self.scale.fill_(float(np.sqrt(pca.explained_variance_.mean())))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.scale > 0:
            raise RuntimeError("the PCA is not fitted: fit the model (or train it) first")
        return (features - self.mean) @ self.components.T / self.scale


class RandomConvPCA(pl.LightningModule):
    """Random filters' features (RandomFilters, drawn from `seed`) -> their first `latent_dim` principal components
    (PrincipalComponents), the code. The PCA is the model's fit step: `fit`, on the fit images (the cluster job
    calls it where it would train a model), saved with the model so a cached one encodes without refitting.
    Nothing is trained and there is no decoder: the job reports no reconstructions."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        n_filters: int = 64,
        kernel_size: int = 5,
        pool: int = 4,
        pyramid: bool = False,
        latent_dim: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.features = RandomFilters(image_shape, n_filters, kernel_size, pool, torch.Generator().manual_seed(seed),
                                      pyramid)
        self.pca = PrincipalComponents(self.features.n_features, latent_dim,
                                       f"model.latent_dim={latent_dim} (principal components)")

    def check_fit_images(self, n_images: int) -> None:
        self.pca.check_fit_images(n_images)

    def fit(self, images: torch.Tensor) -> RandomConvPCA:
        """Fit the PCA to the images' features (scikit-learn's convention: returns the model)."""
        self.check_fit_images(len(images))
        log.info("PCA of %d fit images' random features to %d components", len(images), self.hparams.latent_dim)
        self.pca.fit(self.features.of_images(images), self.hparams.seed)
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.pca(self.features(images))
