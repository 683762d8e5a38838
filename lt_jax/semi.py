"""Semi-supervised data: the unlabeled pool a config describes, and D_L plus its pseudo-labels.

A pool drawn on its own labels is drawn right after the labeled subset from the same seeded
generator (as the reference does), so it is a pure function of the config: the final stage
re-draws it and checks that the pseudo-label file was made for exactly this pool. A pool drawn
on the base model's predictions (`semi.pool_draw_on`) depends on that model: the pseudo-label
stage draws it and records the kept source indices, and the final stage loads exactly those
images once the file's provenance (pool source, draw rule, the source's listing, the per-class
counts of the request) matches this config.
"""

from __future__ import annotations

import dataclasses
import hashlib

import ml_collections
import numpy as np

from lt_jax import predict, pseudo_label
from lt_jax import workdir as workdir_lib
from lt_jax.config import get_base_config
from lt_jax.data import datasets, image_source, longtail, unlabeled
from lt_jax.data import prepare as prepare_lib
from lt_jax.data.sources import Split
from lt_jax.errors import ConfigError, DataError


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
  order = datasets.get(data.name).order(data.num_classes)
  counts = longtail.unlabeled_counts(len(data.train.labels), data.num_classes,
                                     semi.unlabeled_ratio, semi.unlabeled_factor)
  context = dict(source=semi.pool_source, labeled_counts=[data.class_counts[c] for c in order],
                 unlabeled_ratio=semi.unlabeled_ratio, unlabeled_factor=semi.unlabeled_factor)
  if unlabeled.draw_rule(semi.pool_draw_on, semi.pool_source, candidates.labels) == "labels":
    return unlabeled.select_pool(candidates.images, candidates.labels, counts, order, drawn.rng,
                                 source_indices=candidates.source_indices, **context)
  return unlabeled.request_pool(candidates, counts, order, drawn.rng, **context)


def _fingerprint(images) -> str:
  """Names the pool's images and their order: an image source's own listing, or an array's
  shape and the SHA-256 of its bytes (another array of the same shape is another pool)."""
  if isinstance(images, image_source.ImageSource):
    return images.fingerprint
  digest = hashlib.sha256(np.ascontiguousarray(images).data).hexdigest()[:16]
  return f"array:{tuple(images.shape)}:sha256:{digest}"


def pseudo_label_pool(config: ml_collections.ConfigDict, base_dir: str,
                      pool: unlabeled.Pool | unlabeled.PoolRequest,
                      labeled: prepare_lib.LongTailData, path: str) -> None:
  """Labels `pool` with the frozen base model in `base_dir` and writes the .npz at `path`.

  A PoolRequest is drawn here: every candidate is labeled (streamed in batches), the rho_U
  counts are drawn per predicted class, and only the drawn images are recorded. A predicted
  class too rare for its count stops the run here, before the final stage trains.
  """
  semi = config.semi
  frozen = predict.load_frozen(base_dir, which=semi.base_checkpoint)
  label = lambda images: pseudo_label.predict(
      frozen, images, labeled.mean, labeled.std, batch_size=semi.label_batch_size,
      log=lambda line: print(line, flush=True))
  if isinstance(pool, unlabeled.PoolRequest):
    candidates = pool.candidates
    print(f"labeling all {len(candidates.images)} candidates of {semi.pool_source} to draw "
          "the pool on their predicted classes", flush=True)
    pred, confidence = label(candidates.images)
    try:
      picked = unlabeled.draw_by_predictions(
          pool, pred, take_available=semi.short_class_policy == "take_available")
    except ConfigError as e:
      raise ConfigError(f"{e} The base model is trained: in a new workdir, "
                        f"--config.semi.base_workdir={base_dir} skips its training.") from e
    indices, pred, confidence = candidates.source_indices[picked], pred[picked], confidence[picked]
    true_labels = None if candidates.labels is None else candidates.labels[picked]
    draw_on, fingerprint = "predictions", _fingerprint(candidates.images)
  else:
    pred, confidence = label(pool.images)
    indices, true_labels = pool.source_indices, pool.true_labels
    draw_on, fingerprint = "labels", _fingerprint(pool.images)
  keep = pseudo_label.select(pred, confidence, labeled.num_classes,
                             threshold=semi.confidence_threshold,
                             per_class_max=semi.per_class_max)
  pseudo_label.write_pseudo_labels(
      path, indices=indices, pred=pred, confidence=confidence, keep=keep,
      true_labels=true_labels,
      provenance={"pool_source": semi.pool_source, "pool_draw_on": draw_on,
                  "pool_fingerprint": fingerprint})


