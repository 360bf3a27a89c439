"""The MLP classifier: the hand-derived backward pass against autograd, step by step."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from experiments.metrics import top_k_error
from experiments.models.mlp import MLPClassifier, data_loss, output_gradient


def train_losses(gradients: str, steps: int = 15, **settings) -> tuple[list[float], MLPClassifier]:
    """Losses of `steps` optimiser steps on one fixed random batch (so the loss must fall), in float64."""
    torch.manual_seed(0)
    settings = {"hidden_dims": (16,), "lr": 0.05, **settings}
    model = MLPClassifier(n_features=6, n_classes=4, gradients=gradients, **settings).double()
    optimizer = model.configure_optimizers()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(32, 6, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 4, (32,), generator=generator)
    losses = []
    for step in range(steps):
        model.train()
        total, _ = model.objective(model(x), y)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    return losses, model


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"loss": "mse", "lr": 0.3},
        {"activation": "relu", "l2": 0.01, "hidden_dims": (8, 5)},
        {"activation": "sigmoid", "optimizer": "adam", "lr": 0.01},
        {"batchnorm": True, "hidden_dims": (7, 7), "l2": 0.001},
    ],
    ids=["softplus_ce", "mse", "relu_l2_two_layers", "sigmoid_adam", "batchnorm"],
)
def test_manual_gradients_give_the_same_losses_as_autograd_at_every_step(settings):
    manual, manual_model = train_losses("manual", **settings)
    auto, auto_model = train_losses("autograd", **settings)
    assert manual == pytest.approx(auto, abs=1e-6, rel=0)
    assert manual[-1] < manual[0], "the steps do train"
    for p, q in zip(manual_model.parameters(), auto_model.parameters()):
        assert torch.allclose(p, q, atol=1e-8)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_output_gradient_is_the_per_sample_gradient_of_the_loss(loss):
    logits = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 2, 1, 1, 0])
    (data_loss(logits, target, loss) * len(target)).backward()  # sum of per-sample losses
    assert torch.allclose(output_gradient(logits.detach(), target, loss), logits.grad, atol=1e-12)


def test_mse_squashes_the_gradient_of_a_confidently_wrong_prediction():
    # assignment 2 Q2 g: through the softmax, MSE's gradient vanishes where cross-entropy's does not
    logits = torch.tensor([[12.0, 0.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([2])
    ce = output_gradient(logits, target, "cross_entropy").norm()
    mse = output_gradient(logits, target, "mse").norm()
    assert ce > 1.0 and mse < 1e-3


def test_l2_penalty_counts_weights_not_biases():
    model = MLPClassifier(n_features=2, n_classes=2, hidden_dims=(3,), l2=0.5).double()
    for layer in model.layers:
        torch.nn.init.ones_(layer.weight)
        torch.nn.init.constant_(layer.bias, 100.0)
    x, y = torch.zeros(4, 2, dtype=torch.float64), torch.zeros(4, dtype=torch.long)
    total, risk = model.objective(model(x), y)
    assert (total - risk).item() == pytest.approx(0.5 * (2 * 3 + 3 * 2))


@pytest.mark.parametrize(
    "settings, setting",
    [
        ({"hidden_dims": ()}, "hidden_dims"),
        ({"hidden_dims": (4, 0)}, "hidden_dims"),
        ({"loss": "hinge"}, "loss='hinge'"),
        ({"activation": "tanh"}, "activation='tanh'"),
        ({"gradients": "numeric"}, "gradients"),
    ],
)
def test_bad_settings_are_refused_naming_the_parameter(settings, setting):
    with pytest.raises(ValueError, match="^" + setting.replace("(", r"\(").replace(")", r"\)")):
        MLPClassifier(n_features=3, n_classes=2, **settings)


def test_top_k_error_counts_the_true_class_outside_the_k_best():
    scores = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    truth = np.array([2, 0, 0])
    assert top_k_error(scores, truth, 1) == pytest.approx(2 / 3)
    assert top_k_error(scores, truth, 2) == pytest.approx(1 / 3)
    assert top_k_error(scores, truth, 3) == 0.0


def test_cross_entropy_data_loss_matches_torch():
    logits, target = torch.randn(7, 4), torch.randint(0, 4, (7,))
    assert data_loss(logits, target, "cross_entropy") == pytest.approx(F.cross_entropy(logits, target).item())
