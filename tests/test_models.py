import pytest
import torch

from experiments.errors import UserError
from experiments.models.autoencoder import ConvAutoencoder


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8), (3, 17, 23), (1, 5, 7)])
def test_autoencoder_reconstructs_the_input_shape(shape):
    model = ConvAutoencoder(shape, latent_dim=6)
    images = torch.rand(4, *shape)
    assert model.encode(images).shape == (4, 6)
    assert model(images).shape == images.shape


def test_autoencoder_rejects_convolutions_that_shrink_the_image_to_nothing():
    with pytest.raises(UserError, match="shrink a 8x8 image to nothing"):
        ConvAutoencoder((1, 8, 8), channels=(8, 8), kernel_size=5, padding=0)


def test_autoencoder_rejects_a_latent_dim_below_one():
    with pytest.raises(UserError, match="model.latent_dim"):
        ConvAutoencoder((1, 8, 8), latent_dim=0)
