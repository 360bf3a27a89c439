"""Data modules: where the images come from, checked and turned into float (N, C, H, W) in [0, 1].

Every module yields *fit* images (to train the model, labels not needed) and *eval* images (encoded,
clustered and scored, with labels when there are any).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

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


LAYOUTS = ("auto", "NHW", "NHWC", "NCHW")
CLASS_SIZES = ("equal", "none")  # what a data group declares of its classes' sizes
EQUAL_WITHIN = 1.25  # classes declared of equal size: the largest at most this times the smallest, where labels show


def as_image_batch(array: np.ndarray, source: str, layout: str = "auto") -> np.ndarray:
    """Check an array of images and return it as float32 (N, C, H, W) in [0, 1].

    `layout` is NHW, NHWC or NCHW (C 1 or 3), or auto: read from the shape where only one reading fits.
    A shape that fits two is refused rather than guessed: (28, 28, 3) may be 28 grey images or one colour
    image, (N, 3, 32, 3) may be NCHW or NHWC. Pixels are uint8 (or integers) in 0-255, or floats in 0-1.
    """
    if layout not in LAYOUTS:
        raise UserError(f"data.layout={layout!r} is not one of {', '.join(LAYOUTS)}")
    if array.dtype.kind not in "uif":
        raise UserError(f"{source}: images must be numbers, got dtype {array.dtype}")
    if array.size == 0:
        raise UserError(f"{source}: no images (shape {array.shape})")
    layout = image_layout(array.shape, source) if layout == "auto" else layout
    expected_ndim = 3 if layout == "NHW" else 4
    if array.ndim != expected_ndim:
        raise UserError(f"{source}: shape {array.shape} is not {layout} (data.layout={layout})")
    channels = {"NHW": 1, "NHWC": array.shape[-1], "NCHW": array.shape[1]}[layout]
    if channels not in (1, 3):
        raise UserError(f"{source}: shape {array.shape} as {layout} has {channels} channels; images have 1 or 3")
    array = {"NHW": lambda a: a[:, None], "NHWC": lambda a: a.transpose(0, 3, 1, 2), "NCHW": lambda a: a}[layout](array)
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


def image_layout(shape: tuple[int, ...], source: str) -> str:
    """NHW, NHWC or NCHW: the one layout that `shape` fits; a UserError naming data.layout when none or two fit."""
    if len(shape) == 3:
        if shape[-1] in (1, 3):  # (28, 28, 3): 28 images of 28x3, or one colour image?
            raise UserError(
                f"{source}: shape {shape} is ambiguous: {shape[0]} images of {shape[1]}x{shape[2]} pixels, or one "
                f"{shape[-1]}-channel image; set data.layout=NHW, or save one image as {(1, *shape)} with data.layout=NHWC"
            )
        return "NHW"
    if len(shape) == 4:
        channels_first, channels_last = shape[1] in (1, 3), shape[-1] in (1, 3)
        if channels_first and channels_last:
            raise UserError(f"{source}: shape {shape} fits both NCHW and NHWC; set data.layout=NCHW or data.layout=NHWC")
        if channels_first:
            return "NCHW"
        if channels_last:
            return "NHWC"
        raise UserError(f"{source}: shape {shape} is not (N,H,W,C) or (N,C,H,W) with 1 or 3 channels")
    raise UserError(f"{source}: shape {shape} is not images; expected (N,H,W), (N,H,W,C) or (N,C,H,W)")


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
    if array.dtype.kind == "f" and (not np.isfinite(array).all() or not np.all(array == np.round(array))):
        raise UserError(f"{source}: labels must be whole numbers (found NaN, inf or fractions)")
    if array.size and (array.min() < np.iinfo(np.int64).min or array.max() > np.iinfo(np.int64).max):
        raise UserError(f"{source}: labels must fit 64-bit integers, found {array.min()}..{array.max()}")
    return array.astype(np.int64)


class EpochBatches(Sampler[list[int]]):
    """Batches of indices, shuffled per epoch in an order drawn from (seed, epoch).

    Lightning calls `set_epoch` before each epoch (as it does for DistributedSampler), so epoch k has the
    same order whether the training ran straight through or was resumed from a checkpoint after epoch k-1.
    Under DDP each of `world_size` processes takes every `world_size`-th index of one order, padded with
    its first indices to a multiple of `world_size` (as DistributedSampler pads): every rank gets the same
    number of batches, so no collective waits for a partner that has run out.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, in order."""
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n) if self.shuffle else np.arange(self.n)
        padding = -self.n % self.world_size
        order = np.concatenate([order, np.resize(order, padding)]) if padding else order
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        indices = self.indices().tolist()
        for start in range(0, len(indices), self.batch_size):
            yield indices[start : start + self.batch_size]

    def __len__(self) -> int:
        per_rank = (self.n + self.world_size - 1) // self.world_size  # rounded up, as indices() pads
        return (per_rank + self.batch_size - 1) // self.batch_size


def batches(
    tensors: tuple[torch.Tensor, ...], batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """Batches sliced from in-memory tensors, each batch a tuple like `tensors` (see EpochBatches).

    Slicing whole batches costs far less than per-sample indexing and collation, which would dominate a
    small model's step on a CPU (and Lightning's DistributedSampler would batch one example at a time,
    hence use_distributed_sampler=false).
    """
    sampler = EpochBatches(len(tensors[0]), batch_size, shuffle, seed, rank, world_size)
    return DataLoader(TensorDataset(*tensors), sampler=sampler, batch_size=None)


@dataclass
class Images:
    """What a data module loads: fit images (labels optional) and eval images (labels optional)."""

    fit: np.ndarray
    evaluation: np.ndarray
    eval_labels: np.ndarray | None = None
    fit_labels: np.ndarray | None = None
    same: bool = False  # the eval images are the fit images (whatever the limits, their first ones are shared)


class ImageDataModule(pl.LightningDataModule):
    """Fit and eval images held in memory; subclasses say where they come from in `load_arrays`."""

    def __init__(
        self,
        batch_size: int = 256,
        fit_limit: int | None = None,
        eval_limit: int | None = None,
        n_classes: int | None = None,
        seed: int = 0,
        layout: str = "auto",
        class_names: list[str] | None = None,
        class_sizes: str = "none",
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for parameter, limit in (("fit_limit", fit_limit), ("eval_limit", eval_limit)):
            if limit is not None and limit < 1:
                raise ValueError(f"{parameter} must be at least 1 (or null for all images), got {limit}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout={layout!r} is not one of {', '.join(LAYOUTS)}")
        self.layout = layout
        self.batch_size = batch_size
        self.fit_limit = fit_limit
        self.eval_limit = eval_limit
        self.declared_n_classes = n_classes
        self.class_names = None if class_names is None else [str(name) for name in class_names]
        if class_sizes not in CLASS_SIZES:
            raise ValueError(f"class_sizes={class_sizes!r} is not one of {', '.join(CLASS_SIZES)}")
        self.class_sizes = class_sizes
        self.seed = seed
        self.fit_images: torch.Tensor | None = None
        self.eval_images: torch.Tensor | None = None
        self.eval_labels: np.ndarray | None = None
        self.fit_labels: np.ndarray | None = None
        self.eval_overlaps_fit = False  # some eval images are fit images: a classifier must not be scored on them

    def load_arrays(self) -> Images:
        """The images (and labels), already checked."""
        raise NotImplementedError

    def source_files(self) -> list[Path]:
        """The files the images and labels are read from (none for bundled data)."""
        return []

    @cached_property
    def source_digest(self) -> str:
        """A hash of the content of `source_files`: a regenerated file is other data, whatever its name."""
        digest = hashlib.sha256()
        for path in self.source_files():
            digest.update(str(path).encode() + b"\0")
            try:
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
            except OSError:
                digest.update(b"<unreadable>")  # loading it will say why
        return digest.hexdigest()[:20]

    def setup(self, stage: str | None = None) -> None:
        if self.fit_images is not None:
            return
        loaded = self.load_arrays()
        fit, evaluation = loaded.fit[: self.fit_limit], loaded.evaluation[: self.eval_limit]
        labels = None if loaded.eval_labels is None else loaded.eval_labels[: self.eval_limit]
        fit_labels = None if loaded.fit_labels is None else loaded.fit_labels[: self.fit_limit]
        # Limits keep the first images of each set: two limits of the same array always share its first ones.
        self.eval_overlaps_fit = loaded.same
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
        self.check_class_names()
        self.check_class_sizes()
        log.info("data: %d fit and %d eval images of shape %s", len(fit), len(evaluation), tuple(fit.shape[1:]))

    def check_class_names(self) -> None:
        """Class names name labels 0, 1, ...: every label must have one."""
        if self.class_names is None:
            return
        for setting, labels in (("eval", self.eval_labels), ("fit", self.fit_labels)):
            if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= len(self.class_names)):
                raise UserError(f"data.class_names names {len(self.class_names)} classes (labels 0 to "
                                f"{len(self.class_names) - 1}), and the {setting} labels run from {labels.min()} to "
                                f"{labels.max()}; give one name per label, in the labels' order")

    def check_class_sizes(self) -> None:
        """Classes declared of equal size (`class_sizes=equal`, which a job may assume) must be so where labels
        show it: the largest class at most a quarter larger than the smallest. Of a whole set only: the declaration
        is the data set's, and the first images a limit keeps are any mix (50 digits: 3 to 7 a class)."""
        if self.class_sizes != "equal":
            return
        for setting, labels, limit in (("eval", self.eval_labels, self.eval_limit), ("fit", self.fit_labels,
                                                                                     self.fit_limit)):
            counts = None if labels is None or limit is not None else np.unique(labels, return_counts=True)[1]
            if counts is not None and len(counts) > 1 and counts.max() > EQUAL_WITHIN * counts.min():
                raise UserError(f"data.class_sizes=equal, and the {setting} labels' classes hold {counts.min()} to "
                                f"{counts.max()} images; use data.class_sizes=none")

    def class_name(self, label: int) -> str:
        """The name of class `label`: its entry in `class_names` (labels 0, 1, ...), else the number itself."""
        if self.class_names is not None and 0 <= label < len(self.class_names):
            return self.class_names[label]
        return str(label)

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
        """Shuffled batches of (images, index): float32 (B, C, H, W) images in [0, 1] and each one's position in the
        fit images (int64), the batch every model receives (models/protocols.py); this process's shard under DDP.
        No labels: the encoders learn without them."""
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        loader = batches((self.fit_images, torch.arange(len(self.fit_images))), self.batch_size, shuffle=True,
                         seed=self.seed, rank=rank, world_size=world_size)
        if world_size > 1:
            log.info("rank %d/%d trains on %d fit images in %d batches", rank, world_size,
                     len(loader.sampler.indices()), len(loader.sampler))
        return loader

    def val_dataloader(self) -> DataLoader:
        """Batches of (images, index) of the eval images, in order: the validation curves."""
        return batches((self.eval_images, torch.arange(len(self.eval_images))), self.batch_size, shuffle=False)


