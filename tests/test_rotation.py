"""Rotation labels and images against np.rot90 on known arrays."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lt_jax.pretrain import rotation


def known_images(n=6, size=5, c=2):
  return np.arange(n * size * size * c, dtype=np.uint8).reshape(n, size, size, c)


def test_rotate_batch_matches_np_rot90():
  images = known_images()
  rotated, ks = jax.jit(rotation.rotate_batch)(jax.random.key(0), jnp.asarray(images))
  rotated, ks = np.asarray(rotated), np.asarray(ks)
  for image, out, k in zip(images, rotated, ks):
    np.testing.assert_array_equal(out, np.rot90(image, k, axes=(0, 1)))


def test_quarter_turn_is_counter_clockwise():
  image = np.array([[1, 2], [3, 4]], np.uint8)[..., None]
  out = np.asarray(rotation.rot90(jnp.asarray(image), jnp.asarray(1)))[..., 0]
  np.testing.assert_array_equal(out, [[2, 4], [1, 3]])


@pytest.mark.parametrize("batch", [4, 7, 128])
def test_rotations_are_balanced_within_a_batch(batch):
  ks = np.asarray(rotation.balanced_rotations(jax.random.key(3), batch))
  counts = np.bincount(ks, minlength=4)
  assert counts.sum() == batch and counts.max() - counts.min() <= 1


def test_rotated_copies_cover_all_four():
  images = known_images(3)
  out, ks = rotation.rotated_copies(images)
  assert out.shape == (12, 5, 5, 2) and ks.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
  for i in range(12):
    np.testing.assert_array_equal(out[i], np.rot90(images[i % 3], ks[i], axes=(0, 1)))


def test_non_square_images_are_refused():
  with pytest.raises(ValueError, match="square"):
    rotation.rot90(jnp.zeros((4, 5, 1)), jnp.asarray(1))
