import pytest
import torch
from helpers import compose_config

from experiments.data import Digits
from experiments.models.autoencoder import ConvAutoencoder
from experiments.models.protocols import Decoder, FitStep
from experiments.models.random_conv import RandomConvFeatures, RandomFilters
from experiments.models.random_conv_autoencoder import RandomConvAutoencoder
from experiments.models.random_conv_pca import RandomConvPCA
from experiments.training import train_model, trains


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8), (3, 17, 23), (1, 5, 7)])
def test_autoencoder_reconstructs_the_input_shape(shape):
    model = ConvAutoencoder(shape, latent_dim=6)
    images = torch.rand(4, *shape)
    assert model.encode(images).shape == (4, 6)
    assert model(images).shape == images.shape


def test_autoencoder_rejects_convolutions_that_shrink_the_image_to_nothing():
    with pytest.raises(ValueError, match="^channels: .* shrink a 8x8 image to nothing"):
        ConvAutoencoder((1, 8, 8), channels=(8, 8), kernel_size=5, padding=0)


def test_autoencoder_rejects_a_latent_dim_below_one():
    with pytest.raises(ValueError, match="^latent_dim must be at least 1"):
        ConvAutoencoder((1, 8, 8), latent_dim=0)


def test_random_conv_features_come_from_the_seed_and_nothing_is_trained():
    images = torch.rand(5, 1, 28, 28)
    model = RandomConvFeatures((1, 28, 28), n_filters=16, latent_dim=32, seed=3)
    codes = model.encode(images)
    assert codes.shape == (5, 32) and not trains(model) and not hasattr(model, "decoder")
    torch.testing.assert_close(RandomConvFeatures((1, 28, 28), n_filters=16, latent_dim=32, seed=3).encode(images), codes)
    assert not torch.allclose(RandomConvFeatures((1, 28, 28), n_filters=16, latent_dim=32, seed=4).encode(images), codes)
    assert set(model.state_dict()) == {"features.filters", "projection"}, "saved with the model, so a cached model is the same"


def test_random_conv_pooling_brings_the_code_of_a_slightly_moved_image_closer():
    images = torch.zeros(3, 1, 28, 28)
    images[0, 0, 8:20, 10:14] = 1  # a bar
    images[1, 0, 10:14, 6:22] = 1  # the same bar turned
    images[2] = torch.roll(images[0], shifts=(1, 1), dims=(1, 2))  # the first, moved by a pixel each way

    def moved_against_turned(pool: int) -> float:
        codes = RandomConvFeatures((1, 28, 28), latent_dim=256, pool=pool).encode(images)
        return float((codes[2] - codes[0]).norm() / (codes[1] - codes[0]).norm())

    assert moved_against_turned(4) < 0.75 * moved_against_turned(1), "max pooling absorbs part of a small shift"


def test_a_spatial_pyramid_adds_maxima_that_a_shift_does_not_change():
    images = torch.zeros(2, 1, 28, 28)
    images[0, 0, 8:20, 10:14] = 1  # a bar
    images[1] = torch.roll(images[0], shifts=(3, 3), dims=(1, 2))  # moved by 3 pixels each way, inside the image

    def features(pyramid: bool) -> torch.Tensor:
        return RandomFilters((1, 28, 28), 16, 5, 4, torch.Generator().manual_seed(0), pyramid)(images)

    plain, pyramid = features(False), features(True)
    assert plain.shape == (2, 16 * 49) and pyramid.shape == (2, 16 * (49 + 4 + 1))
    torch.testing.assert_close(pyramid[:, : 16 * 49] / pyramid[:, : 16 * 49].norm(dim=1, keepdim=True), plain,
                               msg="the windows' maxima as without the pyramid")
    whole = pyramid[:, -16:] / pyramid[:, -16:].norm(dim=1, keepdim=True)
    torch.testing.assert_close(whole[1], whole[0], msg="each map's maximum is where the bar went")
    assert (pyramid[1] - pyramid[0]).norm() < (plain[1] - plain[0]).norm()


@pytest.mark.parametrize(("setting", "message"), [({"kernel_size": 4}, "odd kernel_size"),
                                                  ({"pool": 9}, "^pool=9"), ({"latent_dim": 0}, "^latent_dim")])
def test_random_conv_rejects_settings_it_cannot_build(setting, message):
    with pytest.raises(ValueError, match=message):
        RandomConvFeatures((1, 8, 8), **setting)


