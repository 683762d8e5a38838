"""Unlabeled pools anyone can download today, read from the formats they are published in.

  cinic10          CINIC-10's archive folder (train/ valid/ test/, one folder per CIFAR-10
                   class, 32x32 PNGs). Only the ImageNet-derived files (`n<wnid>_*.png`) are
                   read: the `cifar10-*` files are CIFAR-10's own training and test images, which
                   could repeat D_L or the test set. Class folders give each image's class.
  stl10_unlabeled  TFDS `stl10`, split `unlabelled` (100,000 96x96 images without labels),
                   each 3x3 box-averaged to 32x32 as it is read.
  image_folder     any folder tree of PNG / JPEG files. Top-level sub-folders named after the
                   labeled data's classes (ids 0..C-1, or CIFAR-10's class names) label their
                   images; otherwise the folder has no labels.

Each returns (images, labels or None): `images` an `image_source.ImageSource` fitted to the
labeled data's (H, W, C), decoded only when read; indices are positions in a fixed, sorted
listing, so a pool file's indices name the same images on every run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np

from lt_jax.data import image_source
from lt_jax.errors import DataError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
CINIC10_SPLITS = ("train", "valid", "test")
CINIC10_SUBFOLDER = "CINIC-10"  # A folder may hold the extracted archive under this name.
STL10_TFDS_NAME = "stl10"
STL10_SPLIT = "unlabelled"

# Class names a labeled dataset's folders may use besides the ids 0..C-1.
CLASS_NAMES = {"cifar10": CIFAR10_CLASSES}

CINIC10_FIELD = "semi.cinic10_dir"
IMAGE_FOLDER_FIELD = "semi.image_folder"
TFDS_DIR_FIELD = "semi.tfds_data_dir"

_CINIC_URL = "https://doi.org/10.7488/ds/2448"
_CINIC_HOW = (f"download CINIC-10.tar.gz (about 690 MB) from the University of Edinburgh "
              f"DataShare ({_CINIC_URL}), extract it and set {CINIC10_FIELD} to the folder "
              f"holding train/, valid/ and test/")
_FOLDER_HOW = (f"set {IMAGE_FOLDER_FIELD} to a folder of PNG or JPEG files (optionally in class "
               "sub-folders named by class id or class name)")
_IMAGENET_FILE = re.compile(r"n\d+_.*\.png", re.IGNORECASE)


# --- CINIC-10 ---------------------------------------------------------------------------


def cinic10(folder: str | None, image_shape: Sequence[int],
            splits: Sequence[str] = CINIC10_SPLITS
            ) -> tuple[image_source.ImageSource, np.ndarray]:
  """CINIC-10's ImageNet-derived images of `splits`, in split, class id, file name order, with
  their class folders as labels (CIFAR-10's ids)."""
  root = _cinic_root(folder)
  unknown = [s for s in splits if s not in CINIC10_SPLITS]
  if unknown or not splits:
    raise DataError(f"semi.cinic10_splits={tuple(splits)} must be a non-empty subset of "
                    f"{CINIC10_SPLITS}")
  paths, labels = [], []
  for split in (s for s in CINIC10_SPLITS if s in splits):
    for label, name in enumerate(CIFAR10_CLASSES):
      class_dir = os.path.join(root, split, name)
      if not os.path.isdir(class_dir):
        raise DataError(f"expected the CINIC-10 class folder {class_dir}; {_CINIC_HOW}")
      found = sorted(f for f in os.listdir(class_dir) if _IMAGENET_FILE.fullmatch(f))
      if not found:
        raise DataError(f"{class_dir} holds no ImageNet-derived PNGs (files named "
                        f"n<wordnet id>_*.png; the cifar10-* files are never used); "
                        f"{_CINIC_HOW}")
      paths.extend(os.path.join(class_dir, f) for f in found)
      labels.extend([label] * len(found))
  images = image_source.FileImages(paths, image_shape, root=root, how=_CINIC_HOW)
  images.verify(log=_log)  # An unreadable file fails here, before any training.
  return images, np.asarray(labels, np.int64)


def _cinic_root(folder: str | None) -> str:
  if not folder:
    raise DataError(f"semi.pool_source='cinic10' needs {CINIC10_FIELD}; {_CINIC_HOW}")
  folder = os.path.expanduser(folder)
  for root in (folder, os.path.join(folder, CINIC10_SUBFOLDER)):
    if os.path.isdir(os.path.join(root, "train")):
      return root
  raise DataError(f"expected CINIC-10's train/, valid/ and test/ folders in {folder}; "
                  f"{_CINIC_HOW}")


# --- any folder of images ---------------------------------------------------------------


def image_folder(folder: str | None, image_shape: Sequence[int], dataset_name: str,
                 num_classes: int) -> tuple[image_source.ImageSource, np.ndarray | None]:
  """Every PNG / JPEG under `folder`, sorted by relative path, read at `image_shape`; labels
  from class sub-folders (see the module doc) or None."""
  paths, labels = folder_files(folder, dataset_name, num_classes)
  return image_source.FileImages(paths, image_shape, root=os.path.expanduser(folder),
                                 how=_FOLDER_HOW), labels


def folder_files(folder: str | None, dataset_name: str, num_classes: int
                 ) -> tuple[list[str], np.ndarray | None]:
  """The image files under `folder` (sorted by relative path) and their labels from class
  sub-folders, or None; every file is checked before any training, not after the base model.

  A tree whose top-level sub-folders only partly name classes is refused: its labels would be
  a guess.
  """
  if not folder:
    raise DataError(f"semi.pool_source='image_folder' needs {IMAGE_FOLDER_FIELD}; "
                    f"{_FOLDER_HOW}")
  folder = os.path.expanduser(folder)
  if not os.path.isdir(folder):
    raise DataError(f"expected a folder of images at {folder}; {_FOLDER_HOW}")
  paths = image_source.list_images(folder)
  if not paths:
    raise DataError(f"{folder} holds no .png, .jpg or .jpeg files; {_FOLDER_HOW}")
  labels = folder_labels(folder, paths, dataset_name, num_classes)
  image_source.check_files(paths, _FOLDER_HOW, log=_log)
  return paths, labels


def _log(line: str) -> None:
  print(line, flush=True)


def folder_labels(folder: str, paths: list[str], dataset_name: str,
                  num_classes: int) -> np.ndarray | None:
  """Each path's class from its top-level sub-folder of `folder` (a class id, or one of the
  dataset's class names); None when no sub-folder names a class."""
  names = {str(i): i for i in range(num_classes)}
  names.update({n: i for i, n in enumerate(CLASS_NAMES.get(dataset_name, ()))})
  tops = [os.path.relpath(p, folder).split(os.sep) for p in paths]
  loose = [os.path.join(folder, t[0]) for t in tops if len(t) == 1]
  subfolders = sorted({t[0] for t in tops if len(t) > 1})
  matched = [s for s in subfolders if s in names]
  if not matched:
    return None
  unmatched = [s for s in subfolders if s not in names]
  if unmatched or loose:
    odd = ", ".join(unmatched + [os.path.basename(p) for p in loose[:3]])
    names_hint = f" or {dataset_name}'s class names" if dataset_name in CLASS_NAMES else ""
    raise DataError(f"{folder}: sub-folders {', '.join(matched)} name classes but these do "
                    f"not: {odd}; put every image in a class folder (ids 0..{num_classes - 1}"
                    f"{names_hint}) or in none")
  return np.asarray([names[t[0]] for t in tops], np.int64)


# --- STL-10 (TFDS) ----------------------------------------------------------------------


def _stl10_how(data_dir: str | None) -> str:
  where = data_dir or "~/tensorflow_datasets"
  return (f"run `tfds build {STL10_TFDS_NAME} --file_format=array_record --data_dir={where}` "
          f"(a 2.46 GiB download; building needs TensorFlow and internet, reading does not: "
          f"build elsewhere and copy {where}/{STL10_TFDS_NAME} here if need be) and set "
          f"{TFDS_DIR_FIELD} if not the default, or choose another semi.pool_source")


def stl10_unlabeled(data_dir: str | None, image_shape: Sequence[int]
                    ) -> tuple[image_source.ImageSource, None]:
  """STL-10's 100,000 unlabelled images through `tfds.data_source` (no TensorFlow needed)."""
  import tensorflow_datasets as tfds

  data_dir = os.path.expanduser(data_dir) if data_dir else None
  how = _stl10_how(data_dir)
  where = data_dir or "TFDS's default folder (~/tensorflow_datasets or $TFDS_DATA_DIR)"
  missing = (f"expected the TFDS dataset {STL10_TFDS_NAME!r} (split {STL10_SPLIT!r}) prepared "
             f"in array_record format under {where}; {how}")
  try:
    records = tfds.data_source(STL10_TFDS_NAME, split=STL10_SPLIT, data_dir=data_dir,
                               download=False)
  except (NotImplementedError, ValueError, OSError, AssertionError, KeyError) as e:
    # KeyError: TFDS's default folder holding a stl10 folder without its prepared splits.
    first_line = str(e).splitlines()[0] if str(e) else ""
    raise DataError(f"{missing} ({type(e).__name__}: {first_line})") from e
  if len(records) == 0:
    raise DataError(f"the TFDS split {STL10_TFDS_NAME}/{STL10_SPLIT} is empty; {how}")
  images = image_source.RecordImages(
      records, image_shape, fingerprint=f"tfds:{STL10_TFDS_NAME}/{STL10_SPLIT}:{len(records)}",
      where=f"{STL10_TFDS_NAME}/{STL10_SPLIT}", how=how)
  images.read([0])
  return images, None
