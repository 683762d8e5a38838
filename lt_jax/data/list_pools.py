"""Unlabeled pools of a host-fed dataset (ImageNet-LT, iNaturalist 2018, a user's own lists):
image files, listed here and decoded only when the pseudo-label stage and the final stage
read them through the host pipeline.

  same_split    "the rest of the source": every image in a folder that holds a listed
                training image but that no split list names. For ImageNet-LT these are the
                ImageNet training images its lists left out, the pool its author suggests for
                semi-supervised ImageNet-LT (the reference's issue #18). A folder whose listed
                training images share one class labels its other images with it (ImageNet's
                class folders do); any folder of mixed classes leaves the pool without labels.
  image_folder  every PNG / JPEG under semi.image_folder, labeled by top-level sub-folders
                named by class id (else without labels), every file checked before training.

The per-class rho_U draw is the device pools' (`unlabeled.select_pool`, or on predictions
`unlabeled.request_pool`): in the order of the training list's class counts, largest first
(ties by class id), from a generator seeded by dataset.lt_seed.
"""

from __future__ import annotations

import hashlib
import os

import ml_collections
import numpy as np

from lt_jax.data import image_source, open_pools, unlabeled
from lt_jax.data.image_lists import ImageList
from lt_jax.errors import ConfigError, DataError

REST_OF_SOURCE = ("the rest of the source (the images in the training list's folders that no "
                  "list names; classes by folder)")


def candidates(config: ml_collections.ConfigDict, splits: dict[str, ImageList | None],
               num_classes: int) -> unlabeled.Candidates:
  """The images (an ImageList of unlisted rows, labels -1 where unknown), their labels or
  None, and their positions in the sorted listing (the pool file's indices)."""
  source = config.semi.pool_source
  if source == "same_split":
    paths, labels = _rest_of_source(splits)
    if not paths:
      raise DataError(f"the folders of {splits['train'].list_path}'s images hold no image that "
                      "no split list names, so semi.pool_source='same_split' has nothing to "
                      "draw; put the unlabeled images beside them, or set "
                      "semi.pool_source='image_folder' with semi.image_folder.")
  elif source == "image_folder":
    paths, labels = open_pools.folder_files(config.semi.image_folder, config.dataset.name,
                                            num_classes)
  else:
    raise ConfigError(f"semi.pool_source={source!r} does not serve the host-fed "
                      f"dataset.name={config.dataset.name!r}; choose one of "
                      f"{unlabeled.host_fed_pools()}.")
  where = os.path.expanduser(config.dataset.data_dir if source == "same_split"
                             else config.semi.image_folder)
  images = ImageList(where, np.asarray(paths, dtype=object),
                     np.full(len(paths), -1, np.int64) if labels is None else labels,
                     np.zeros(len(paths), np.int64))
  return unlabeled.Candidates(images, labels, np.arange(len(paths), dtype=np.int64))


def fingerprint(images: ImageList) -> str:
  """Names the pool's files and their order (paths below the pool's root)."""
  digest = hashlib.sha256()
  for path in images.paths:
    digest.update(os.path.relpath(path, images.list_path).encode() + b"\n")
  return f"files:{len(images)}:sha256:{digest.hexdigest()[:16]}"


def draw(config: ml_collections.ConfigDict, splits: dict[str, ImageList | None],
         num_classes: int) -> unlabeled.Pool | unlabeled.PoolRequest:
  """This config's pool: drawn now on the candidates' labels, or a PoolRequest that the
  pseudo-label stage draws on the base model's predictions."""
  semi = config.semi
  labeled_counts = splits["train"].class_counts(num_classes)
  return unlabeled.draw_requested(
      semi, candidates(config, splits, num_classes), labeled_counts,
      class_order(labeled_counts), np.random.RandomState(config.dataset.lt_seed),
      description=REST_OF_SOURCE if semi.pool_source == "same_split" else None)


def class_order(counts) -> list[int]:
  """Class ids by training images, most first; equal counts by id (a stable sort)."""
  return [int(c) for c in np.argsort(-np.asarray(counts), kind="stable")]


def _rest_of_source(splits: dict[str, ImageList | None]) -> tuple[list[str], np.ndarray | None]:
  listed = {os.path.normpath(p) for images in splits.values() if images is not None
            for p in images.paths}
  train = splits["train"]
  classes_in: dict[str, set[int]] = {}
  for path, label in zip(train.paths, train.labels):
    classes_in.setdefault(os.path.dirname(os.path.normpath(path)), set()).add(int(label))
  paths, labels = [], []
  for folder in sorted(classes_in):
    with os.scandir(folder) as entries:
      names = sorted(e.name for e in entries if e.is_file() and not e.name.startswith(".")
                     and e.name.lower().endswith(image_source.IMAGE_SUFFIXES))
    found = [p for p in (os.path.join(folder, n) for n in names) if p not in listed]
    paths.extend(found)
    only = classes_in[folder]
    labels.extend([next(iter(only)) if len(only) == 1 else -1] * len(found))
  known = np.asarray(labels, np.int64)
  return paths, (known if len(known) and (known >= 0).all() else None)
