"""scikit-learn's 8x8 digits written out as a folder of one's own images, so that
`dataset.name=image_folder` can be tried with no download:

  python -m lt_jax.data.example_folder /tmp/my_digits

writes PNG files in the layout the image_folder dataset reads:

  train/<digit>/*.png   a long-tailed subset of the 1,258 training digits (rho 10, the largest
                        class 100 images), drawn by the reference's rule with seed 0
  test/<digit>/*.png    the 539 test digits (balanced)
  unlabeled/*.png       the training digits the subset left out, without labels: a pool for
                        semi.pool_source=image_folder
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image

from lt_jax.data import longtail, sources
from lt_jax.errors import DataError


def write_digits_folder(root: str, imbalance_ratio: float = 10.0, img_max: int = 100,
                        seed: int = 0) -> dict[str, int]:
  """Writes the folder (refusing one that already holds files); returns the images written
  per part."""
  root = os.path.abspath(os.path.expanduser(root))
  if os.path.isdir(root) and os.listdir(root):
    raise DataError(f"{root} is not empty; name a new folder (nothing there is overwritten).")
  digits = sources.read_digits(None, None, {})
  train = digits.train
  counts = longtail.class_counts(img_max, 10, "exp", 1.0 / imbalance_ratio)
  picked = longtail.longtail_indices(train.labels, counts, seed=seed)
  left_out = np.setdiff1d(np.arange(len(train.labels)), picked)
  for index in picked:
    _save(train.images[index], os.path.join(root, "train", str(train.labels[index]),
                                            f"{index:04d}.png"))
  for index, (image, label) in enumerate(zip(digits.test.images, digits.test.labels)):
    _save(image, os.path.join(root, "test", str(label), f"{index:04d}.png"))
  for index in left_out:
    _save(train.images[index], os.path.join(root, "unlabeled", f"{index:04d}.png"))
  return {"train": len(picked), "test": len(digits.test.labels), "unlabeled": len(left_out)}


def _save(image: np.ndarray, path: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(image[..., 0], "L").save(path)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("folder", help="a new (or empty) folder to write the images into")
  root = parser.parse_args().folder
  written = write_digits_folder(root)
  print(f"wrote {written['train']} long-tailed training, {written['test']} test and "
        f"{written['unlabeled']} unlabeled digits under {os.path.abspath(root)}")
  print("train on it: python run.py --config=configs/image_folder.py "
        f"--config.dataset.data_dir={root} --config.augment.name=none")


if __name__ == "__main__":
  main()
