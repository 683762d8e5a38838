"""The unlabeled pool D_U of the semi-supervised pipeline: where its images come from, and which
of them the reference's seeded draw keeps.

The reference seeds numpy's legacy generator once, draws the labeled subset, and then, from the
same stream, draws the pool: for each class in the labeled subset's class order,
`idx = np.where(pool_truth == c)[0]; np.random.shuffle(idx); keep idx[:u_c]`. `pool_truth` are
the pool's own labels (SVHN extra: true labels; TinyImages: the pickle's `extrapolated_targets`).
They only choose the subset and later measure pseudo-label accuracy; they never reach training.

A pool without labels of its own (STL-10's unlabelled split, a plain image folder, an .npz
without 'y_unlabeled') is drawn the same way on the classes the frozen base model predicts
(`semi.pool_draw_on`, see `draw_rule`): a deviation from the reference, whose labels come with
the pool, that keeps the rho_U formula's exact per-class counts.

The steps keep I/O apart from the draw:
  candidate_pool       reads, slices or (for the open pools) indexes without decoding the images
                       the pool may draw from, with their own labels (or None) and their
                       indices in the source.
  select_pool          replays the reference's per-class draw on a RandomState that continues
                       the labeled subset's stream, and refuses, before any training, a request
                       that a class of the candidates cannot meet.
  request_pool         for a draw on predictions: checks the total before any training and
                       keeps what `draw_by_predictions` needs once the base model has labeled
                       every candidate.
  draw_requested       either of the two, with the counts and class order a config's semi.*
                       fields ask for.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from lt_jax.data import image_source, longtail, open_pools, sources
from lt_jax.errors import ConfigError, DataError

SHORT_CLASS_POLICIES = ("stop", "take_available")
DRAW_RULES = ("auto", "labels", "predictions")

SOURCE_FIELD = "semi.pool_source"
FACTOR_FIELD = "semi.unlabeled_factor"
RATIO_FIELD = "semi.unlabeled_ratio"
TINYIMAGES_FIELD = "semi.tinyimages_path"
NPZ_FIELD = "semi.pool_npz_path"
DRAW_FIELD = "semi.pool_draw_on"

TINYIMAGES_FILE = "ti_80M_selected.pickle"  # The reference's file name; a folder may hold it.

# Imbalance ratios offered when a different rho_U would fit at the configured factor.
_RATIO_GRID = (1, 2, 5, 10, 20, 25, 50, 100, 200)

_SVHN_HOW = ("download extra_32x32.mat from http://ufldl.stanford.edu/housenumbers/ into the SVHN "
             "folder (dataset.data_dir, next to train_32x32.mat), or choose another "
             f"{SOURCE_FIELD}")
_TI_HOW = ("the 80 Million Tiny Images dataset was withdrawn by its authors in 2020 and cannot be "
           "downloaded, so bring your own copy of the reference's ti_80M_selected.pickle (a dict "
           "with 'data': uint8 (N, 32, 32, 3) and 'extrapolated_targets': (N,) ints 0..C-1) and "
           f"set {TINYIMAGES_FIELD} to the file or its folder. Or run the same recipe on a pool "
           "you can download today: CINIC-10's ImageNet images (about 690 MB, from "
           "https://doi.org/10.7488/ds/2448; python run.py "
           "--config=configs/cifar10lt_semi_cinic.py) or STL-10's unlabelled split (2.46 GiB, "
           "`tfds build stl10 --file_format=array_record`; python run.py "
           "--config=configs/cifar10lt_semi_stl10.py); docs/GUIDE.md: Unlabeled pools")
_NPZ_HOW = ("save one with np.savez(path, x_unlabeled=..., y_unlabeled=...) (images uint8 NHWC or "
            "NHW; y_unlabeled is optional, ints 0..C-1, used only to size the classes and to "
            f"measure pseudo-label accuracy) and set {NPZ_FIELD}")

@dataclasses.dataclass(frozen=True)
class Pool:
  """A pool drawn on its own labels (a lazy ImageSource for the open pools)."""
  images: np.ndarray | image_source.ImageSource  # (M, H, W, C) uint8.
  true_labels: np.ndarray | None  # (M,) int64: the pool's own labels (true or extrapolated).
  source_indices: np.ndarray  # (M,) int64: each image's index in its source array.
  requested_counts: list[int]  # Per class id (not class order); see `select_pool`.
  source: str


class Candidates(NamedTuple):
  """What a pool may draw from; `source_indices` keeps provenance through the draw."""
  images: np.ndarray | image_source.ImageSource  # (N, H, W, C) uint8.
  labels: np.ndarray | None  # (N,) int64, or None when the source has no labels.
  source_indices: np.ndarray  # (N,) int64 index of each candidate in its source array.


# --- candidates -------------------------------------------------------------------------


def candidate_pool(source: str, data: sources.Dataset, *,
                   excluded_train_indices: np.ndarray | None = None,
                   tinyimages_path: str | None = None,
                   npz_path: str | None = None,
                   cinic10_dir: str | None = None,
                   cinic10_splits: Sequence[str] = open_pools.CINIC10_SPLITS,
                   image_folder: str | None = None,
                   tfds_data_dir: str | None = None) -> Candidates:
  """The images (with their own labels, or None) that the pool may draw from.

  same_split  the training images not in `excluded_train_indices` (pass the labeled subset and
              any validation split: the pool must never repeat them), with their true labels;
              never the test split.
  svhn_extra  `data.extra` (SVHN's extra_32x32.mat), with its true labels.
  tinyimages  the reference's ti_80M_selected.pickle, classes by its 'extrapolated_targets'.
              Unpickling runs code from the file: only use a copy you trust.
  npz         'x_unlabeled' and, when present, 'y_unlabeled'.
  cinic10, stl10_unlabeled, image_folder
              the open pools of `open_pools` (CINIC-10's ImageNet-derived images of
              `cinic10_splits` with their class folders; STL-10's unlabelled split from TFDS;
              any image folder), as lazy ImageSources fitted to the labeled data's (H, W, C).

  Returns Candidates(images, labels, source_indices); source_indices index `data.train` for
  same_split and the source's own array or listing otherwise. Array images must have the
  labeled data's (H, W, C), else DataError naming both shapes.
  """
  if source not in POOLS:
    raise ConfigError(f"{SOURCE_FIELD}={source!r} is unknown; choose one of {tuple(POOLS)}.")
  options = dict(excluded_train_indices=excluded_train_indices, tinyimages_path=tinyimages_path,
                 npz_path=npz_path, cinic10_dir=cinic10_dir, cinic10_splits=cinic10_splits,
                 image_folder=image_folder, tfds_data_dir=tfds_data_dir)
  return POOLS[source].read(data, options)


def _arrays(read: Callable[[sources.Dataset, dict], tuple[Candidates, str]]):
  """A reader of in-memory candidates, checked to have the labeled data's (H, W, C)."""
  def checked(data: sources.Dataset, options: dict) -> Candidates:
    candidates, where = read(data, options)
    _check_image_shape(candidates.images, data, where)
    return candidates
  return checked


def _open(read: Callable[..., tuple]):
  """A reader of an open pool (`open_pools`): lazy images fitted to the labeled data's shape,
  indexed by their position in the source's listing."""
  def candidates(data: sources.Dataset, options: dict) -> Candidates:
    images, labels = read(data, options, data.train.images.shape[1:])
    return Candidates(images, labels, np.arange(len(images), dtype=np.int64))
  return candidates


def _same_split(data: sources.Dataset, excluded: np.ndarray | None) -> Candidates:
  """Training images outside `excluded`, in ascending index order (copied)."""
  if excluded is None:
    raise ValueError("same_split needs excluded_train_indices (the labeled subset and any "
                     "validation indices; an empty array when none), so that the pool never "
                     "repeats a labeled image.")
  n = len(data.train.labels)
  excluded = np.asarray(excluded, dtype=np.int64).reshape(-1)
  if len(excluded) and (excluded.min() < 0 or excluded.max() >= n):
    raise ValueError(f"excluded_train_indices span {excluded.min()}..{excluded.max()}, outside "
                     f"the {n} training images.")
  keep = np.ones(n, dtype=bool)
  keep[excluded] = False
  kept = np.flatnonzero(keep).astype(np.int64)
  return Candidates(data.train.images[kept], data.train.labels[kept].astype(np.int64), kept)


def _svhn_extra(data: sources.Dataset) -> Candidates:
  if data.extra is None:
    raise DataError(f"{SOURCE_FIELD}='svhn_extra' needs SVHN's extra split, but dataset "
                    f"{data.name!r} was loaded without one: extra_32x32.mat is expected in the "
                    f"SVHN folder; {_SVHN_HOW}")
  labels = np.asarray(data.extra.labels, dtype=np.int64)
  return Candidates(data.extra.images, labels, np.arange(len(labels), dtype=np.int64))


def _check_image_shape(images: np.ndarray, data: sources.Dataset, where: str) -> None:
  pool_shape, labeled_shape = tuple(images.shape[1:]), tuple(data.train.images.shape[1:])
  if pool_shape != labeled_shape:
    raise DataError(f"{where}: pool images are {pool_shape} (H, W, C) but the labeled "
                    f"{data.name!r} images are {labeled_shape}; the pool must match the labeled "
                    f"data's size and channels (resize it, or choose another {SOURCE_FIELD})")


def _check_labels(labels: np.ndarray, n: int, num_classes: int, where: str, how: str) -> np.ndarray:
  """Integer labels of shape (n,) (an (n, 1) column is flattened) within 0..num_classes-1."""
  if not np.issubdtype(labels.dtype, np.integer):
    raise DataError(f"{where} is {labels.dtype}, expected integer class ids; {how}")
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels.reshape(-1)
  if labels.shape != (n,):
    raise DataError(f"{where} has shape {labels.shape}, expected ({n},) to match the images; "
                    f"{how}")
  if n and (labels.min() < 0 or labels.max() >= num_classes):
    raise DataError(f"{where} spans {labels.min()}..{labels.max()}, expected "
                    f"0..{num_classes - 1}; {how}")
  return labels.astype(np.int64)


# --- TinyImages -------------------------------------------------------------------------


def _tinyimages_file(path: str | None) -> str:
  """The pickle's path: `path` itself or TINYIMAGES_FILE inside the folder `path`."""
  if not path:
    raise DataError(f"{SOURCE_FIELD}='tinyimages' needs {TINYIMAGES_FIELD}; {_TI_HOW}")
  path = os.path.expanduser(path)
  if os.path.isdir(path):
    path = os.path.join(path, TINYIMAGES_FILE)
  if not os.path.isfile(path):
    raise DataError(f"expected the TinyImages pickle ({TINYIMAGES_FILE}) at {path}; {_TI_HOW}")
  return path


def _read_tinyimages(path: str, num_classes: int) -> Candidates:
  """'data' (N, 32, 32, 3) uint8 and 'extrapolated_targets' (N,) from the reference's pickle."""
  try:
    with open(path, "rb") as f:
      blob = pickle.load(f)
  except Exception as e:  # Corrupt pickles raise many kinds of errors; all mean the same here.
    raise DataError(f"{path} is not a readable pickle ({type(e).__name__}: {e}); {_TI_HOW}") from e
  keys = ("data", "extrapolated_targets")
  if not isinstance(blob, dict) or any(k not in blob for k in keys):
    found = sorted(map(str, blob)) if isinstance(blob, dict) else type(blob).__name__
    raise DataError(f"{path} holds {found}, expected a dict with keys {keys}; {_TI_HOW}")
  images = np.asarray(blob["data"])
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
    raise DataError(f"{path}: 'data' is {images.dtype} {images.shape}, expected uint8 "
                    f"(N, 32, 32, 3); {_TI_HOW}")
  labels = _check_labels(np.asarray(blob["extrapolated_targets"]), len(images), num_classes,
                         f"{path}: 'extrapolated_targets'", _TI_HOW)
  return Candidates(images, labels, np.arange(len(images), dtype=np.int64))


# --- user arrays (.npz) -----------------------------------------------------------------


def _npz_file(path: str | None) -> str:
  if not path:
    raise DataError(f"{SOURCE_FIELD}='npz' needs {NPZ_FIELD}, the path of an .npz file; "
                    f"{_NPZ_HOW}")
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    raise DataError(f"expected an .npz file with 'x_unlabeled' (and optionally 'y_unlabeled') "
                    f"at {path}; {_NPZ_HOW}")
  return path


def _read_npz_pool(path: str, num_classes: int) -> Candidates:
  try:
    archive = np.load(path, allow_pickle=False)
  except Exception as e:  # Not a zip, truncated, a pickle, ...: all mean "not our npz".
    raise DataError(f"{path} is not a readable .npz file ({type(e).__name__}: {e}); "
                    f"{_NPZ_HOW}") from e
  if not hasattr(archive, "files"):
    raise DataError(f"{path} holds a single array, expected an .npz archive; {_NPZ_HOW}")
  with archive:
    if "x_unlabeled" not in archive.files:
      raise DataError(f"{path} lacks the array 'x_unlabeled' (has "
                      f"{', '.join(archive.files) or 'none'}); {_NPZ_HOW}")
    images = archive["x_unlabeled"]
    raw_labels = archive["y_unlabeled"] if "y_unlabeled" in archive.files else None
  if images.dtype != np.uint8:
    raise DataError(f"{path}: 'x_unlabeled' is {images.dtype}, expected uint8; {_NPZ_HOW}")
  images = images[..., None] if images.ndim == 3 else images
  if images.ndim != 4:
    raise DataError(f"{path}: 'x_unlabeled' has shape {images.shape}, expected (N, H, W, C) or "
                    f"(N, H, W); {_NPZ_HOW}")
  sources.check_channels_last(images.shape, f"{path}: 'x_unlabeled'")
  labels = None if raw_labels is None else _check_labels(
      raw_labels, len(images), num_classes, f"{path}: 'y_unlabeled'", _NPZ_HOW)
  return Candidates(images, labels, np.arange(len(images), dtype=np.int64))


# --- the draw ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Request:
  """What the error message needs to say how far the request is from fitting."""
  source: str
  field: str
  labeled_counts: Sequence[int] | None
  ratio: float | None
  factor: int | None
  draw_on: str = "labels"
  description: str | None = None  # What the pool draws from, if not its POOLS entry's words.

  @property
  def name(self) -> str:
    return self.description or POOLS[self.source].description

  @property
  def left_by_labeled(self) -> bool:
    """The pool is what the labeled subset left of its split: a smaller subset leaves more."""
    return self.source == "same_split" and self.description is None


DIRECTION_FIELD = "semi.unlabeled_direction"
DIRECTIONS = ("consistent", "uniform", "reversed")


def check_direction(direction: str, unlabeled_ratio: float) -> None:
  if direction not in DIRECTIONS:
    raise ConfigError(f"{DIRECTION_FIELD}={direction!r} is unknown; choose one of "
                      f"{DIRECTIONS}.")
  if direction == "uniform" and unlabeled_ratio != 1:
    raise ConfigError(f"{DIRECTION_FIELD}='uniform' draws every class alike, but "
                      f"{RATIO_FIELD}={unlabeled_ratio:g}; set {RATIO_FIELD}=1, or choose "
                      f"'consistent' or 'reversed' for an imbalanced pool.")


def pool_class_order(labeled_order: Sequence[int], direction: str) -> list[int]:
  """The classes in the order the pool's counts (largest first) are given to them: the
  labeled set's order, or, `reversed`, its tail first, so the pool's largest class is the
  labeled set's smallest. Drawing in that order keeps every message about the draw (which
  class is short, which factor or rho_U fits) in the terms of the request."""
  order = [int(c) for c in labeled_order]
  return order[::-1] if direction == "reversed" else order


def draw_rule(setting: str, source: str, labels: np.ndarray | None) -> str:
  """'labels' or 'predictions': what the per-class draw of this pool runs on.

  auto draws on the pool's own labels where it has them (same_split, svhn_extra, tinyimages'
  extrapolated targets, an .npz with 'y_unlabeled', CINIC-10's class folders, an image folder
  with class sub-folders: the reference's rule) and on the base model's predictions otherwise.
  """
  if setting not in DRAW_RULES:
    raise ConfigError(f"{DRAW_FIELD}={setting!r} is unknown; choose one of {DRAW_RULES}.")
  if setting == "labels" and labels is None:
    raise ConfigError(f"{DRAW_FIELD}='labels' but {SOURCE_FIELD}={source!r} gives no labels "
                      f"for its images; set {DRAW_FIELD}='predictions' (or 'auto') to draw on "
                      "the classes the base model predicts.")
  if setting == "auto":
    return "labels" if labels is not None else "predictions"
  return setting


def select_pool(images, labels: np.ndarray | None,
                counts_in_order: Sequence[int] | None, class_order: Sequence[int],
                rng: np.random.RandomState, *, source: str, field: str = RATIO_FIELD,
                source_indices: np.ndarray | None = None,
                labeled_counts: Sequence[int] | None = None,
                unlabeled_ratio: float | None = None,
                unlabeled_factor: int | None = None,
                description: str | None = None) -> Pool:
  """The reference's per-class draw of the pool, continuing `rng` after the labeled subset.

  For each class in `class_order`, shuffle that class's candidate indices with `rng` and keep
  the first counts_in_order[k]. counts_in_order=None takes the whole candidate pool in its own
  order and draws nothing from `rng`. A pool without labels is drawn on predictions instead
  (`request_pool`, `draw_by_predictions`). `images` may be an array or an ImageSource (the
  result then holds a lazy subset).

  `source_indices` (default 0..N-1) are the candidates' indices in their source array, as
  `candidate_pool` returns them. When a class holds fewer candidates than asked for, raises
  ConfigError before anything is drawn, naming every short class and what would fit; pass the
  labeled subset's counts in class order, rho_U and the factor so that it can say how much.

  requested_counts of the result are per class id: the request; for the whole pool, the
  pool's own class histogram (empty when the pool has no labels).
  """
  order = [int(c) for c in class_order]
  src = (np.arange(len(images), dtype=np.int64) if source_indices is None
         else np.asarray(source_indices, dtype=np.int64))
  if len(src) != len(images) or (labels is not None and len(labels) != len(images)):
    raise ValueError(f"{len(images)} pool images came with {len(src)} source indices and "
                     f"{'no' if labels is None else len(labels)} labels; they must agree.")
  if counts_in_order is None:
    return _whole_pool(images, labels, src, len(order), source)
  counts = _one_count_per_class(counts_in_order, order, field)
  if labels is None:
    raise ValueError("a pool without labels cannot be drawn by class; draw it on the base "
                     "model's predictions (request_pool, then draw_by_predictions).")
  context = _Request(source, field, labeled_counts, unlabeled_ratio, unlabeled_factor,
                     description=description)
  picked = _draw_by_class(np.asarray(labels), counts, order, rng, context)
  return Pool(image_source.take(images, picked), np.asarray(labels, dtype=np.int64)[picked],
              src[picked], longtail.counts_by_class(counts, order, len(order)), source)


def draw_requested(semi, candidates: Candidates, class_counts: Sequence[int],
                   labeled_order: Sequence[int], rng: np.random.RandomState, *,
                   description: str | None = None) -> Pool | PoolRequest:
  """The pool a config's semi.* fields ask of `candidates`, after a labeled set with
  `class_counts` (per class id) whose classes rank in `labeled_order`: rho_U counts of
  semi.unlabeled_factor x |D_L| given in semi.unlabeled_direction's order, drawn now on the
  candidates' labels (`select_pool`) or kept for a draw on predictions (`request_pool`), as
  semi.pool_draw_on says."""
  order = pool_class_order(labeled_order, semi.unlabeled_direction)
  counts = longtail.unlabeled_counts(int(sum(class_counts)), len(order), semi.unlabeled_ratio,
                                     semi.unlabeled_factor)
  context = dict(source=semi.pool_source, labeled_counts=[int(class_counts[c]) for c in order],
                 unlabeled_ratio=semi.unlabeled_ratio, unlabeled_factor=semi.unlabeled_factor,
                 description=description)
  if draw_rule(semi.pool_draw_on, semi.pool_source, candidates.labels) == "labels":
    return select_pool(candidates.images, candidates.labels, counts, order, rng,
                       source_indices=candidates.source_indices, **context)
  return request_pool(candidates, counts, order, rng, **context)


@dataclasses.dataclass(frozen=True)
class PoolRequest:
  """A pool to be drawn on the base model's predictions: the candidates, the request and the
  generator positioned right after the labeled subset (nothing drawn from it yet)."""
  candidates: Candidates
  counts_in_order: list[int]
  class_order: list[int]
  rng: np.random.RandomState
  requested_counts: list[int]  # Per class id, as Pool's.
  source: str
  context: _Request


def request_pool(candidates: Candidates, counts_in_order: Sequence[int],
                 class_order: Sequence[int], rng: np.random.RandomState, *, source: str,
                 labeled_counts: Sequence[int] | None = None,
                 unlabeled_ratio: float | None = None,
                 unlabeled_factor: int | None = None,
                 description: str | None = None) -> PoolRequest:
  """Checks what can be checked before the base model exists (one count per class, and the
  total T against the number of candidates) and keeps the request for `draw_by_predictions`."""
  order = [int(c) for c in class_order]
  counts = _one_count_per_class(counts_in_order, order, RATIO_FIELD)
  context = _Request(source, RATIO_FIELD, labeled_counts, unlabeled_ratio, unlabeled_factor,
                     draw_on="predictions", description=description)
  if sum(counts) > len(candidates.images):
    raise ConfigError(_total_shortage_message(sum(counts), len(candidates.images), context))
  return PoolRequest(candidates, counts, order, rng,
                     longtail.counts_by_class(counts, order, len(order)), source, context)


def draw_by_predictions(request: PoolRequest, predicted: np.ndarray,
                        take_available: bool = False) -> np.ndarray:
  """Positions (into the candidates) of the pool drawn on predicted classes: the reference's
  per-class draw with `predicted` in place of the pool's labels, on the same generator
  continuation; every class in order, `rng.shuffle` of its indices, the first u_c kept.

  A class the base model predicts for fewer candidates than asked for raises ConfigError,
  naming every short class and what would help, before anything is drawn; with
  `take_available` that class gives every candidate predicted for it instead.
  """
  predicted = np.asarray(predicted)
  if predicted.shape != (len(request.candidates.images),):
    raise ValueError(f"{predicted.shape} predictions for {len(request.candidates.images)} "
                     "candidates.")
  return _draw_by_class(predicted, request.counts_in_order, request.class_order, request.rng,
                        request.context, take_available)


def _one_count_per_class(counts_in_order: Sequence[int], order: list[int],
                         field: str) -> list[int]:
  counts = [int(n) for n in counts_in_order]
  if len(counts) != len(order):
    raise ConfigError(f"{len(counts)} unlabeled class counts were given for {len(order)} "
                      f"classes; {field} must describe one count per class.")
  return counts


def _whole_pool(images, labels: np.ndarray | None, src: np.ndarray,
                num_classes: int, source: str) -> Pool:
  if labels is None:
    return Pool(images, None, src, [], source)
  labels = np.asarray(labels, dtype=np.int64)
  histogram = np.bincount(labels, minlength=num_classes).tolist()
  return Pool(images, labels, src, histogram, source)


def _draw_by_class(labels: np.ndarray, counts: list[int], order: list[int],
                   rng: np.random.RandomState, request: _Request,
                   take_available: bool = False) -> np.ndarray:
  """Every class is shuffled, even one asked for 0 images, exactly as the reference does."""
  by_class = [np.where(labels == c)[0] for c in order]
  available = [len(idx) for idx in by_class]
  if any(n > a for n, a in zip(counts, available)) and not take_available:
    raise ConfigError(_shortage_message(counts, available, order, request))
  kept = []
  for idx, n in zip(by_class, counts):
    rng.shuffle(idx)
    kept.append(idx[:n])
  return np.concatenate(kept).astype(np.int64) if kept else np.zeros(0, np.int64)


# --- what fits --------------------------------------------------------------------------


def unlabeled_counts_real(num_labeled: int, num_classes: int, unlabeled_ratio: float,
                          factor: float) -> list[int]:
  """`longtail.unlabeled_counts` for a real factor, to find how far a request is from fitting.

  The same formula with T = factor * |D_L| as a float (rounded to 9 decimals, so that 2.51 * 100
  is 251, not 250.99999999999997): at integer factors every operation sees the same values, so
  the counts are identical. Configs take integer factors.
  """
  if unlabeled_ratio is None or unlabeled_ratio < 1:
    raise ConfigError(f"{RATIO_FIELD}={unlabeled_ratio!r} must be >= 1 (rho_U = largest / "
                      "smallest pool class).")
  total = round(num_labeled * factor, 9)
  if num_classes == 1:
    return [int(total)]
  first = total // num_classes
  imb = 1.0 / unlabeled_ratio
  raw = [int(first * (imb ** (i / (num_classes - 1.0)))) for i in range(num_classes)]
  if sum(raw) == 0:  # Tiny factors: longtail's formula would divide by zero.
    return [0] * num_classes
  scale = total / sum(raw)
  return [int(n * scale) for n in raw]


def max_fitting_factor(num_labeled: int, num_classes: int, unlabeled_ratio: float,
                       available_by_class_in_order: Sequence[int], *,
                       decimals: int = 2) -> float:
  """The largest factor f (a multiple of 10**-decimals; decimals=0: the largest integer, which
  is what configs take) whose pool counts all fit: unlabeled_counts(f)[k] <= available[k].

  Counts grow with f up to truncation wobbles of an image: the search scans integers down from
  a bound above which nothing fits, then the decimals above the largest fitting integer.
  Returns 0.0 when no positive factor on the grid fits, and inf when |D_L| = 0 (the pool is
  then empty at any factor).
  """
  available = [int(a) for a in available_by_class_in_order]
  if len(available) != num_classes:
    raise ValueError(f"{len(available)} available counts for {num_classes} classes.")
  if num_labeled <= 0:
    return math.inf
  fits = lambda f: all(u <= a for u, a in zip(
      unlabeled_counts_real(num_labeled, num_classes, unlabeled_ratio, f), available))
  weights = _pool_weights(num_classes, unlabeled_ratio)
  # Truncation costs class k at most 2C + 1 images once T >= 2C: count_k(f) >= T * w_k - 2C - 1,
  # so past this bound some class is certainly short.
  bound = min((a + 2 * num_classes + 2) / (num_labeled * w) for a, w in zip(available, weights))
  return _largest_on_grid(fits, bound + 1, decimals)


def _pool_weights(num_classes: int, unlabeled_ratio: float) -> list[float]:
  """Each class's share of the pool before truncation."""
  if num_classes == 1:
    return [1.0]
  raw = [(1.0 / unlabeled_ratio) ** (i / (num_classes - 1.0)) for i in range(num_classes)]
  return [r / sum(raw) for r in raw]


def _largest_on_grid(fits: Callable[[float], bool], upper: float, decimals: int) -> float:
  """The largest integer k <= upper that fits, then the largest k + j / 10**decimals that does."""
  whole = next((k for k in range(math.ceil(upper), 0, -1) if fits(float(k))), 0)
  scale = 10 ** decimals
  for j in range(scale - 1, 0, -1):
    f = (whole * scale + j) / scale
    if fits(f):
      return f
  return float(whole)


def _fitting_ratio(num_labeled: int, num_classes: int, factor: int, available: Sequence[int],
                   current: float) -> float | None:
  """The rho_U of `_RATIO_GRID` nearest (in log) to `current` that fits at `factor`, or None."""
  fitting = [r for r in _RATIO_GRID if all(u <= a for u, a in zip(
      longtail.unlabeled_counts(num_labeled, num_classes, r, factor), available))]
  if not fitting:
    return None
  return min(fitting, key=lambda r: abs(math.log(r / current)))


# --- messages ---------------------------------------------------------------------------


def _asked(request: _Request) -> str:
  if request.ratio is None or request.factor is None:
    return f"the unlabeled pool set by {request.field}"
  return f"{request.field}={request.ratio:g} with {FACTOR_FIELD}={request.factor}"


def _shortage_line(cls: int, asked: int, have: int, k: int, request: _Request) -> str:
  if request.draw_on == "predictions":
    return f"class {cls}: {asked} asked for, the base model predicts it for {have}"
  if request.left_by_labeled and request.labeled_counts is not None:
    return (f"class {cls}: {asked} asked for, but the training split keeps only {have} after "
            f"the labeled subset took {int(request.labeled_counts[k])}")
  return f"class {cls}: {asked} asked for, {have} exist"


def _fix_hint(request: _Request, fits_at: Callable[[int], float], ratio: float | None) -> str:
  """'Lower the factor to at most N (real X)', a rho_U that fits, then the source's own fix."""
  whole, real = fits_at(0), fits_at(2)
  if whole >= 1:
    lead, hints = "To fit, ", [f"lower {FACTOR_FIELD} to at most {int(whole)} (the largest real "
                               f"factor that fits is {real:.2f}; configs take integers)"]
  else:
    lead, hints = (f"No integer {FACTOR_FIELD} fits (the largest real factor that fits is "
                   f"{real:.2f}); to fit, "), []
  if ratio is not None:
    hints.append(f"set {RATIO_FIELD}={ratio:g}")
  if request.left_by_labeled:
    hints.append("lower the labeled dataset.img_max (it leaves more training images to the "
                 "pool)")
  else:
    hints.append(f"bring a larger pool ({SOURCE_FIELD}={request.source!r})")
  return lead + "; ".join(hints[:-1]) + (", or " if len(hints) > 1 else "") + hints[-1] + "."


def _shortage_message(counts: list[int], available: list[int], order: list[int],
                      request: _Request) -> str:
  short = [k for k, (n, a) in enumerate(zip(counts, available)) if n > a]
  lines = "; ".join(_shortage_line(order[k], counts[k], available[k], k, request) for k in short)
  if request.draw_on == "predictions":
    name = request.name.split(" (")[0]  # Its own classes are not used.
    text = (f"{_asked(request)} asks for more unlabeled images of some predicted classes than "
            f"{name} holds ({DRAW_FIELD} draws on the base model's predicted classes): "
            f"{lines}. A base model that seldom predicts a class is not helped by a larger "
            "pool of the same kind: a base trained with a balancing loss (its predictions "
            f"reach the tail; e.g. loss.name='balanced_softmax'), a larger {RATIO_FIELD} (the "
            "tail classes ask for fewer), or semi.short_class_policy='take_available' (take "
            "what there is; report.json records the shortfall) are the ways through.")
  else:
    text = (f"{_asked(request)} asks for more unlabeled images than "
            f"{request.name} holds: {lines}.")
  if request.labeled_counts is None or request.ratio is None:
    fraction = min(available[k] / counts[k] for k in short)
    return text + (f" Shrink the request to at most {fraction:.0%} of its size (lower "
                   f"{FACTOR_FIELD}) or bring a larger pool.")
  num_labeled = int(sum(request.labeled_counts))
  fits_at = lambda d: max_fitting_factor(num_labeled, len(order), request.ratio, available,
                                         decimals=d)
  ratio = (None if request.factor is None else
           _fitting_ratio(num_labeled, len(order), request.factor, available, request.ratio))
  return text + " " + _fix_hint(request, fits_at, ratio)


def _total_shortage_message(total: int, num_candidates: int, request: _Request) -> str:
  name = request.name.split(" (")[0]
  text = (f"{_asked(request)} asks for {total} unlabeled images but {name} holds only "
          f"{num_candidates} (the pool is drawn on the base model's predicted classes, so the "
          "total is what can be checked before it is trained).")
  if request.labeled_counts is None or request.ratio is None:
    return text + f" Lower {FACTOR_FIELD} or bring a larger pool."
  num_labeled, num_classes = int(sum(request.labeled_counts)), len(request.labeled_counts)
  fits = lambda f: sum(unlabeled_counts_real(num_labeled, num_classes, request.ratio, f)
                       ) <= num_candidates
  upper = (num_candidates + num_classes + 1) / max(num_labeled, 1) + 1  # sum >= T - C.
  fits_at = lambda d: _largest_on_grid(fits, upper, d)
  return text + " " + _fix_hint(request, fits_at, None)


# --- the table --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PoolSource:
  """One value of semi.pool_source: how its candidates are read, and what it needs."""
  read: Callable[[sources.Dataset, dict], Candidates]  # (labeled data, candidate_pool options)
  description: str  # What the pool draws from, for messages ("the x (classes by y)").
  labeled: bool = True  # Its images may come with labels: a draw on labels is possible.
  dataset: tuple[str, str] | None = None  # (the only dataset.name it serves, why).
  field: tuple[str, str] | None = None  # (the config field it needs, what that holds).
  check: Callable[[Any], None] | None = None  # Its own checks of a config.
  host_fed: bool = False  # It also serves host-fed list datasets, as files (`list_pools`).


def _tinyimages_candidates(data: sources.Dataset, options: dict) -> tuple[Candidates, str]:
  path = _tinyimages_file(options["tinyimages_path"])
  return _read_tinyimages(path, data.num_classes), path


def _npz_candidates(data: sources.Dataset, options: dict) -> tuple[Candidates, str]:
  path = _npz_file(options["npz_path"])
  return _read_npz_pool(path, data.num_classes), path


def _check_cinic10_splits(config) -> None:
  splits = tuple(config.semi.cinic10_splits)
  if not splits or any(s not in open_pools.CINIC10_SPLITS for s in splits):
    raise ConfigError(f"semi.cinic10_splits={splits} must be a non-empty subset of "
                      f"{open_pools.CINIC10_SPLITS}.")


POOLS: dict[str, PoolSource] = {
    "same_split": PoolSource(
        lambda data, o: _same_split(data, o["excluded_train_indices"]),
        "the training split (without the labeled subset and validation images; for a list "
        "dataset, the images in its training folders that no list names)", host_fed=True),
    "svhn_extra": PoolSource(
        _arrays(lambda data, o: (_svhn_extra(data), "SVHN's extra split (extra_32x32.mat)")),
        "SVHN's extra split", dataset=("svhn", "")),
    "tinyimages": PoolSource(
        _arrays(_tinyimages_candidates),
        "the TinyImages pickle (classes by 'extrapolated_targets')"),
    "npz": PoolSource(
        _arrays(_npz_candidates), "the .npz pool (classes by 'y_unlabeled')"),
    "cinic10": PoolSource(
        _open(lambda data, o, shape: open_pools.cinic10(o["cinic10_dir"], shape,
                                                        o["cinic10_splits"])),
        "CINIC-10's ImageNet-derived images (classes by folder)",
        dataset=("cifar10", " (its class folders are CIFAR-10's classes); use 'image_folder' "
                            "for other data"), check=_check_cinic10_splits),
    "stl10_unlabeled": PoolSource(
        _open(lambda data, o, shape: open_pools.stl10_unlabeled(o["tfds_data_dir"], shape)),
        "STL-10's unlabelled split", labeled=False),
    "image_folder": PoolSource(
        _open(lambda data, o, shape: open_pools.image_folder(o["image_folder"], shape,
                                                             data.name, data.num_classes)),
        "the image folder (classes by sub-folder)",
        field=("semi.image_folder", "a folder of PNG / JPEG files"), host_fed=True),
}


def host_fed_pools() -> tuple[str, ...]:
  """The values of semi.pool_source that host-fed list datasets can draw from."""
  return tuple(name for name, entry in POOLS.items() if entry.host_fed)
