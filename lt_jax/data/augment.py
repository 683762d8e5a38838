"""Augmentations written in JAX, run per image inside the jitted train step.

Each image gets its own key (split from the step's key), so a batch's augmentation is a pure
function of that key: resuming from a checkpoint replays exactly the same crops and flips.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

AUGMENTS = ("crop_flip", "none")  # config field augment.name


def random_crop(key: jax.Array, image: jax.Array, padding: int) -> jax.Array:
  """Zero-pads an HWC image by `padding` on each side and crops back to its size at a random
  offset, as torchvision's RandomCrop(size, padding=p) with its default fill 0 does."""
  if padding == 0:
    return image
  h, w, _ = image.shape
  padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  ky, kx = jax.random.split(key)
  top = jax.random.randint(ky, (), 0, 2 * padding + 1)
  left = jax.random.randint(kx, (), 0, 2 * padding + 1)
  return jax.lax.dynamic_slice(padded, (top, left, 0), image.shape).reshape(h, w, -1)


def random_flip(key: jax.Array, image: jax.Array) -> jax.Array:
  """Mirrors an HWC image left-right with probability 1/2."""
  return jnp.where(jax.random.bernoulli(key), image[:, ::-1, :], image)


def crop_flip(key: jax.Array, images: jax.Array, *, padding: int = 4,
              flip: bool = True) -> jax.Array:
  """The CIFAR recipe on a batch [B, H, W, C] (any dtype): crop with zero padding, then flip."""
  keys = jax.random.split(key, images.shape[0])

  def one(k, image):
    k_crop, k_flip = jax.random.split(k)
    image = random_crop(k_crop, image, padding)
    return random_flip(k_flip, image) if flip else image

  return jax.vmap(one)(keys, images)


def standardize(x: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  """Floats in [0, 1] -> (x - mean) / std per channel, torchvision's Normalize."""
  return (x - jnp.asarray(mean, x.dtype)) / jnp.asarray(std, x.dtype)


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float],
              dtype=jnp.float32) -> jax.Array:
  """uint8 [0, 255] -> (x / 255 - mean) / std per channel, as ToTensor + Normalize."""
  return standardize(images.astype(dtype) / 255.0, mean, std)


def no_augment(key: jax.Array, images: jax.Array) -> jax.Array:
  del key
  return images


def make_augment(name: str, crop_padding: int = 4) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """`(key, images) -> images` for config field augment.name."""
  if name == "crop_flip":
    return functools.partial(crop_flip, padding=crop_padding)
  if name == "none":
    return no_augment
  raise ValueError(f"augment.name={name!r} is unknown; choose one of {AUGMENTS}.")
