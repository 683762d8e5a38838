"""A small tree of real JPEGs (scikit-learn's digits, resized) with ImageNet-LT-format split
lists, for the tests of the host input pipeline and of training from it."""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image

from lt_jax.data.sources import digits_arrays


def write_tree(root: pathlib.Path, counts: dict[str, tuple[int, ...]],
               prefix: str = "ImageNet_LT", size: tuple[int, int] = (48, 40),
               unlisted: dict[str, tuple[int, ...]] | None = None) -> pathlib.Path:
  """Writes `<root>/<split>/c<label>/<i>.JPEG` and `<root>/<prefix>_<split>.txt` (`<split>.txt`
  with an empty prefix) for each
  split, `counts[split][c]` images of digit c (different digits in every split), and
  `unlisted[split][c]` more of digit c in the same folders that no list names; returns
  root, which is both the image root and the lists' folder."""
  images_0_16, targets = digits_arrays()  # scikit-learn's digits, 0..16
  used = {c: 0 for c in range(10)}
  jobs = [(split, n, True) for split, n in counts.items()]
  jobs += [(split, n, False) for split, n in (unlisted or {}).items()]
  for split, per_class, listed in jobs:
    rows = []
    for label, count in enumerate(per_class):
      picks = np.flatnonzero(targets == label)[used[label]:used[label] + count]
      assert len(picks) == count, f"digits has too few images of class {label}"
      used[label] += count
      for i in picks:
        path = root / split / f"c{label}" / f"{i}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = (images_0_16[i] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels).resize(size).convert("RGB").save(path)
        rows.append(f"{split}/c{label}/{i}.JPEG {label}")
    name = f"{prefix}_{split}.txt" if prefix else f"{split}.txt"  # A user's own: train.txt.
    if listed:
      (root / name).write_text("\n".join(rows) + "\n")
  return root