class FashionMNIST(ImageDataModule):
    """Fashion-MNIST from its IDX files: fit on the 60k train images, score on the 10k test images (`split="test"`),
    or fit and score on all 70,000 (`split="all"`, N2D's protocol); its classes named as the dataset names them."""

    CLASS_NAMES: ClassVar[list[str]] = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                        "Sneaker", "Bag", "Ankle boot"]

    FILES: ClassVar[dict[str, str]] = {
        "fit": "train-images-idx3-ubyte",
        "eval": "t10k-images-idx3-ubyte",
        "labels": "t10k-labels-idx1-ubyte",
    }
    FIT_LABELS = "train-labels-idx1-ubyte"  # needed by classifiers only

    SPLITS = ("test", "all")

    def __init__(self, root: str = "/usr/share/datasets/fashion-mnist", split: str = "test",
                 class_names: list[str] | None = None, **kwargs) -> None:
        super().__init__(class_names=self.CLASS_NAMES if class_names is None else class_names, **kwargs)
        if split not in self.SPLITS:
            raise ValueError(f"split={split!r} is not one of {', '.join(self.SPLITS)}")
        self.root = Path(root).expanduser()
        self.split = split

    def find(self, stem: str) -> Path:
        for name in (stem + ".gz", stem):
            if (self.root / name).is_file():
                return self.root / name
        raise UserError(
            f"data.root: {self.root / stem}[.gz] not found; install Debian's dataset-fashion-mnist "
            "(make install does) or point data.root at a folder with the IDX files"
        )

    def source_files(self) -> list[Path]:
        return [self.root / name for stem in (*self.FILES.values(), self.FIT_LABELS) for name in (stem + ".gz", stem)
                if (self.root / name).is_file()]

    def load_arrays(self) -> Images:
        paths = {key: self.find(stem) for key, stem in self.FILES.items()}
        fit = as_image_batch(read_idx(paths["fit"]), str(paths["fit"]))
        evaluation = as_image_batch(read_idx(paths["eval"]), str(paths["eval"]))
        labels = as_labels(read_idx(paths["labels"]), len(evaluation), str(paths["labels"]))
        fit_labels = None
        if (self.root / (self.FIT_LABELS + ".gz")).is_file() or (self.root / self.FIT_LABELS).is_file():
            path = self.find(self.FIT_LABELS)
            fit_labels = as_labels(read_idx(path), len(fit), str(path))
        if self.split == "all":  # N2D's protocol: every image fitted and scored
            if fit_labels is None:
                raise UserError(f"data.split=all scores the training images too, and {self.root} has no "
                                f"{self.FIT_LABELS}[.gz]")
            images, every_label = np.concatenate([fit, evaluation]), np.concatenate([fit_labels, labels])
            return Images(images, images, every_label, every_label, same=True)
        return Images(fit, evaluation, labels, fit_labels)


