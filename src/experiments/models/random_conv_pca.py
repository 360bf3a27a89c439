"""Random convolutional features (models/random_conv.py) onto their principal components, fitted to the fit
images: the PCA is the model's fit step, and nothing is trained. On Fashion-MNIST with the spatial pyramid it clusters
as well as N2D's autoencoder trained on the same components (docs/notebook.md)."""

from __future__ import annotations

import logging

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.decomposition import PCA
from torch import nn

from experiments.models.random_conv import RandomFilters

log = logging.getLogger(__name__)


class PrincipalComponents(nn.Module):
    """The first `n_components` principal components of `n_features` features, scaled to a mean variance of 1.
    Fitted by `fit` (scikit-learn's PCA, seeded); buffers, saved with the model and moved to its device, never
    trained. Before it is fitted it maps every feature vector to zeros, of the fitted output's shape. `parameter`
    names the count in errors (the models call it n_components or latent_dim)."""

    def __init__(self, n_features: int, n_components: int, parameter: str = "n_components") -> None:
        super().__init__()
        if not 1 <= n_components <= n_features:
            raise ValueError(f"{parameter}={n_components} must be between 1 and the {n_features} features of the "
                             "random filters' pooled maps")
        self.parameter = parameter
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("components", torch.zeros(n_components, n_features))
        self.register_buffer("scale", torch.zeros(()))  # zero until fitted

    def check_fit_images(self, n_images: int) -> None:
        """Enough images to fit: the cluster job's check calls it (through the model), before W&B and training."""
        if n_images < len(self.components):
            raise ValueError(f"{self.parameter}={len(self.components)} is more than the {n_images} fit images")

    @torch.no_grad()
    def fit(self, features: torch.Tensor, seed: int) -> None:
        """All the features at once (60,000 Fashion-MNIST images: 3,456 features each, 830 MB): scikit-learn's
        randomized PCA of them takes 10 s on 2 cores, half of what accumulating their covariance takes."""
        pca = PCA(len(self.components), random_state=seed).fit(features.numpy())
        self.mean.copy_(torch.from_numpy(pca.mean_))
        self.components.copy_(torch.from_numpy(pca.components_))
        self.scale.fill_(float(np.sqrt(pca.explained_variance_.mean())))

    @property
    def fitted(self) -> bool:
        return bool(self.scale > 0)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        projected = (features - self.mean) @ self.components.T  # zeros before fit: the shape without the values
        return projected / self.scale if self.scale > 0 else projected


class RandomConvPCA(pl.LightningModule):
    """Random filters' features (RandomFilters, drawn from `seed`) -> their first `latent_dim` principal components
    (PrincipalComponents), the code. The PCA is the model's fit step (models/protocols.py's FitStep): `fit`, on the
    fit images, before training would start; saved with the model so a cached one encodes without refitting.
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
        self.pca = PrincipalComponents(self.features.n_features, latent_dim, "latent_dim")

    def check_fit_images(self, n_images: int) -> None:
        self.pca.check_fit_images(n_images)

    def fit(self, images: torch.Tensor) -> RandomConvPCA:
        """Fit the PCA to the images' features (scikit-learn's convention: returns the model)."""
        self.fit_encode(images)
        return self

    @torch.no_grad()
    def fit_encode(self, images: torch.Tensor) -> torch.Tensor:
        """Fit the PCA to the images' features and return the images' codes, from the same features (computing them
        is most of the work: 17 s for 60,000 Fashion-MNIST images on 2 cores, the PCA 8 s)."""
        self.check_fit_images(len(images))
        log.info("PCA of %d fit images' random features to %d components", len(images), self.hparams.latent_dim)
        features = self.features.of_images(images)
        self.pca.fit(features, self.hparams.seed)
        return torch.cat([self.pca(batch) for batch in features.split(4096)])

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.pca(self.features(images))