def _different_pool(path: str, why: str) -> DataError:
  return DataError(f"{path} was made for a different unlabeled pool than this config draws "
                   f"({why}); regenerate it in a new workdir.")


def _check_provenance(path: str, saved: dict, expected: dict[str, str]) -> None:
  """The file's pool source, draw rule and source listing must be this config's. Files
  written before these were recorded hold none; only a draw on labels can be checked then
  (by its indices), so they pass here as 'labels'."""
  recorded = {k: str(saved[k]) for k in pseudo_label.PROVENANCE_KEYS if k in saved}
  recorded.setdefault("pool_draw_on", "labels")
  for key, want in expected.items():
    legacy = key == "pool_fingerprint" and recorded.get(key) == want.split(":sha256:")[0]
    if key in recorded and recorded[key] != want and not legacy:  # Legacy: the shape alone.
      raise _different_pool(path, f"{key}: the file says {recorded[key]!r}, the config "
                                  f"gives {want!r}")


def shortfall(request: unlabeled.PoolRequest, drawn_classes: np.ndarray) -> list[int]:
  """Per class id, how many images fewer than asked a draw on predictions holds."""
  asked = np.asarray(request.requested_counts)
  got = np.bincount(np.asarray(drawn_classes, np.int64), minlength=len(asked))[:len(asked)]
  return np.maximum(asked - got, 0).tolist()


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
  pool = draw_pool(config, drawn)
  path = config.semi.pseudo_labels
  labels_file = pseudo_label.read_pseudo_labels(path, drawn.data.num_classes)
  if isinstance(pool, unlabeled.PoolRequest):
    _check_provenance(path, labels_file, {
        "pool_source": pool.source, "pool_draw_on": "predictions",
        "pool_fingerprint": _fingerprint(pool.candidates.images)})
    pool_images = _drawn_on_predictions(
        path, labels_file, pool, config.semi.short_class_policy == "take_available")
  else:
    _check_provenance(path, labels_file, {
        "pool_source": pool.source, "pool_draw_on": "labels",
        "pool_fingerprint": _fingerprint(pool.images)})
    if not np.array_equal(labels_file["indices"], pool.source_indices):
      raise _different_pool(path, "dataset or semi settings changed")
    pool_images = pool.images
  keep = labels_file["keep"].astype(bool)
  data = drawn.data
  kept = image_source.to_array(image_source.take(pool_images, np.flatnonzero(keep)))
  images = np.concatenate([data.train.images, kept])
  labels = np.concatenate([data.train.labels,
                           labels_file["pseudo_labels"][keep].astype(np.int64)])
  counts = np.bincount(labels, minlength=data.num_classes).tolist()
  return dataclasses.replace(data, train=Split(images, labels), class_counts=counts,
                             num_labeled=len(data.train.labels),
                             group_counts=data.class_counts)


# The fields that decide which images and labels a run's labeled set D_L holds.
LABELED_SET_FIELDS = ("name", "source", "npz_path", "imb_type", "imbalance_ratio", "img_max",
                      "lt_seed", "val_per_class", "test_fraction", "image_size")


def check_base(config: ml_collections.ConfigDict, base_dir: str, base: dict,
               labeled: prepare_lib.LongTailData) -> None:
  """A base model given by semi.base_workdir must have trained on this run's labeled set: its
  pseudo-labels and its "base" row would otherwise belong to another one."""
  theirs = workdir_lib.read_config(base_dir).get("dataset", {})
  # A field the base's version did not have yet (absent there) held its default then.
  defaults = get_base_config().dataset
  differ = [f"dataset.{k} ({theirs.get(k, defaults[k])!r} there, {config.dataset[k]!r} here)"
            for k in LABELED_SET_FIELDS if theirs.get(k, defaults[k]) != config.dataset[k]]
  counts = base.get("class_counts")
  if not differ and counts is not None and list(counts) != list(labeled.class_counts):
    differ = [f"its class counts ({counts} there, {list(labeled.class_counts)} here)"]
  if differ:
    raise ConfigError(f"semi.base_workdir={base_dir!r} trained on another labeled set: "
                      f"{'; '.join(differ)}. Leave semi.base_workdir empty to train the base "
                      "here, or point it at a base trained with these dataset.* fields.")