class Digits(ImageDataModule):
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes).

    With `eval_fraction=0` (clustering) the model is fit and scored on all of them; otherwise that
    fraction is held out for scoring, stratified by class and drawn by `seed` (classifiers need it).
    """

    def __init__(self, eval_fraction: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
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

    def source_files(self) -> list[Path]:
        paths = (self.train_path, self.eval_path, self.eval_labels_path, self.train_labels_path)
        return [Path(p).expanduser() for p in paths if p]

    def eval_is_train_file(self) -> bool:
        """No eval_path, or one that names the train file itself."""
        if not self.eval_path:
            return True
        train, evaluation = Path(self.train_path).expanduser(), Path(self.eval_path).expanduser()
        return train.exists() and evaluation.exists() and train.samefile(evaluation)

    def load_arrays(self) -> Images:
        if not self.train_path:
            raise UserError("data.train_path: set it to a .npy file of images (data=npy data.train_path=...)")
        fit = load_images(self.train_path, "data.train_path", self.layout)
        same = self.eval_is_train_file()
        evaluation = fit if same else load_images(self.eval_path, "data.eval_path", self.layout)
        labels = load_labels(self.eval_labels_path, "data.eval_labels_path", len(evaluation))
        fit_labels = load_labels(self.train_labels_path, "data.train_labels_path", len(fit))
        if fit_labels is None and same:
            fit_labels = labels  # eval images are the fit images, so are their labels
        return Images(fit, evaluation, labels, fit_labels, same=same)


def load_images(path: str, setting: str, layout: str = "auto") -> np.ndarray:
    return as_image_batch(load_npy(path, setting), f"{setting} ({path})", layout)


def load_labels(path: str | None, setting: str, n_images: int) -> np.ndarray | None:
    return None if not path else as_labels(load_npy(path, setting), n_images, f"{setting} ({path})")
