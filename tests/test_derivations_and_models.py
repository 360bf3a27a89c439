import pytest
import torch

from experiments.derivations import conv_output_size, conv_transpose_output_size
from experiments.errors import UserError
from experiments.models.autoencoder import ConvAutoencoder


@pytest.mark.parametrize("stride, expected", [(2, 8), (3, 6), (4, 4), (5, 4)])
def test_conv_output_size_matches_seed_000_worked_example(stride, expected):
    assert conv_output_size(16, kernel=1, stride=stride, padding=0) == expected


def test_conv_output_size_matches_seed_002_layer_sizes():
    assert conv_output_size(128, kernel=8, stride=2, padding=3) == 64
    assert conv_output_size(64, kernel=2, stride=2) == 32  # 2x2 pooling
    assert conv_output_size(32, kernel=3, stride=1, padding=1) == 32


@pytest.mark.parametrize("size, kernel, stride, padding, dilation", [(28, 3, 2, 1, 1), (17, 5, 3, 2, 1), (9, 3, 1, 0, 2)])
def test_size_formulas_agree_with_torch(size, kernel, stride, padding, dilation):
    x = torch.zeros(1, 1, size)
    conv = torch.nn.Conv1d(1, 1, kernel, stride, padding, dilation)
    assert conv(x).shape[-1] == conv_output_size(size, kernel, stride, padding, dilation)
    tconv = torch.nn.ConvTranspose1d(1, 1, kernel, stride, padding, output_padding=0, dilation=dilation)
    assert tconv(x).shape[-1] == conv_transpose_output_size(size, kernel, stride, padding, 0, dilation)


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
