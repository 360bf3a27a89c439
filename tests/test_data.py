import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO

from experiments.data import Digits, EpochBatches, FashionMNIST, NpyImages, as_image_batch, as_labels, batches, read_idx
from experiments.errors import UserError

FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


def save(tmp_path: Path, name: str, array: np.ndarray) -> str:
    path = tmp_path / name
    np.save(path, array)
    return str(path)


def npy_module(**paths) -> NpyImages:
    module = NpyImages(**paths)
    module.setup()
    return module


@pytest.mark.parametrize(
    "layout, shape",
    [("NHW", (5, 6, 7)), ("NHWC1", (5, 6, 7, 1)), ("NHWC3", (5, 6, 7, 3)), ("NCHW1", (5, 1, 6, 7)), ("NCHW3", (5, 3, 6, 7))],
)
def test_every_accepted_layout_becomes_nchw(layout, shape):
    channels = 3 if layout.endswith("3") else 1
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=shape, dtype=np.uint8)
    batch = as_image_batch(images, "test")
    assert batch.shape == (5, channels, 6, 7)
    assert batch.dtype == np.float32
    # the pixel at image 2, row 4, column 5, last channel, survives the move
    index = {"NHW": (2, 4, 5), "NHWC1": (2, 4, 5, 0), "NHWC3": (2, 4, 5, 2), "NCHW1": (2, 0, 4, 5), "NCHW3": (2, 2, 4, 5)}
    pixel = images[index[layout]]
    assert batch[2, channels - 1, 4, 5] == pytest.approx(pixel / 255.0)


def test_uint8_and_float_images_of_the_same_picture_agree():
    pixels = np.array([[[0, 128], [255, 64]]], dtype=np.uint8)
    assert np.allclose(as_image_batch(pixels, "u8"), as_image_batch(pixels / 255.0, "float"))


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((0, 8, 8)), "no images"),
        (np.zeros(10), "not images"),
        (np.zeros((2, 5, 8, 8, 1)), "not images"),
        (np.zeros((2, 5, 8, 8)), "1 or 3 channels"),
        (np.zeros((28, 28, 3), dtype=np.uint8), r"ambiguous.*data.layout=NHW"),
        (np.zeros((4, 3, 32, 3), dtype=np.uint8), r"fits both NCHW and NHWC; set data.layout"),
        (np.zeros((4, 1, 8, 1), dtype=np.uint8), r"fits both NCHW and NHWC"),
        (np.array([[[np.nan, 0.0]]]), "NaN or inf"),
        (np.array([[[np.inf, 0.0]]]), "NaN or inf"),
        (np.full((1, 2, 2), 200.0), r"must lie in \[0, 1\]"),
        (np.full((1, 2, 2), 300, dtype=np.int32), "0-255"),
        (np.array([[["a"]]]), "must be numbers"),
    ],
)
def test_bad_image_arrays_are_refused_with_a_reason(array, message):
    with pytest.raises(UserError, match=message):
        as_image_batch(array, "test")


@pytest.mark.parametrize(
    "shape, layout, expected",
    [((28, 28, 3), "NHW", (28, 1, 28, 3)), ((1, 28, 28, 3), "NHWC", (1, 3, 28, 28)), ((4, 3, 32, 3), "NCHW", (4, 3, 32, 3)),
     ((4, 3, 32, 3), "NHWC", (4, 3, 3, 32))],
)
def test_an_ambiguous_shape_is_read_as_the_layout_the_user_names(shape, layout, expected):
    images = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) % 256
    batch = as_image_batch(images.astype(np.uint8), "test", layout)
    assert batch.shape == expected


def test_a_layout_that_does_not_fit_the_shape_is_refused():
    with pytest.raises(UserError, match="is not NHWC"):
        as_image_batch(np.zeros((4, 8, 8), dtype=np.uint8), "test", "NHWC")
    with pytest.raises(UserError, match="data.layout='HWC'"):
        as_image_batch(np.zeros((4, 8, 8), dtype=np.uint8), "test", "HWC")


def test_labels_must_match_images_and_be_whole_numbers():
    assert as_labels(np.array([[1], [2]]), 2, "l").tolist() == [1, 2]
    with pytest.raises(UserError, match="3 labels for 2 images"):
        as_labels(np.array([1, 2, 3]), 2, "l")
    with pytest.raises(UserError, match="whole numbers"):
        as_labels(np.array([0.5, 1.0]), 2, "l")
    with pytest.raises(UserError, match="whole numbers"):
        as_labels(np.array([np.nan, 1.0]), 2, "l")
    with pytest.raises(UserError, match="fit 64-bit integers"):
        as_labels(np.array([1, 2**63 + 5], dtype=np.uint64), 2, "l")
    with pytest.raises(UserError, match="fit 64-bit integers"):
        as_labels(np.array([1.0, 1e19]), 2, "l")


