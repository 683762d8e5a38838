"""Long-tailed subsets of a balanced training split, drawn exactly as the reference does.

The reference code seeds numpy's legacy global generator once (`np.random.seed(seed)`) and
then, for each class in order, shuffles that class's indices with `np.random.shuffle` and keeps
the first n_c. We replay those calls on a private `np.random.RandomState(seed)`, which produces
the same stream without touching the global generator, so the selected indices (and their order)
are identical to the reference for any label array and seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lt_jax.errors import ConfigError

IMB_TYPES = ("exp", "step", "none")
# dataset.imb_type also takes "keep": every training image, as imbalanced as the data is (a
# user's own folder); the subset is then not drawn by a profile, so it is not one of these.
SUBSET_TYPES = IMB_TYPES + ("keep",)


def class_counts(img_max: float, num_classes: int, imb_type: str = "exp",
                 imb_factor: float = 0.01) -> list[int]:
  """Per-class image counts of a long-tailed subset (largest first).

  exp:  n_i = int(img_max * imb_factor ** (i / (C - 1))), i = 0..C-1.
  step: the first C // 2 classes keep int(img_max), the rest int(img_max * imb_factor).
  none: every class keeps int(img_max).

  `imb_factor` is 1 / rho, the ratio of the smallest to the largest class (configs give rho as
  `dataset.imbalance_ratio`). The float arithmetic follows the reference term by term so that
  truncation lands on the same integers (CIFAR-10, rho 100: 5000, 2997, ..., 50).
  """
  if imb_type not in IMB_TYPES:
    raise ConfigError(f"dataset.imb_type={imb_type!r} is unknown; choose one of {IMB_TYPES}.")
  if num_classes < 1:
    raise ConfigError(f"num_classes={num_classes} must be at least 1.")
  if imb_type == "exp":
    if num_classes == 1:
      return [int(img_max)]
    return [int(img_max * (imb_factor ** (i / (num_classes - 1.0)))) for i in range(num_classes)]
  if imb_type == "step":
    half = num_classes // 2
    return [int(img_max)] * half + [int(img_max * imb_factor)] * (num_classes - half)
  return [int(img_max)] * num_classes


def longtail_indices(labels: np.ndarray, counts: Sequence[int], seed: int = 0,
                     class_order: Sequence[int] | None = None,
                     rng: np.random.RandomState | None = None) -> np.ndarray:
  """Indices into `labels` of the long-tailed subset, in the reference's order.

  counts[k] images are kept of class class_order[k] (default: the sorted unique labels, as the
  reference's `np.unique`; SVHN passes 1, 2, ..., 9, 0). Classes are visited in that order, each
  one's indices shuffled by the same RandomState stream and truncated to counts[k].

  Pass `rng` to continue a stream instead of seeding a new one: the reference draws its
  unlabeled pool right after the labeled subset from the same seeded generator.

  Raises ConfigError when a class holds fewer images than asked for: the reference would keep
  them all silently and the class counts would no longer be what the config says.
  """
  labels = np.asarray(labels)
  order = np.unique(labels) if class_order is None else np.asarray(class_order)
  if len(order) != len(counts):
    raise ConfigError(f"{len(counts)} class counts were given for {len(order)} classes; "
                      "the dataset's number of classes and the counts must agree.")
  rng = np.random.RandomState(seed) if rng is None else rng
  kept = []
  for cls, n in zip(order, counts):
    idx = np.where(labels == cls)[0]
    if n > len(idx):
      raise ConfigError(
          f"class {int(cls)} has {len(idx)} training images but the long-tailed subset asks "
          f"for {n}; lower dataset.img_max (at most {len(idx)} for this class) or the "
          "validation split dataset.val_per_class.")
    rng.shuffle(idx)
    kept.append(idx[:n])
  return np.concatenate(kept).astype(np.int64)


def unlabeled_counts(num_labeled: int, num_classes: int, unlabeled_ratio: float,
                     factor: int = 5) -> list[int]:
  """Per-class sizes of the unlabeled pool D_U, in the labeled subset's class order.

  The reference: T = factor * |D_L|; n_i = int(floor(T / C) * (1 / rho_U) ** (i / (C - 1)));
  then every n_i is rescaled by T / sum(n) and truncated, so the pool keeps the imbalance
  rho_U and a total just under T. (CIFAR-10, rho 50 -> |D_L| = 13,996; rho_U 25 -> 21651,
  15138, ..., 863.)
  """
  if unlabeled_ratio is None or unlabeled_ratio < 1:
    raise ConfigError(f"semi.unlabeled_ratio={unlabeled_ratio!r} must be >= 1 (rho_U = largest "
                      "/ smallest pool class).")
  total = num_labeled * factor
  first = total // num_classes
  imb = 1.0 / unlabeled_ratio
  if num_classes == 1:
    return [int(total)]
  raw = [int(first * (imb ** (i / (num_classes - 1.0)))) for i in range(num_classes)]
  scale = total / sum(raw)
  return [int(n * scale) for n in raw]


def counts_by_class(counts: Sequence[int], class_order: Sequence[int],
                    num_classes: int) -> list[int]:
  """Reorders counts given in class_order into a list indexed by class id."""
  by_class = [0] * num_classes
  for cls, n in zip(class_order, counts):
    by_class[int(cls)] = int(n)
  return by_class


def validation_split(labels: np.ndarray, per_class: int, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
  """Holds out `per_class` images of every class for model selection.

  Returns (rest, val) as sorted index arrays into `labels`. The draw uses its own
  RandomState(seed + 1) so that it never shifts the long-tailed subset's stream; the subset is
  then drawn from `rest` (so with a validation split the subset differs from the reference's,
  which has none).
  """
  labels = np.asarray(labels)
  if per_class < 0:
    raise ConfigError(f"dataset.val_per_class={per_class} must be >= 0.")
  rng = np.random.RandomState(seed + 1)
  val = []
  for cls in np.unique(labels):
    idx = np.where(labels == cls)[0]
    if per_class >= len(idx):
      raise ConfigError(
          f"dataset.val_per_class={per_class} leaves no training images of class {int(cls)} "
          f"({len(idx)} in all); use at most {len(idx) - 1}.")
    val.append(rng.permutation(idx)[:per_class])
  val = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
  rest = np.setdiff1d(np.arange(len(labels)), val)
  return rest.astype(np.int64), val.astype(np.int64)
