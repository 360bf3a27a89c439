import pytest
import torch

from experiments.errors import UserError
from experiments.models.autoencoder import ConvAutoencoder
from experiments.models.random_conv import RandomConvFeatures
from experiments.training import trains


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


def test_random_conv_features_come_from_the_seed_and_nothing_is_trained():
    images = torch.rand(5, 1, 28, 28)
    model = RandomConvFeatures((1, 28, 28), n_filters=16, latent_dim=32, seed=3)
    codes = model.encode(images)
    assert codes.shape == (5, 32) and not trains(model) and not hasattr(model, "decoder")
    torch.testing.assert_close(RandomConvFeatures((1, 28, 28), n_filters=16, latent_dim=32, seed=3).encode(images), codes)
    assert not torch.allclose(RandomConvFeatures((1, 28, 28), n_filters=16, latent_dim=32, seed=4).encode(images), codes)
    assert set(model.state_dict()) == {"filters", "projection"}, "saved with the model, so a cached model is the same"


def test_random_conv_pooling_brings_the_code_of_a_slightly_moved_image_closer():
    images = torch.zeros(3, 1, 28, 28)
    images[0, 0, 8:20, 10:14] = 1  # a bar
    images[1, 0, 10:14, 6:22] = 1  # the same bar turned
    images[2] = torch.roll(images[0], shifts=(1, 1), dims=(1, 2))  # the first, moved by a pixel each way

    def moved_against_turned(pool: int) -> float:
        codes = RandomConvFeatures((1, 28, 28), latent_dim=256, pool=pool).encode(images)
        return float((codes[2] - codes[0]).norm() / (codes[1] - codes[0]).norm())

    assert moved_against_turned(4) < 0.75 * moved_against_turned(1), "max pooling absorbs part of a small shift"


@pytest.mark.parametrize(("setting", "message"), [({"kernel_size": 4}, "odd kernel_size"),
                                                  ({"pool": 9}, "model.pool=9"), ({"latent_dim": 0}, "latent_dim")])
def test_random_conv_rejects_settings_it_cannot_build(setting, message):
    with pytest.raises(UserError, match=message):
        RandomConvFeatures((1, 8, 8), **setting)
