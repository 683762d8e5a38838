"""Crop-and-flip augmentation on known arrays."""

import jax
import jax.numpy as jnp
import numpy as np

from lt_jax.data import augment


def ramp(h=6, w=6, c=2):
  return (np.arange(h * w * c).reshape(h, w, c) % 250 + 1).astype(np.uint8)


def all_crops(image, pad):
  """Every image RandomCrop(size, padding=pad) can produce, before the flip."""
  h, w, _ = image.shape
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
  return [padded[t:t + h, x:x + w] for t in range(2 * pad + 1) for x in range(2 * pad + 1)]


def test_crop_is_a_zero_padded_window():
  image = ramp()
  candidates = all_crops(image, 2)
  for seed in range(20):
    out = np.asarray(augment.random_crop(jax.random.key(seed), jnp.asarray(image), 2))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert any(np.array_equal(out, c) for c in candidates)


def test_crop_reaches_every_offset_and_flip_both_ways():
  image = ramp()
  candidates = all_crops(image, 1)
  seen, flips = set(), set()
  batch = jnp.asarray(np.repeat(image[None], 400, axis=0))
  out = np.asarray(augment.crop_flip(jax.random.key(0), batch, padding=1))
  for o in out:
    matches = [i for i, c in enumerate(candidates) if np.array_equal(o, c)]
    flipped = [i for i, c in enumerate(candidates) if np.array_equal(o, c[:, ::-1])]
    assert matches or flipped
    seen.update(matches or flipped)
    flips.add(bool(flipped) and not matches)
  assert seen == set(range(9)) and flips == {True, False}


def test_same_key_same_batch_and_padding_zero_is_identity_crop():
  batch = jnp.asarray(np.stack([ramp(), ramp()[::-1]]))
  a = augment.crop_flip(jax.random.key(3), batch)
  b = augment.crop_flip(jax.random.key(3), batch)
  np.testing.assert_array_equal(a, b)
  unflipped = augment.crop_flip(jax.random.key(3), batch, padding=0, flip=False)
  np.testing.assert_array_equal(unflipped, batch)


def test_normalize_matches_totensor_normalize():
  x = np.array([[[[0, 128, 255]]]], np.uint8)
  mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
  got = np.asarray(augment.normalize(jnp.asarray(x), mean, std))
  expected = (x / 255.0 - np.array(mean)) / np.array(std)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
