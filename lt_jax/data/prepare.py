"""From a dataset config to the arrays a run trains and evaluates on."""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from lt_jax.data import longtail, sources
from lt_jax.data.sources import Split

# SVHN is itself long-tailed with digit 1 the most common and 0 among the rarest in `train`; the
# reference assigns the largest count to class 1 and the smallest to class 0.
SVHN_CLASS_ORDER = (1, 2, 3, 4, 5, 6, 7, 8, 9, 0)
SVHN_IMG_MAX = 1000


@dataclasses.dataclass(frozen=True)
class LongTailData:
  name: str
  train: Split  # The long-tailed labeled subset.
  val: Split | None  # Balanced held-out split, or None.
  test: Split
  num_classes: int
  class_counts: list[int]  # Training images per class id.
  mean: tuple[float, ...]
  std: tuple[float, ...]


def load_source(ds: ml_collections.ConfigDict) -> sources.Dataset:
  options = {"path": ds.npz_path} if ds.name == "npz" else {}
  return sources.load(ds.name, ds.data_dir, ds.source, **options)


def class_order(name: str, num_classes: int) -> tuple[int, ...]:
  return SVHN_CLASS_ORDER if name == "svhn" else tuple(range(num_classes))


def requested_counts(ds: ml_collections.ConfigDict, num_train: int,
                     num_classes: int) -> list[int]:
  """Per-class counts in class order (not by class id) for this config."""
  img_max = ds.img_max
  if img_max is None:
    img_max = SVHN_IMG_MAX if ds.name == "svhn" else num_train / num_classes
  return longtail.class_counts(img_max, num_classes, ds.imb_type, 1.0 / ds.imbalance_ratio)


def prepare(ds: ml_collections.ConfigDict, data: sources.Dataset | None = None) -> LongTailData:
  """Loads the source (unless given) and draws the validation split and long-tailed subset."""
  data = load_source(ds) if data is None else data
  c = data.num_classes
  labels = data.train.labels
  rest, val_idx = longtail.validation_split(labels, ds.val_per_class, ds.lt_seed)
  if ds.val_per_class == 0:
    rest = np.arange(len(labels))
  order = class_order(ds.name, c)
  counts = requested_counts(ds, len(rest), c)
  picked = rest[longtail.longtail_indices(labels[rest], counts, ds.lt_seed, order)]
  train = Split(data.train.images[picked], labels[picked])
  val = (Split(data.train.images[val_idx], labels[val_idx]) if ds.val_per_class > 0 else None)
  return LongTailData(
      name=ds.name, train=train, val=val, test=data.test, num_classes=c,
      class_counts=longtail.counts_by_class(counts, order, c),
      mean=tuple(data.mean), std=tuple(data.std))
