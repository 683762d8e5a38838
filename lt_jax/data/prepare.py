"""From a dataset config to the arrays a run trains and evaluates on."""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from lt_jax.data import datasets, longtail, sources
from lt_jax.data.sources import Split
from lt_jax.errors import ConfigError


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
  # With a pseudo-labeled pool appended, the first num_labeled training examples are D_L.
  num_labeled: int | None = None
  # Counts that define Many/Medium/Few in reports (None: class_counts). A semi-supervised run
  # trains on counts that include pseudo-labels but reports groups by the labeled counts, so
  # its groups are the base model's.
  group_counts: list[int] | None = None

  @property
  def report_counts(self) -> list[int]:
    return self.class_counts if self.group_counts is None else self.group_counts


def source_options(ds: ml_collections.ConfigDict, with_extra: bool = False) -> dict:
  """The options of `datasets.load` / `datasets.check_available` that this config sets among
  those its dataset accepts: an .npz's path, and an extra split (SVHN's 531k images) only when
  a pool needs it."""
  values = {"path": ds.npz_path, "extra": with_extra, "image_size": ds.image_size,
            "test_fraction": ds.test_fraction}
  return {key: values[key] for key in datasets.get(ds.name).options if key in values}


def load_source(ds: ml_collections.ConfigDict, with_extra: bool = False) -> sources.Dataset:
  """The source's splits: uint8 arrays, or image sources read on demand with
  dataset.feed='host'."""
  return datasets.load(ds.name, ds.data_dir, ds.source, lazy=ds.feed == "host",
                       **source_options(ds, with_extra))


def requested_counts(ds: ml_collections.ConfigDict, num_train: int,
                     num_classes: int) -> list[int]:
  """Per-class counts in class order (not by class id) for this config."""
  img_max = ds.img_max
  if img_max is None:
    img_max = datasets.get(ds.name).img_max or num_train / num_classes
  check_smallest_class(ds, img_max)
  return longtail.class_counts(img_max, num_classes, ds.imb_type, 1.0 / ds.imbalance_ratio)


def check_validation_source(ds: ml_collections.ConfigDict, own_val: bool) -> None:
  """A validation split comes from the data (an image folder's val/) or is drawn by
  dataset.val_per_class, not both: the drawn one would silently replace the data's."""
  if own_val and ds.val_per_class:
    raise ConfigError(f"dataset.val_per_class={ds.val_per_class}, but {ds.name} brings its own "
                      "validation images (an image folder's val/); set dataset.val_per_class=0 "
                      "to use them, or move them into train/ to draw a validation split.")


def check_smallest_class(ds: ml_collections.ConfigDict, img_max: float) -> None:
  """Raises when the imbalance leaves the smallest class no image: it gets int(img_max / rho)
  (exp and step alike), and a class with no training image cannot be learned or weighted."""
  if ds.imb_type in ("none", "keep"):
    return
  smallest = longtail.class_counts(img_max, 2, ds.imb_type, 1.0 / ds.imbalance_ratio)[-1]
  if smallest < 1:
    source = "dataset.img_max" if ds.img_max is not None else "|train| / classes"
    raise ConfigError(
        f"dataset.imbalance_ratio={ds.imbalance_ratio:g} leaves the smallest classes no "
        f"training image (int(img_max / rho) = int({img_max:g} / {ds.imbalance_ratio:g}) = "
        f"{smallest}, img_max being {source}); set dataset.imbalance_ratio below {img_max:g}, "
        "or a larger dataset.img_max.")


@dataclasses.dataclass(frozen=True)
class Draw:
  """A long-tailed draw and what a later unlabeled-pool draw needs to continue it."""
  data: LongTailData
  source: sources.Dataset
  used_train_indices: np.ndarray  # Labeled subset and validation split: never in the pool.
  rng: np.random.RandomState  # The reference's generator, positioned after the labeled draw.


def draw(ds: ml_collections.ConfigDict, data: sources.Dataset | None = None, *,
         with_extra: bool = False) -> Draw:
  """Loads the source (unless given) and draws the validation split and long-tailed subset."""
  data = load_source(ds, with_extra) if data is None else data
  c = data.num_classes
  labels = data.train.labels
  check_validation_source(ds, own_val=data.val is not None)
  rest, val_idx = longtail.validation_split(labels, ds.val_per_class, ds.lt_seed)
  if ds.val_per_class == 0:
    rest = np.arange(len(labels))
  order = datasets.get(ds.name).order(c)
  if ds.imb_type == "keep":  # Every training image: the data's own class balance.
    counts = [int(np.sum(labels[rest] == k)) for k in order]
  else:
    counts = requested_counts(ds, len(rest), c)
  rng = np.random.RandomState(ds.lt_seed)
  picked = rest[longtail.longtail_indices(labels[rest], counts, class_order=order, rng=rng)]
  train = Split(data.train.images[picked], labels[picked])
  val = (Split(data.train.images[val_idx], labels[val_idx]) if ds.val_per_class > 0
         else data.val)
  lt = LongTailData(
      name=ds.name, train=train, val=val, test=data.test, num_classes=c,
      class_counts=longtail.counts_by_class(counts, order, c),
      mean=tuple(data.mean), std=tuple(data.std))
  return Draw(lt, data, np.concatenate([picked, val_idx]).astype(np.int64), rng)


def prepare(ds: ml_collections.ConfigDict, data: sources.Dataset | None = None) -> LongTailData:
  """The long-tailed training data (and validation and test splits) a config asks for."""
  return draw(ds, data).data
