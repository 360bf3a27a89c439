"""Data modules: where the images come from, checked and turned into float (N, C, H, W) in [0, 1].

Every module yields *fit* images (to train the model, labels not needed) and *eval* images (encoded,
clustered and scored, with labels when there are any).
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from experiments.errors import UserError

log = logging.getLogger(__name__)

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UserError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise UserError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise UserError(f"{path} is truncated: header says {dims}, found {data.size} values")
    return data.reshape(dims)


def load_npy(path: str | Path, setting: str) -> np.ndarray:
    """Load a user's .npy file without pickle: a data file must not be able to run code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{setting}: file not found: {path}")
    try:
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise UserError(f"{setting}: cannot read {path}: not a .npy file (save it with numpy.save)")
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise UserError(f"{setting}: {path} holds Python objects, not numbers; save a numeric array") from None
        raise UserError(f"{setting}: cannot read {path} as .npy: {e}") from None
    except OSError as e:
        raise UserError(f"{setting}: cannot read {path}: {e}") from None


def as_image_batch(array: np.ndarray, source: str) -> np.ndarray:
    """Check an array of images and return it as float32 (N, C, H, W) in [0, 1].

    Accepts (N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3}; uint8 (or integers) in 0-255,
    or floats in 0-1.
    """
    if array.dtype.kind not in "uif":
        raise UserError(f"{source}: images must be numbers, got dtype {array.dtype}")
    if array.size == 0:
        raise UserError(f"{source}: no images (shape {array.shape})")
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4:
        if array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
            array = array.transpose(0, 3, 1, 2)
        elif array.shape[1] not in (1, 3):
            raise UserError(
                f"{source}: shape {array.shape} is not (N,H,W,C) or (N,C,H,W) with 1 or 3 channels"
            )
    else:
        raise UserError(f"{source}: shape {array.shape} is not images; expected (N,H,W), (N,H,W,C) or (N,C,H,W)")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise UserError(f"{source}: images contain NaN or inf values")
        low, high = float(array.min()), float(array.max())
        if low < -1e-6 or high > 1 + 1e-6:
            raise UserError(
                f"{source}: float images must lie in [0, 1], found [{low:g}, {high:g}]; "
                "scale them or save uint8 0-255"
            )
        return np.ascontiguousarray(array, dtype=np.float32)
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > 255:
        raise UserError(f"{source}: integer images must lie in 0-255, found {low}..{high}")
    return np.ascontiguousarray(array, dtype=np.float32) / 255.0


def as_labels(array: np.ndarray, n_images: int, source: str) -> np.ndarray:
    """Check a label vector against its images and return it as int64."""
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise UserError(f"{source}: labels must be a 1-D array, got shape {array.shape}")
    if array.dtype.kind not in "uif":
        raise UserError(f"{source}: labels must be integers, got dtype {array.dtype}")
    if len(array) != n_images:
        raise UserError(f"{source}: {len(array)} labels for {n_images} images; they must match one to one")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or not np.all(array == np.round(array)):
            raise UserError(f"{source}: labels must be whole numbers (found NaN, inf or fractions)")
    return array.astype(np.int64)