def test_npy_module_loads_fit_eval_and_labels(tmp_path):
    fit = save(tmp_path, "fit.npy", np.zeros((6, 8, 8, 3), dtype=np.uint8))
    ev = save(tmp_path, "eval.npy", np.ones((4, 3, 8, 8), dtype=np.float32))
    labels = save(tmp_path, "labels.npy", np.array([0, 1, 1, 0]))
    module = npy_module(train_path=fit, eval_path=ev, eval_labels_path=labels)
    assert module.fit_images.shape == (6, 3, 8, 8) and module.eval_images.shape == (4, 3, 8, 8)
    assert module.eval_labels.tolist() == [0, 1, 1, 0]
    assert module.n_classes == 2


def test_npy_module_scores_the_fit_images_when_no_eval_path_is_given(tmp_path):
    fit = save(tmp_path, "fit.npy", np.zeros((6, 8, 8), dtype=np.uint8))
    module = npy_module(train_path=fit)
    assert module.eval_images.shape == (6, 1, 8, 8) and module.eval_labels is None and module.n_classes is None


def test_npy_module_names_the_setting_of_a_missing_file(tmp_path):
    with pytest.raises(UserError, match="data.eval_path: file not found"):
        npy_module(train_path=save(tmp_path, "fit.npy", np.zeros((2, 4, 4))), eval_path=str(tmp_path / "nope.npy"))


def test_npy_module_refuses_pickled_object_arrays_without_running_them(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="holds Python objects"):
        npy_module(train_path=str(path))


def test_npy_module_refuses_a_file_that_is_not_npy(tmp_path):
    path = tmp_path / "garbage.npy"
    path.write_bytes(b"not an array at all")
    with pytest.raises(UserError, match="cannot read"):
        npy_module(train_path=str(path))


def test_npy_module_refuses_labels_of_the_wrong_length(tmp_path):
    fit = save(tmp_path, "fit.npy", np.zeros((6, 4, 4)))
    labels = save(tmp_path, "labels.npy", np.arange(5))
    with pytest.raises(UserError, match="5 labels for 6 images"):
        npy_module(train_path=fit, eval_labels_path=labels)


def test_npy_module_refuses_fit_and_eval_images_of_different_shapes(tmp_path):
    fit = save(tmp_path, "fit.npy", np.zeros((6, 4, 4)))
    ev = save(tmp_path, "eval.npy", np.zeros((6, 5, 5)))
    with pytest.raises(UserError, match="must match"):
        npy_module(train_path=fit, eval_path=ev)


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_reads_gzipped_and_plain_files(tmp_path, compress):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("x.idx.gz" if compress else "x.idx")
    write_idx(path, array, compress)
    assert np.array_equal(read_idx(path), array)


def test_read_idx_refuses_truncated_files(tmp_path):
    path = tmp_path / "x.idx"
    write_idx(path, np.zeros((4, 4, 4)), compress=False)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(UserError, match="truncated"):
        read_idx(path)


def test_fashion_mnist_module_reads_a_folder_of_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (7, 28, 28)), compress=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (5, 28, 28)), compress=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 1, 0]), compress=False)
    module = FashionMNIST(root=str(tmp_path))
    module.setup()
    assert module.fit_images.shape == (7, 1, 28, 28) and module.eval_images.shape == (5, 1, 28, 28)
    assert module.n_classes == 3


def fashion_folder(folder: Path, n_fit: int = 40, n_eval: int = 20) -> Path:
    """A folder of Fashion-MNIST's four IDX files, random images, labels cycling through the ten classes."""
    rng = np.random.default_rng(0)
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_fit, 28, 28)), compress=True)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(n_fit) % 10, compress=True)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_eval, 28, 28)), compress=True)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(n_eval) % 10, compress=True)
    return folder


def test_fashion_mnist_split_all_fits_and_scores_every_image_as_n2d_does(tmp_path):
    module = FashionMNIST(root=str(fashion_folder(tmp_path)), split="all")
    module.setup()
    assert module.fit_images.shape == module.eval_images.shape == (60, 1, 28, 28)
    assert torch.equal(module.fit_images, module.eval_images) and module.eval_overlaps_fit
    assert module.eval_labels.tolist() == list(np.arange(40) % 10) + list(np.arange(20) % 10)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match="data.split=all scores the training images too, and .* has no train-labels"):
        FashionMNIST(root=str(tmp_path), split="all").setup()
    with pytest.raises(ValueError, match="split='every' is not one of test, all"):
        FashionMNIST(root=str(tmp_path), split="every")


