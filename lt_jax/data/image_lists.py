"""The split lists of ImageNet-LT and iNaturalist 2018: `relative/path label` per line, over
the user's image folder.

The lists are the ones the reference reads (`imagenet_inat/data/<name>/<name>_<split>.txt` at
760f039): `ImageNet_LT_train.txt`, `_val.txt`, `_test.txt` (Liu et al. 2019: 115,846 training
images in 1,000 classes, 20 validation and 50 test images per class) and
`iNaturalist18_train.txt`, `_val.txt` (437,513 training images in 8,142 classes, 3 validation
images per class, the validation split serving as the test set). Paths are relative to the
image root (the ImageNet or iNaturalist folder holding `train/`, `val/` ...). Their classes,
splits and list names are the datasets' registry entries (`data/datasets.py`).

Every problem names the file and the line: a missing list, a line that is not `path label`, a
label outside [0, classes), an image that is missing. An image that exists but cannot be
decoded is reported with its list line when it is read (`read_image`).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from lt_jax.errors import DataError


@dataclasses.dataclass(frozen=True)
class ImageList:
  """A split: absolute image paths, int64 labels, and where each came from (for messages)."""

  list_path: str
  paths: np.ndarray  # object array of str
  labels: np.ndarray  # int64 [N]
  lines: np.ndarray  # int64 [N]: the 1-based line of each image in list_path; 0: listed by
  # no file (an unlabeled pool's image, labeled by a model)

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, indices) -> ImageList:
    """The rows at integer `indices`, in that order."""
    indices = np.asarray(indices, np.int64)
    return ImageList(self.list_path, self.paths[indices], self.labels[indices],
                     self.lines[indices])

  def with_rows(self, more: ImageList) -> ImageList:
    """This list followed by `more`'s rows (messages still name this list's file)."""
    return ImageList(self.list_path, np.concatenate([self.paths, more.paths]),
                     np.concatenate([self.labels, more.labels]),
                     np.concatenate([self.lines, more.lines]))

  def class_counts(self, num_classes: int) -> np.ndarray:
    return np.bincount(self.labels, minlength=num_classes)


def list_file(spec, split: str) -> str:
  """The file name of a host-fed dataset's `split` list: <prefix>_<split>.txt, or
  <split>.txt for a user's own lists."""
  return f"{spec.list_prefix}_{split}.txt" if spec.list_prefix else f"{split}.txt"


def present_splits(lists_dir: str | None, spec) -> tuple[str, ...]:
  """The dataset's splits, less the optional ones whose list is absent."""
  return tuple(s for s in spec.splits if s not in spec.optional_splits or (
      lists_dir and os.path.isfile(os.path.join(os.path.expanduser(lists_dir),
                                                list_file(spec, s)))))


def list_path(lists_dir: str, spec, split: str) -> str:
  """Where the `split` list of a host-fed dataset (a `datasets.DatasetSpec`) lives; fails
  naming the expected files when it is absent."""
  if spec.list_prefix is None:
    raise DataError(f"dataset {spec.name!r} has no split lists; it is read as arrays.")
  names = ", ".join(list_file(spec, s) for s in spec.splits)
  if split not in spec.splits:
    raise DataError(f"{spec.name} has no {split!r} split; its lists are {names}.")
  path = os.path.join(os.path.expanduser(lists_dir), list_file(spec, split))
  if not os.path.isfile(path):
    required = ", ".join(list_file(spec, s) for s in spec.splits
                         if s not in spec.optional_splits)
    optional = ", ".join(list_file(spec, s) for s in spec.optional_splits)
    raise DataError(f"split list {path} is missing: put {required}"
                    + (f" (and {optional}, optional)" if optional else "")
                    + " in that folder, one 'relative/path label' per line"
                    + ("" if spec.optional_splits else " (the lists of the reference code)")
                    + ".")
  return path


def read_list(path: str, image_root: str, num_classes: int | None, check_files: bool = True
              ) -> ImageList:
  """Parses one split list; every image must exist under `image_root` (checked unless
  `check_files` is False) and every label lie in [0, num_classes) (num_classes None: the
  labels define the classes, so any label >= 0)."""
  root = os.path.expanduser(image_root)
  if check_files and not os.path.isdir(root):
    raise DataError(f"image folder {root} does not exist; it must be the folder that the "
                    f"paths in {path} are relative to.")
  paths, labels, lines = [], [], []
  with open(path) as f:
    for number, raw in enumerate(f, start=1):
      text = raw.strip()
      if not text:
        continue
      fields = text.split()
      if len(fields) != 2:
        raise DataError(f"{path}:{number}: expected 'relative/path label', got {text[:80]!r}.")
      try:
        label = int(fields[1])
      except ValueError:
        raise DataError(f"{path}:{number}: the label {fields[1]!r} is not an integer.") from None
      if num_classes is None and label < 0:
        raise DataError(f"{path}:{number}: label {label} is negative; class ids run 0, 1, ...")
      if num_classes is not None and not 0 <= label < num_classes:
        raise DataError(f"{path}:{number}: label {label} is outside [0, {num_classes}) "
                        f"for a dataset of {num_classes} classes.")
      paths.append(os.path.join(root, fields[0]))
      labels.append(label)
      lines.append(number)
  if not labels:
    raise DataError(f"{path} lists no images.")
  if check_files:
    missing = [(n, p) for n, p in zip(lines, paths) if not os.path.isfile(p)]
    if missing:
      shown = "; ".join(f"line {n}: {p}" for n, p in missing[:3])
      raise DataError(f"{len(missing)} of the {len(paths)} images listed in {path} are missing "
                      f"under {root} ({shown}{' ...' if len(missing) > 3 else ''}); check the "
                      "image folder.")
  return ImageList(path, np.asarray(paths, dtype=object), np.asarray(labels, np.int64),
                   np.asarray(lines, np.int64))


def read_image(images: ImageList, index: int) -> Image.Image:
  """The index-th image, decoded to RGB; a missing or undecodable file names its list line."""
  path, line = images.paths[index], int(images.lines[index])
  where = f"{images.list_path}:{line}: image" if line else "unlabeled pool image"
  fix = "replace the file or remove its line" if line else "replace or delete the file"
  try:
    with Image.open(path) as image:
      return image.convert("RGB")
  except FileNotFoundError:
    raise DataError(f"{where} {path} is missing.") from None
  except (UnidentifiedImageError, OSError) as e:
    raise DataError(f"{where} {path} cannot be decoded ({e}); {fix}.") from None
