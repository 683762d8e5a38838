"""Semi-supervised data: the unlabeled pool a config describes, and D_L plus its pseudo-labels.

The pool is drawn right after the labeled subset from the same seeded generator (as the
reference does), so it is a pure function of the config: the final stage re-draws it and checks
that the pseudo-label file was made for exactly this pool.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from lt_jax import pseudo_label
from lt_jax.data import longtail, unlabeled
from lt_jax.data import prepare as prepare_lib
from lt_jax.data.sources import Split
from lt_jax.errors import DataError


def draw_labeled(config: ml_collections.ConfigDict) -> prepare_lib.Draw:
  """The labeled draw of a semi-supervised config (with SVHN's extra split if the pool is it)."""
  return prepare_lib.draw(config.dataset,
                          with_extra=config.semi.pool_source == "svhn_extra")


def draw_pool(config: ml_collections.ConfigDict, drawn: prepare_lib.Draw) -> unlabeled.Pool:
  """The unlabeled pool D_U for this config (never the test split, never a labeled or
  validation image)."""
  semi, data = config.semi, drawn.data
  candidates = unlabeled.candidate_pool(
      semi.pool_source, drawn.source, excluded_train_indices=drawn.used_train_indices,
      tinyimages_path=semi.tinyimages_path, npz_path=semi.pool_npz_path)
  order = prepare_lib.class_order(data.name, data.num_classes)
  labeled_in_order = [data.class_counts[c] for c in order]
  counts = longtail.unlabeled_counts(len(data.train.labels), data.num_classes,
                                     semi.unlabeled_ratio, semi.unlabeled_factor)
  return unlabeled.select_pool(
      candidates.images, candidates.labels, counts, order, drawn.rng, source=semi.pool_source,
      source_indices=candidates.source_indices, labeled_counts=labeled_in_order,
      unlabeled_ratio=semi.unlabeled_ratio, unlabeled_factor=semi.unlabeled_factor)


def training_data_with_pseudo_labels(config: ml_collections.ConfigDict
                                     ) -> prepare_lib.LongTailData:
  """D_L followed by the kept pseudo-labeled pool images; class counts (for weights and
  margins) include the pseudo-labels, as in the reference."""
  drawn = draw_labeled(config)
  pool = draw_pool(config, drawn)
  labels_file = pseudo_label.read_pseudo_labels(config.semi.pseudo_labels)
  if not np.array_equal(labels_file["indices"], pool.source_indices):
    raise DataError(f"{config.semi.pseudo_labels} was made for a different unlabeled pool than "
                    "this config draws (dataset or semi settings changed); regenerate it in a "
                    "new workdir.")
  keep = labels_file["keep"].astype(bool)
  data = drawn.data
  images = np.concatenate([data.train.images, pool.images[keep]])
  labels = np.concatenate([data.train.labels,
                           labels_file["pseudo_labels"][keep].astype(np.int64)])
  counts = np.bincount(labels, minlength=data.num_classes).tolist()
  return dataclasses.replace(data, train=Split(images, labels), class_counts=counts,
                             num_labeled=len(data.train.labels),
                             group_counts=data.class_counts)