def test_random_conv_pca_fits_its_components_to_the_fit_images_and_saves_them_with_the_model():
    data = Digits(fit_limit=300, eval_limit=100)
    data.setup()
    model = RandomConvPCA(data.image_shape, n_filters=16, pool=2, latent_dim=20, seed=3)
    unfitted = model.encode(data.eval_images)
    assert unfitted.shape == (100, 20) and not unfitted.any(), "before its fit step: the codes' shape, no values"
    assert model.fit(data.fit_images) is model and not trains(model)
    codes = model.encode(data.fit_images)
    assert codes.shape == (300, 20)
    assert codes.mean(0).abs().max() < 1e-4 and codes.var(0).mean() == pytest.approx(1, rel=1e-3)
    assert codes.var(0)[0] > codes.var(0)[-1], "in the PCA's order: the most variance first"
    torch.testing.assert_close(model.pca.components @ model.pca.components.T, torch.eye(20), atol=1e-5, rtol=0)
    saved = model.state_dict()
    assert set(saved) == {"features.filters", "pca.mean", "pca.components", "pca.scale"}
    cached = RandomConvPCA(data.image_shape, n_filters=16, pool=2, latent_dim=20, seed=3)
    cached.load_state_dict(saved)
    torch.testing.assert_close(cached.encode(data.eval_images), model.encode(data.eval_images))
    other = RandomConvPCA(data.image_shape, n_filters=16, pool=2, latent_dim=20, seed=4).fit(data.fit_images)
    assert not torch.allclose(other.encode(data.eval_images).abs(), model.encode(data.eval_images).abs())
    # The fit step's codes (the cluster job reuses them rather than encode the fit images again) are encode's
    again = RandomConvPCA(data.image_shape, n_filters=16, pool=2, latent_dim=20, seed=3)
    torch.testing.assert_close(again.fit_encode(data.fit_images), codes, atol=1e-5, rtol=1e-5)


def test_random_conv_pca_refuses_more_components_than_features_or_fit_images():
    with pytest.raises(ValueError, match=r"^latent_dim=257 must be between 1 and the 256"):
        RandomConvPCA((1, 8, 8), n_filters=16, pool=2, latent_dim=257)
    with pytest.raises(ValueError, match=r"^latent_dim=20 is more than the 10 fit"):
        RandomConvPCA((1, 8, 8), n_filters=16, pool=2, latent_dim=20).fit(torch.rand(10, 1, 8, 8))


def small_random_conv_autoencoder(image_shape: tuple[int, int, int], **settings) -> RandomConvAutoencoder:
    return RandomConvAutoencoder(image_shape, **{"latent_dim": 4, "hidden": (32,), "n_components": 20,
                                                 "n_filters": 16, "pool": 2, **settings})


def test_random_conv_autoencoder_fits_its_pca_as_its_fit_step_and_saves_it_with_the_model(tmp_path):
    data = Digits(batch_size=128, fit_limit=300, eval_limit=100)
    data.setup()
    model = small_random_conv_autoencoder(data.image_shape)
    images = data.fit_images
    assert isinstance(model, FitStep) and not isinstance(model, Decoder), "it reconstructs features, not images"
    assert model.encode(images).shape == (300, 4), "the codes' shape before the fit step: what the pre-flight reads"
    cfg = compose_config("trainer.max_epochs=1", "trainer.enable_progress_bar=false")
    with pytest.raises(RuntimeError, match="call fit"):
        train_model(cfg.trainer, model, None, tmp_path / "training.ckpt", resume=False, datamodule=data)
    model.fit(images)
    assert train_model(cfg.trainer, model, None, tmp_path / "training.ckpt", resume=False, datamodule=data)

    torch.testing.assert_close(model.pca.components @ model.pca.components.T, torch.eye(20), atol=1e-5, rtol=0)
    components = model.principal_components(images)
    torch.testing.assert_close(model.fit_components, components, atol=1e-5, rtol=1e-4,
                               msg="the training steps' components are the images' own")
    assert components.mean(0).abs().max() < 1e-4 and components.var(0).mean() == pytest.approx(1, rel=1e-3)
    assert components.var(0)[0] > components.var(0)[-1], "in the PCA's order: the most variance first"
    torch.testing.assert_close(model.eval_components, model.principal_components(data.eval_images), atol=1e-5,
                               rtol=1e-4, msg="the validation steps' components are the eval images' own")
    saved = model.state_dict()
    assert {"pca.mean", "pca.components", "pca.scale"} <= set(saved), "the model"
    assert not {"fit_components", "eval_components"} & set(saved), "not its data"
    cached = small_random_conv_autoencoder(data.image_shape)
    cached.load_state_dict(saved)
    torch.testing.assert_close(cached.encode(images), model.encode(images))
    assert cached.encode(images).shape == (300, 4)


@pytest.mark.parametrize(("setting", "message"), [({"n_components": 257}, "^n_components=257 must be between 1 and the 256"),
                                                  ({"hidden": ()}, "^hidden"), ({"latent_dim": 0}, "^latent_dim"),
                                                  ({"kernel_size": 2}, "odd kernel_size")])
def test_random_conv_autoencoder_rejects_settings_it_cannot_build(setting, message):
    with pytest.raises(ValueError, match=message):
        small_random_conv_autoencoder((1, 8, 8), **setting)


def test_random_conv_autoencoder_needs_as_many_fit_images_as_components():
    with pytest.raises(ValueError, match="^n_components=20 is more than the 10 fit images"):
        small_random_conv_autoencoder((1, 8, 8)).fit(torch.rand(10, 1, 8, 8))
