"""Rotation prediction (Gidaris et al. 2018), the paper's pretext task for CIFAR-size data.

Each training image gets one rotation k in {0, 1, 2, 3} (k quarter turns counter-clockwise,
`np.rot90(image, k)`), applied after the usual augmentation; a 4-way head predicts k. As in the
reference, a batch's rotations are a shuffled [0, 1, 2, 3, 0, 1, ...] truncated to the batch, so
every rotation appears equally often (within one) in every batch. The test images are
evaluated under all four rotations, so rotation accuracy has no sampling noise.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lt_jax.data import image_source
from lt_jax.data.prepare import LongTailData
from lt_jax.data.sources import Split

NUM_ROTATIONS = 4
# Config field `task`: classify the images, or predict their rotation (the pretext task).
TASKS = ("classify", "rotation")


def rot90(image: jax.Array, k: jax.Array) -> jax.Array:
  """Rotates a square HWC image by k quarter turns counter-clockwise (k may be traced)."""
  if image.shape[0] != image.shape[1]:
    raise ValueError(f"rotation prediction needs square images, got {image.shape[:2]}.")
  return jax.lax.switch(k, [lambda x, t=t: jnp.rot90(x, t, axes=(0, 1)) for t in range(4)],
                        image)


def balanced_rotations(key: jax.Array, batch_size: int) -> jax.Array:
  """A permutation of [0, 1, 2, 3] * ceil(B / 4), truncated to B (the reference's draw)."""
  repeats = -(-batch_size // NUM_ROTATIONS)
  ks = jnp.tile(jnp.arange(NUM_ROTATIONS, dtype=jnp.int32), repeats)
  return jax.random.permutation(key, ks)[:batch_size]


def rotate_batch(key: jax.Array, images: jax.Array, labels: jax.Array | None = None
                 ) -> tuple[jax.Array, jax.Array]:
  """(images [B, H, W, C], any labels) -> (rotated images, rotation labels k)."""
  del labels  # The class labels are never used by the pretext task.
  ks = balanced_rotations(key, images.shape[0])
  return jax.vmap(rot90)(images, ks), ks


def rotated_copies(images) -> tuple[np.ndarray, np.ndarray]:
  """All four rotations of every image (host side, for evaluation): [4N, H, W, C] and k [4N];
  an ImageSource is decoded."""
  images = image_source.to_array(images)
  rotated = np.concatenate([np.rot90(images, k, axes=(1, 2)) for k in range(NUM_ROTATIONS)])
  ks = np.repeat(np.arange(NUM_ROTATIONS), len(images))
  return np.ascontiguousarray(rotated), ks.astype(np.int64)


def rotation_data(data: LongTailData) -> LongTailData:
  """Rotation prediction on the same (imbalanced) training images: 4 classes; the test and
  validation images under all four rotations."""

  def rotated(split):
    if split is None:
      return None
    return Split(*rotated_copies(split.images))

  counts = [len(data.train.labels)] * NUM_ROTATIONS  # Every rotation equally likely per image.
  return dataclasses.replace(data, val=rotated(data.val), test=rotated(data.test),
                             num_classes=NUM_ROTATIONS, class_counts=counts, num_labeled=None,
                             group_counts=None)