def batches(
    tensors: tuple[torch.Tensor, ...], batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """Batches sliced from in-memory tensors (shuffled by `seed`), each batch a tuple like `tensors`.

    Slicing whole batches costs far less than per-sample indexing and collation, which would
    dominate a small model's step on a CPU. Under DDP each of `world_size` processes takes its own
    disjoint shard, every `world_size`-th example of one seeded order (Lightning's DistributedSampler
    would batch these loaders one example at a time, hence use_distributed_sampler=false).
    """
    if world_size > 1:
        order = torch.randperm(len(tensors[0]), generator=torch.Generator().manual_seed(seed)) if shuffle else None
        tensors = tuple((t if order is None else t[order])[rank::world_size] for t in tensors)
    sampler = (
        RandomSampler(tensors[0], generator=torch.Generator().manual_seed(seed)) if shuffle else SequentialSampler(tensors[0])
    )
    return DataLoader(TensorDataset(*tensors), sampler=BatchSampler(sampler, batch_size, False), batch_size=None)


@dataclass
class Images:
    """What a data module loads: fit images (labels optional) and eval images (labels optional)."""

    fit: np.ndarray
    evaluation: np.ndarray
    eval_labels: np.ndarray | None = None
    fit_labels: np.ndarray | None = None
    same: bool = False  # the eval images are the fit images


class ImageDataModule(pl.LightningDataModule):
    """Fit and eval images held in memory; subclasses say where they come from in `load_arrays`."""

    def __init__(
        self,
        batch_size: int = 256,
        fit_limit: int | None = None,
        eval_limit: int | None = None,
        n_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise UserError(f"data.batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.fit_limit = fit_limit
        self.eval_limit = eval_limit
        self.declared_n_classes = n_classes
        self.seed = seed
        self.fit_images: torch.Tensor | None = None
        self.eval_images: torch.Tensor | None = None
        self.eval_labels: np.ndarray | None = None
        self.fit_labels: np.ndarray | None = None
        self.eval_is_fit = False
        # True: training batches end with each image's index in the fit set (models/ista.py warm-starts
        # every image's code from its last one).
        self.with_index = False

    def load_arrays(self) -> Images:
        """The images (and labels), already checked."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.fit_images is not None:
            return
        loaded = self.load_arrays()
        fit, evaluation = loaded.fit[: self.fit_limit], loaded.evaluation[: self.eval_limit]
        labels = None if loaded.eval_labels is None else loaded.eval_labels[: self.eval_limit]
        fit_labels = None if loaded.fit_labels is None else loaded.fit_labels[: self.fit_limit]
        self.eval_is_fit = loaded.same and self.fit_limit == self.eval_limit
        if fit.shape[1:] != evaluation.shape[1:]:
            raise UserError(
                f"fit images are {fit.shape[1:]} (C,H,W) but eval images are {evaluation.shape[1:]}; they must match"
            )
        if len(fit) == 0 or len(evaluation) == 0:
            raise UserError("data.fit_limit / data.eval_limit leave no images")
        self.fit_images = torch.from_numpy(fit)
        self.eval_images = torch.from_numpy(evaluation)
        self.eval_labels = labels
        self.fit_labels = fit_labels
        log.info("data: %d fit and %d eval images of shape %s", len(fit), len(evaluation), tuple(fit.shape[1:]))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        assert self.fit_images is not None, "call setup() first"
        return tuple(self.fit_images.shape[1:])  # type: ignore[return-value]

    @property
    def n_classes(self) -> int | None:
        """The declared class count, else the number of distinct eval labels, else None."""
        if self.declared_n_classes is not None:
            return self.declared_n_classes
        return None if self.eval_labels is None else len(np.unique(self.eval_labels))

    def train_dataloader(self) -> DataLoader:
        """Shuffled batches of (images,), or (images, labels) when the fit images have labels, then the
        indices with `with_index`; this process's shard under DDP."""
        labels = () if self.fit_labels is None else (torch.from_numpy(self.fit_labels),)
        labels += (torch.arange(len(self.fit_images)),) if self.with_index else ()
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        if world_size > 1:
            log.info("rank %d/%d trains on %d fit images", rank, world_size, len(range(rank, len(self.fit_images), world_size)))
        return batches((self.fit_images, *labels), self.batch_size, shuffle=True, seed=self.seed, rank=rank,
                       world_size=world_size)

    def eval_dataloader(self) -> DataLoader:
        """Eval images in order, with their labels when there are any: validation curves and encoding."""
        labels = () if self.eval_labels is None else (torch.from_numpy(self.eval_labels),)
        return batches((self.eval_images, *labels), self.batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader()


class FashionMNIST(ImageDataModule):
    """Fashion-MNIST from its IDX files: fit on the 60k train images, score on the 10k test images."""

    FILES = {
        "fit": "train-images-idx3-ubyte",
        "eval": "t10k-images-idx3-ubyte",
        "labels": "t10k-labels-idx1-ubyte",
    }
    FIT_LABELS = "train-labels-idx1-ubyte"  # needed by classifiers only

    def __init__(self, root: str = "/usr/share/datasets/fashion-mnist", **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()

    def find(self, stem: str) -> Path:
        for name in (stem + ".gz", stem):
            if (self.root / name).is_file():
                return self.root / name
        raise UserError(
            f"data.root: {self.root / stem}[.gz] not found; install Debian's dataset-fashion-mnist "
            "(make install does) or point data.root at a folder with the IDX files"
        )

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        paths = {key: self.find(stem) for key, stem in self.FILES.items()}
        fit = as_image_batch(read_idx(paths["fit"]), str(paths["fit"]))
        evaluation = as_image_batch(read_idx(paths["eval"]), str(paths["eval"]))
        labels = as_labels(read_idx(paths["labels"]), len(evaluation), str(paths["labels"]))
        fit_labels = None
        if (self.root / (self.FIT_LABELS + ".gz")).is_file() or (self.root / self.FIT_LABELS).is_file():
            path = self.find(self.FIT_LABELS)
            fit_labels = as_labels(read_idx(path), len(fit), str(path))
        return Images(fit, evaluation, labels, fit_labels)


class Digits(ImageDataModule):
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes).

    With `eval_fraction=0` (clustering) the model is fit and scored on all of them; otherwise that
    fraction is held out for scoring, stratified by class and drawn by `seed` (classifiers need it).
    """

    def __init__(self, eval_fraction: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= eval_fraction < 1.0:
            raise UserError(f"data.eval_fraction must be in [0, 1), got {eval_fraction}")
        self.eval_fraction = eval_fraction

    def load_arrays(self) -> Images:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        images = (digits.images / 16.0).astype(np.float32)[:, None]
        labels = digits.target.astype(np.int64)
        if self.eval_fraction == 0:
            return Images(images, images, labels, labels, same=True)
        fit, evaluation, fit_labels, eval_labels = train_test_split(
            images, labels, test_size=self.eval_fraction, stratify=labels, random_state=self.seed
        )
        return Images(fit, evaluation, eval_labels, fit_labels)


class NpyImages(ImageDataModule):
    """A user's own images in the assignments' .npy format; eval defaults to the fit images."""

    def __init__(
        self,
        train_path: str | None = None,
        eval_path: str | None = None,
        eval_labels_path: str | None = None,
        train_labels_path: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.train_path = train_path
        self.eval_path = eval_path
        self.eval_labels_path = eval_labels_path
        self.train_labels_path = train_labels_path

    def load_arrays(self) -> Images:
        if not self.train_path:
            raise UserError("data.train_path: set it to a .npy file of images (data=npy data.train_path=...)")
        fit = load_images(self.train_path, "data.train_path")
        evaluation = load_images(self.eval_path, "data.eval_path") if self.eval_path else fit
        labels = load_labels(self.eval_labels_path, "data.eval_labels_path", len(evaluation))
        fit_labels = load_labels(self.train_labels_path, "data.train_labels_path", len(fit))
        if fit_labels is None and not self.eval_path:
            fit_labels = labels  # eval images are the fit images, so are their labels
        return Images(fit, evaluation, labels, fit_labels, same=not self.eval_path)


def load_images(path: str, setting: str) -> np.ndarray:
    return as_image_batch(load_npy(path, setting), f"{setting} ({path})")


def load_labels(path: str | None, setting: str, n_images: int) -> np.ndarray | None:
    return None if not path else as_labels(load_npy(path, setting), n_images, f"{setting} ({path})")
