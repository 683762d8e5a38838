"""Writes Fashion-MNIST as a CIFAR-10 python archive, so CIFAR-shaped runs need no CIFAR download.

  python benchmarks/fmnist_as_cifar.py --out /tmp/fmnist_cifar
  python run.py --config=configs/cifar10lt_ce.py --config.dataset.data_dir=/tmp/fmnist_cifar

The first 5,000 training images of every class (in file order) and all 10,000 test images
(1,000 per class), zero-padded from 28x28 to 32x32 and the gray channel copied to R, G and B,
in `cifar-10-batches-py/` (data_batch_1..5 of 10,000 rows, test_batch, batches.meta): the
shapes and counts of CIFAR-10, read by the same loader as the real archive (and by the
reference's torchvision CIFAR10 class). The normalisation stays CIFAR-10's, as the loader sets
it. Fashion-MNIST comes from the IDX files (Debian's dataset-fashion-mnist by default).
"""

from __future__ import annotations

import argparse
import os
import pickle

import numpy as np

from lt_jax import io_utils
from lt_jax.data import datasets

PER_CLASS = 5000
BATCHES = 5


def cifar_rows(images: np.ndarray) -> np.ndarray:
  """[N, 28, 28, 1] uint8 -> [N, 3072] rows of R, G, B planes of 32x32 (CIFAR's layout)."""
  padded = np.pad(images[..., 0], ((0, 0), (2, 2), (2, 2)))
  return np.repeat(padded[:, None], 3, axis=1).reshape(len(images), -1)


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
  picked = [np.flatnonzero(labels == c)[:per_class] for c in range(10)]
  if min(len(p) for p in picked) < per_class:
    raise SystemExit(f"a class has fewer than {per_class} training images")
  return np.sort(np.concatenate(picked))


def write_pickle(path: str, obj) -> None:
  def write(tmp):
    with open(tmp, "wb") as f:
      pickle.dump(obj, f, protocol=2)
  io_utils.atomic_write(path, write)


def write_batch(path: str, rows: np.ndarray, labels: np.ndarray, name: str) -> None:
  write_pickle(path, {b"batch_label": name.encode(), b"labels": [int(y) for y in labels],
                      b"data": np.ascontiguousarray(rows, np.uint8),
                      b"filenames": [f"{name}_{i}.png".encode() for i in range(len(labels))]})


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True, help="folder to create cifar-10-batches-py in")
  parser.add_argument("--fmnist_dir", default=None, help="Fashion-MNIST IDX folder")
  args = parser.parse_args()
  data = datasets.load("fashion_mnist", args.fmnist_dir)
  folder = os.path.join(args.out, "cifar-10-batches-py")
  train_idx = first_per_class(data.train.labels, PER_CLASS)
  rng = np.random.RandomState(0)  # CIFAR's batches mix the classes; so do these.
  train_idx = train_idx[rng.permutation(len(train_idx))]
  rows, labels = cifar_rows(data.train.images[train_idx]), data.train.labels[train_idx]
  for b, chunk in enumerate(np.array_split(np.arange(len(rows)), BATCHES)):
    write_batch(os.path.join(folder, f"data_batch_{b + 1}"), rows[chunk], labels[chunk],
                f"training batch {b + 1} of {BATCHES}")
  write_batch(os.path.join(folder, "test_batch"), cifar_rows(data.test.images),
              data.test.labels, "testing batch 1 of 1")
  meta = {b"label_names": [n.encode() for n in (
      "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
      "boot")], b"num_cases_per_batch": len(rows) // BATCHES, b"num_vis": 3072}
  write_pickle(os.path.join(folder, "batches.meta"), meta)
  print(f"wrote {len(rows)} training and {len(data.test.labels)} test images to {folder}")


if __name__ == "__main__":
  main()