def test_the_imbalanced_fashion_mnist_script_keeps_each_class_one_fraction_in_train_and_test(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("script", REPO / "scripts" / "imbalanced_fashion_mnist.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main([str(tmp_path / "out"), "--root", str(fashion_folder(tmp_path, 200, 200)), "--smallest", "0.2"])
    out = tmp_path / "out"
    train, train_labels = np.load(out / "train.npy"), np.load(out / "train_labels.npy")
    test, test_labels = np.load(out / "test.npy"), np.load(out / "test_labels.npy")
    assert train.dtype == test.dtype == np.uint8 and train.shape == (len(train_labels), 28, 28) == test.shape
    kept = np.bincount(train_labels, minlength=10) / 20  # of the 20 images of each class
    assert np.array_equal(kept, np.bincount(test_labels, minlength=10) / 20), "a class keeps one fraction of both"
    assert np.array_equal(np.sort(kept)[::-1], np.round(np.linspace(1.0, 0.2, 10) * 20) / 20), "1.0 down to 0.2"
    assert (out / "class_names.txt").read_text().splitlines()[0] == "T-shirt/top"
    assert "data=npy data.train_path=" in capsys.readouterr().out


def test_fashion_mnist_module_says_how_to_get_missing_files(tmp_path):
    with pytest.raises(UserError, match="dataset-fashion-mnist"):
        FashionMNIST(root=str(tmp_path)).setup()


@pytest.mark.skipif(not FASHION_ROOT.is_dir(), reason="Debian's dataset-fashion-mnist is not installed (make install adds it)")
def test_fashion_mnist_from_debian_has_60k_fit_and_10k_labelled_eval_images():
    module = FashionMNIST(root=str(FASHION_ROOT))
    module.setup()
    assert module.fit_images.shape == (60000, 1, 28, 28)
    assert module.eval_images.shape == (10000, 1, 28, 28)
    assert np.bincount(module.eval_labels).tolist() == [1000] * 10
    assert 0.0 <= float(module.fit_images.min()) and float(module.fit_images.max()) == 1.0


def epoch_orders(sampler: EpochBatches, epochs: range) -> list[list[int]]:
    orders = []
    for epoch in epochs:
        sampler.set_epoch(epoch)
        orders.append([i for batch in sampler for i in batch])
    return orders


def test_each_epochs_order_comes_from_the_seed_and_the_epoch_alone():
    straight = epoch_orders(EpochBatches(50, 8, shuffle=True, seed=3), range(4))
    resumed = epoch_orders(EpochBatches(50, 8, shuffle=True, seed=3), range(2, 4))  # a new sampler, as after a resume
    assert resumed == straight[2:], "epoch 2 has epoch 2's order, not epoch 0's"
    assert straight[0] != straight[1] and sorted(straight[1]) == list(range(50))
    assert epoch_orders(EpochBatches(50, 8, shuffle=True, seed=4), range(1)) != straight[:1]
    assert epoch_orders(EpochBatches(5, 2, shuffle=False), range(2)) == [[0, 1, 2, 3, 4]] * 2


@pytest.mark.parametrize("n, batch_size, world_size", [(513, 256, 2), (10, 3, 4), (7, 8, 3), (1797, 128, 2)])
def test_ddp_shards_give_every_rank_the_same_number_of_batches_and_cover_every_image(n, batch_size, world_size):
    shards = [EpochBatches(n, batch_size, shuffle=True, seed=0, rank=r, world_size=world_size) for r in range(world_size)]
    batch_counts = [len(list(iter(s))) for s in shards]
    assert len(set(batch_counts)) == 1, f"uneven batches per rank {batch_counts}: a collective would wait forever"
    assert batch_counts[0] == len(shards[0])
    seen = [i for s in shards for batch in s for i in batch]
    assert set(seen) == set(range(n)) and len(seen) == -(-n // world_size) * world_size, "padded, as DistributedSampler"


def test_training_batches_follow_the_seed():
    def first_batch(seed):
        import torch

        return next(iter(batches((torch.arange(32),), 4, shuffle=True, seed=seed)))[0].tolist()

    assert first_batch(0) == first_batch(0)
    assert first_batch(0) != first_batch(1)


def test_digits_fit_and_eval_share_images_whatever_the_limits():
    for limits in ({}, {"eval_limit": 500}, {"fit_limit": 100, "eval_limit": 500}):
        module = Digits(**limits)
        module.setup()
        assert module.eval_overlaps_fit, limits
    held_out = Digits(eval_fraction=0.3, eval_limit=100)
    held_out.setup()
    assert not held_out.eval_overlaps_fit


def test_npy_eval_path_naming_the_train_file_shares_its_images(tmp_path):
    fit = save(tmp_path, "fit.npy", np.zeros((6, 4, 4)))
    assert npy_module(train_path=fit, eval_path=str(tmp_path / "." / "fit.npy")).eval_overlaps_fit
    other = save(tmp_path, "other.npy", np.zeros((6, 4, 4)))
    assert not npy_module(train_path=fit, eval_path=other).eval_overlaps_fit


def test_the_source_digest_follows_the_files_content_not_their_names(tmp_path):
    path = save(tmp_path, "fit.npy", np.zeros((6, 4, 4)))
    before = NpyImages(train_path=path).source_digest
    assert NpyImages(train_path=path).source_digest == before
    np.save(path, np.ones((6, 4, 4)))  # regenerated under the same name
    assert NpyImages(train_path=path).source_digest != before
    assert Digits().source_digest == Digits().source_digest
