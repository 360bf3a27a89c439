"""Fashion-MNIST with classes of unequal sizes, in the `.npy` format `data=npy` reads: data no recipe was tuned on.

    python scripts/imbalanced_fashion_mnist.py OUT_DIR [--seed 0] [--smallest 0.2]

Each class keeps a fraction of its training and of its test images (the same fraction in both), from 1.0 for one
class down to `--smallest` for another, evenly spaced; which class keeps which fraction, and which of its images,
is drawn by `--seed`. Writes train.npy, train_labels.npy, test.npy, test_labels.npy and class_names.txt to OUT_DIR,
and prints the command that clusters it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from experiments.data import FashionMNIST


def fractions(n_classes: int, smallest: float, rng: np.random.Generator) -> np.ndarray:
    """Each class's kept fraction: 1.0 down to `smallest`, evenly spaced, in an order drawn by `rng`."""
    return rng.permutation(np.linspace(1.0, smallest, n_classes))


def keep(labels: np.ndarray, kept: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The indices of the images kept: of each class's images, its fraction `kept[class]`, drawn by `rng`, in order."""
    chosen = [rng.choice(np.flatnonzero(labels == c), size=round(kept[c] * (labels == c).sum()), replace=False)
              for c in range(len(kept))]
    return np.sort(np.concatenate(chosen))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write the .npy files to")
    parser.add_argument("--seed", type=int, default=0, help="draws which class keeps which fraction, and the images")
    parser.add_argument("--smallest", type=float, default=0.2, help="the smallest class's kept fraction (0, 1]")
    parser.add_argument("--root", default="/usr/share/datasets/fashion-mnist", help="Fashion-MNIST's IDX files")
    args = parser.parse_args(argv)
    if not 0 < args.smallest <= 1:
        parser.error(f"--smallest={args.smallest} must be a fraction in (0, 1]")
    data = FashionMNIST(root=args.root)
    data.setup()
    rng = np.random.default_rng(args.seed)
    kept = fractions(len(data.CLASS_NAMES), args.smallest, rng)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, images, labels in (("train", data.fit_images, data.fit_labels), ("test", data.eval_images, data.eval_labels)):
        rows = keep(labels, kept, rng)
        np.save(args.out / f"{name}.npy", np.round(images[rows, 0].numpy() * 255).astype(np.uint8))
        np.save(args.out / f"{name}_labels.npy", labels[rows])
        print(f"{name}: {len(rows)} images, per class {np.bincount(labels[rows]).tolist()}")
    (args.out / "class_names.txt").write_text("\n".join(data.CLASS_NAMES) + "\n")
    names = ",".join(f'"{n}"' for n in data.CLASS_NAMES)
    print(f"python -m experiments +recipe=random_conv_pca data=npy data.train_path={args.out / 'train.npy'} "
          f"data.eval_path={args.out / 'test.npy'} data.eval_labels_path={args.out / 'test_labels.npy'} "
          f"'data.class_names=[{names}]'")


if __name__ == "__main__":
    main()
