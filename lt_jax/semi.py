"""Semi-supervised data: the unlabeled pool a config describes, the pseudo-label file, and D_L
plus its pseudo-labels. A library module: the pseudo-labeling stage (pseudo_label.py) labels
the pool and writes the file; the final stage's input reads it back here.

A pool drawn on its own labels is drawn right after the labeled subset from the same seeded
generator (as the reference does), so it is a pure function of the config: the final stage
re-draws it and checks that the pseudo-label file was made for exactly this pool. A pool drawn
on the base model's predictions (`semi.pool_draw_on`) depends on that model: the pseudo-label
stage draws it and records the kept source indices, and the final stage loads exactly those
images once the file's provenance (pool source, draw rule, the source's listing, the per-class
counts of the request) matches this config.

A host-fed list dataset's pool is image files (`data.list_pools`); its final stage trains on
the training list followed by the kept pool files (`training_list_with_pseudo_labels`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile

import ml_collections
import numpy as np

from lt_jax import io_utils, parallel
from lt_jax import workdir as workdir_lib
from lt_jax.data import datasets, image_source, list_pools, unlabeled
from lt_jax.data import prepare as prepare_lib
from lt_jax.data.image_lists import ImageList
from lt_jax.data.sources import Split
from lt_jax.errors import DataError


def draw_labeled(config: ml_collections.ConfigDict) -> prepare_lib.Draw:
  """The labeled draw of a semi-supervised config (with SVHN's extra split if the pool is it)."""
  return prepare_lib.draw(config.dataset,
                          with_extra=config.semi.pool_source == "svhn_extra")


def draw_pool(config: ml_collections.ConfigDict, drawn: prepare_lib.Draw
              ) -> unlabeled.Pool | unlabeled.PoolRequest:
  """The unlabeled pool D_U for this config (never the test split, never a labeled or
  validation image): drawn now on the pool's labels, or, when it is drawn on predictions, a
  PoolRequest that `pseudo_label_pool` draws once the base model exists."""
  semi, data = config.semi, drawn.data
  candidates = unlabeled.candidate_pool(
      semi.pool_source, drawn.source, excluded_train_indices=drawn.used_train_indices,
      tinyimages_path=semi.tinyimages_path, npz_path=semi.pool_npz_path,
      cinic10_dir=semi.cinic10_dir, cinic10_splits=tuple(semi.cinic10_splits),
      image_folder=semi.image_folder, tfds_data_dir=semi.tfds_data_dir)
  return unlabeled.draw_requested(semi, candidates, data.class_counts,
                                  datasets.get(data.name).order(data.num_classes), drawn.rng)


def fingerprint(images) -> str:
  """Names the pool's images and their order: an image source's or file list's own listing,
  or an array's shape and the SHA-256 of its bytes (another array of the same shape is another
  pool)."""
  if isinstance(images, image_source.ImageSource):
    return images.fingerprint
  if isinstance(images, ImageList):
    return list_pools.fingerprint(images)
  digest = hashlib.sha256(np.ascontiguousarray(images).data).hexdigest()[:16]
  return f"array:{tuple(images.shape)}:sha256:{digest}"


def _different_pool(path: str, why: str) -> DataError:
  return DataError(f"{path} was made for a different unlabeled pool than this config draws "
                   f"({why}); regenerate it in a new workdir.")


def _check_provenance(path: str, saved: dict, expected: dict[str, str]) -> None:
  """The file's pool source, draw rule and source listing must be this config's. Files
  written before these were recorded hold none; only a draw on labels can be checked then
  (by its indices), so they pass here as 'labels'."""
  recorded = {k: str(saved[k]) for k in PROVENANCE_KEYS if k in saved}
  recorded.setdefault("pool_draw_on", "labels")
  for key, want in expected.items():
    legacy = key == "pool_fingerprint" and recorded.get(key) == want.split(":sha256:")[0]
    if key in recorded and recorded[key] != want and not legacy:  # Legacy: the shape alone.
      raise _different_pool(path, f"{key}: the file says {recorded[key]!r}, the config "
                                  f"gives {want!r}")


def _drawn_on_predictions(path: str, saved: dict, request: unlabeled.PoolRequest,
                          take_available: bool):
  """The candidates' images at the file's source indices, once the file's predicted classes
  match this config's request (exactly, or at most it with take_available)."""
  candidates = request.candidates
  indices, pseudo = saved["indices"], saved["pseudo_labels"]
  got = np.bincount(pseudo, minlength=len(request.requested_counts)).tolist()
  allowed = take_available and all(g <= n for g, n in zip(got, request.requested_counts))
  if got != request.requested_counts and not allowed:
    raise _different_pool(path, f"its images per predicted class are {got}, the config asks "
                                f"for {request.requested_counts}")
  where = np.searchsorted(candidates.source_indices, indices)
  found = where < len(candidates.source_indices)
  found[found] = candidates.source_indices[where[found]] == indices[found]
  if not found.all() or len(np.unique(indices)) != len(indices):
    raise _different_pool(path, "some of its indices are not candidates of this pool, or "
                                "repeat")
  return image_source.take(candidates.images, where)


def training_data_with_pseudo_labels(config: ml_collections.ConfigDict
                                     ) -> prepare_lib.LongTailData:
  """D_L followed by the kept pseudo-labeled pool images; class counts (for weights and
  margins) include the pseudo-labels, as in the reference."""
  drawn = draw_labeled(config)
  data = drawn.data
  kept, pseudo = _kept_pool(config, draw_pool(config, drawn), data.num_classes)
  # Lazy where D_L is read from files (dataset.feed='host'), else one array.
  images = image_source.concat([data.train.images, kept if isinstance(
      data.train.images, image_source.ImageSource) else image_source.to_array(kept)])
  labels = np.concatenate([data.train.labels, pseudo])
  counts = np.bincount(labels, minlength=data.num_classes).tolist()
  return dataclasses.replace(data, train=Split(images, labels), class_counts=counts,
                             num_labeled=len(data.train.labels),
                             group_counts=data.class_counts)


def training_list_with_pseudo_labels(config: ml_collections.ConfigDict,
                                     splits: dict[str, ImageList | None],
                                     num_classes: int) -> ImageList:
  """A host-fed dataset's training list followed by the kept pool files with their
  pseudo-labels (`list_pools`)."""
  kept, pseudo = _kept_pool(config, list_pools.draw(config, splits, num_classes), num_classes)
  return splits["train"].with_rows(dataclasses.replace(kept, labels=pseudo))


def _kept_pool(config: ml_collections.ConfigDict, pool: unlabeled.Pool | unlabeled.PoolRequest,
               num_classes: int):
  """The kept pool images (an array, ImageSource or ImageList) and their pseudo-labels, once
  the file at semi.pseudo_labels is shown to be this pool's."""
  path = config.semi.pseudo_labels
  labels_file = read_pseudo_labels(path, num_classes)
  if isinstance(pool, unlabeled.PoolRequest):
    _check_provenance(path, labels_file, {
        "pool_source": pool.source, "pool_draw_on": "predictions",
        "pool_fingerprint": fingerprint(pool.candidates.images)})
    pool_images = _drawn_on_predictions(
        path, labels_file, pool, config.semi.short_class_policy == "take_available")
  else:
    _check_provenance(path, labels_file, {
        "pool_source": pool.source, "pool_draw_on": "labels",
        "pool_fingerprint": fingerprint(pool.images)})
    if not np.array_equal(labels_file["indices"], pool.source_indices):
      raise _different_pool(path, "dataset or semi settings changed")
    pool_images = pool.images
  keep = np.flatnonzero(labels_file["keep"].astype(bool))
  return (image_source.take(pool_images, keep),
          labels_file["pseudo_labels"][keep].astype(np.int64))


REQUIRED_KEYS = ("indices", "pseudo_labels", "confidences", "keep")
# Where the pool came from, stored as 0-d strings beside the per-image arrays.
PROVENANCE_KEYS = ("pool_source", "pool_draw_on", "pool_fingerprint")


# --- files ----------------------------------------------------------------------------------


def write_pseudo_labels(path: str, *, indices, pred, confidence, keep, true_labels=None,
                        provenance: dict[str, str] | None = None,
                        overwrite: bool = False) -> str:
  """Writes the .npz atomically; refuses to replace an existing file unless overwrite=True.

  `provenance` (keys of PROVENANCE_KEYS) is stored as 0-d strings so that a later stage can
  check the file was made for its pool.
  """
  arrays = {"indices": np.asarray(indices, np.int64),
            "pseudo_labels": np.asarray(pred, np.int64),
            "confidences": np.asarray(confidence, np.float32),
            "keep": np.asarray(keep, bool)}
  if true_labels is not None:
    arrays["true_labels"] = np.asarray(true_labels, np.int64)
  lengths = {k: v.shape for k, v in arrays.items()}
  if len(set(lengths.values())) != 1 or arrays["indices"].ndim != 1:
    raise ValueError(f"pseudo-label arrays must be 1-D of one length, got {lengths}.")
  unknown = sorted(set(provenance or {}) - set(PROVENANCE_KEYS))
  if unknown:
    raise ValueError(f"unknown provenance keys {unknown}; use {PROVENANCE_KEYS}.")
  arrays.update({k: np.asarray(str(v)) for k, v in (provenance or {}).items()})
  # Process 0 alone writes; another process would find its file here when it is done first.
  if parallel.is_main_process() and os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it, or "
                          "write to another path.")

  def write(tmp: str) -> None:
    with open(tmp, "wb") as f:  # A file object: np.savez would add .npz to a bare name.
      np.savez(f, **arrays)

  io_utils.atomic_write(path, write)
  return path


