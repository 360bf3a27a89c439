"""What a model must define for task=cluster (and task=classify), and the capabilities it may add: `typing.Protocol`s.

A model is any LightningModule, in this package or your own (`model=custom model._target_=my_package.MyEncoder`),
whose constructor takes `image_shape` (C, H, W) and whose class satisfies `Encoder`. Each optional capability is a
protocol of its own: a model has it by defining its method, and the job asks `isinstance(model, Decoder)` - the one
place a capability is looked for.

The batch a model's `training_step` and `validation_step` receive is `(images, index)`: images a float32
(B, C, H, W) tensor in [0, 1]; index an int64 (B,) tensor, each image's position in the fit images (in the eval
images for validation). No labels: the encoders learn without them.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class Encoder(Protocol):
    """Required. A LightningModule trained by Lightning's Trainer on the fit images (a model without trainable
    parameters is not trained), then `encode`d: its codes are what the reducer and the clusterer see."""

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Any:
        """The loss of one batch `(images, index)` (Lightning's)."""

    def configure_optimizers(self) -> Any:
        """The optimiser (Lightning's)."""

    def encode(self, images: Tensor) -> Tensor:
        """(N, C, H, W) images -> (N, d) codes. d, the code size, is read from what it returns (results.json's
        latent_dim); before training (and before a `FitStep`'s fit) it must already return codes of that shape."""


@runtime_checkable
class Decoder(Protocol):
    """Optional: codes back to images. The job then reports reconstruction errors (recon_mse) and draws the
    originals over their reconstructions."""

    def decode(self, codes: Tensor) -> Tensor:
        """(N, d) codes -> (N, C, H, W) images in [0, 1]."""


@runtime_checkable
class FitStep(Protocol):
    """Optional: a fit that is not training (a PCA of the fit images' features), run once on every fit image before
    any epoch; a model without trainable parameters then runs no epoch at all."""

    def check_fit_images(self, n_images: int) -> None:
        """Raise ValueError, naming the parameter, if `fit` cannot fit this many images: the job asks before it starts."""

    def fit(self, images: Tensor) -> Any:
        """Fit to the (N, C, H, W) fit images (scikit-learn's convention: return the model)."""


@runtime_checkable
class FitEncode(Protocol):
    """Optional, beside a fit step: fit to the images and return their codes at once (scikit-learn's fit_transform),
    where that costs less than fit, then encode. For a model with nothing to train after its fit, the job takes these
    as the fit images' codes instead of encoding those images again."""

    def fit_encode(self, images: Tensor) -> Tensor:
        """Fit to the (N, C, H, W) images; their (N, d) codes."""


@runtime_checkable
class SolverReport(Protocol):
    """Optional: codes found by a solver say whether it converged."""

    def solver_report(self) -> dict[str, Any]:
        """Entries for results.json about the codes encoded so far (e.g. codes_converged, codes_max_gap)."""


@runtime_checkable
class Atoms(Protocol):
    """Optional: a dictionary whose atoms are images, drawn as a grid (plots/atoms.png)."""

    def atoms(self) -> Tensor:
        """(k, C, H, W) images."""


@runtime_checkable
class Classifier(Protocol):
    """Required of task=classify's model: a LightningModule whose constructor takes `n_features` and `n_classes`,
    trained on batches `(inputs, targets)` (float32 (B, n_features), int64 (B,) class positions), whose forward
    returns logits."""

    def predict_proba(self, inputs: Tensor) -> Tensor:
        """(N, n_features) inputs -> (N, n_classes) class probabilities."""