def read_pseudo_labels(path: str, num_classes: int | None = None) -> dict[str, np.ndarray]:
  """The arrays written by write_pseudo_labels, checked for the required keys and, given
  `num_classes`, every pseudo-label (and true label) for the range 0..num_classes-1: a file
  changed by hand or made for another dataset must not train a model of other classes."""
  if not os.path.isfile(path):
    raise DataError(f"no pseudo-label file at {path}; run the pseudo-label stage first.")
  try:
    with np.load(path, allow_pickle=False) as f:
      out = {k: f[k] for k in f.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise DataError(f"{path} is not a readable .npz ({e}); delete it and rerun the "
                    "pseudo-label stage.") from e
  for key in REQUIRED_KEYS:
    if key not in out:
      raise DataError(f"{path} lacks the array {key!r}; it was not written by "
                      "write_pseudo_labels: delete it and rerun the pseudo-label stage.")
  lengths = {k: v.shape for k, v in out.items() if k not in PROVENANCE_KEYS}
  if len(set(lengths.values())) != 1:
    raise DataError(f"{path} holds arrays of different lengths {lengths}; rerun the "
                    "pseudo-label stage.")
  if num_classes is not None:
    for key in ("pseudo_labels", "true_labels"):
      if key in out:
        _check_label_range(path, key, out[key], num_classes)
  _check_unchanged(path)
  return out


def _rebuilt_by_deleting(path: str) -> str:
  """The end of every message about a damaged pseudo-label file: its stage folder (the file
  and its report.json) gone, the same command writes both again."""
  return (f"{os.path.dirname(os.path.abspath(path))} and run the same command again: the "
          "pseudo-label stage rebuilds it.")


def _check_label_range(path: str, key: str, labels: np.ndarray, num_classes: int) -> None:
  if not np.issubdtype(labels.dtype, np.integer):
    raise DataError(f"{path}: {key!r} is {labels.dtype}, not integer class ids; delete "
                    + _rebuilt_by_deleting(path))
  bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if bad.size:
    raise DataError(f"{path}: {key!r} holds {bad.size} labels outside 0..{num_classes - 1} (row "
                    f"{bad[0]}: {labels[bad[0]]}); the file was changed or made for another "
                    "dataset. Delete " + _rebuilt_by_deleting(path))


def _check_unchanged(path: str) -> None:
  """A file that its stage's report.json describes must still have the checksum recorded
  there: labels edited in range (all shifted by one, say) pass every other check. The stage
  itself reads its file before it writes the report, so there is nothing to compare yet."""
  report_path = os.path.join(os.path.dirname(path), workdir_lib.PSEUDO_LABEL_REPORT_FILE)
  if not os.path.isfile(report_path):
    return  # Not yet reported, or a file of the user's own.
  with open(report_path) as f:
    recorded = json.load(f).get("sha256")
  if recorded is not None and recorded != io_utils.sha256_file(path):
    raise DataError(f"{path} changed after the pseudo-label stage wrote it (its SHA-256 is not "
                    f"the one in {report_path}); delete " + _rebuilt_by_deleting(path))
