"""Sampler class frequencies against their targets, and the epoch structure of `instance`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lt_jax.data import samplers
from lt_jax.errors import ConfigError

COUNTS = np.array([400, 120, 36, 10])
LABELS = np.repeat(np.arange(4), COUNTS)
N = len(LABELS)


def draw(sampler, steps, start=0):
  fn = jax.jit(jax.vmap(sampler, in_axes=(None, 0)))
  return np.asarray(fn(jax.random.key(0), jnp.arange(start, start + steps)))


def class_frequencies(indices):
  return np.bincount(LABELS[indices.ravel()], minlength=4) / indices.size


def test_instance_sees_every_image_once_per_epoch():
  batch = 64
  spe = samplers.steps_per_epoch(N, batch)
  assert spe == -(-566 // 64) == 9
  sampler = samplers.make_sampler("instance", LABELS, 4, batch)
  idx = draw(sampler, 2 * spe)
  for e in range(2):
    epoch = idx[e * spe:(e + 1) * spe].ravel()
    assert set(epoch[:N].tolist()) == set(range(N))  # A permutation...
    np.testing.assert_array_equal(epoch[N:], epoch[:len(epoch) - N])  # ...topped up from its start.
  assert not np.array_equal(idx[:spe], idx[spe:])  # A new order each epoch.


def expected(name, epoch=0, epochs=1):
  n = COUNTS.astype(float)
  if name == "resample":
    w = (1 - 0.9999) / (1 - 0.9999 ** n)
    q = w * n
  elif name == "class_balanced":
    q = np.ones(4)
  elif name == "sqrt":
    q = np.sqrt(n)
  else:
    t = epoch / epochs
    q = (1 - t) * n / n.sum() + t / 4
  return q / q.sum()


@pytest.mark.parametrize("name", ["resample", "class_balanced", "sqrt"])
def test_with_replacement_class_frequencies(name):
  sampler = samplers.make_sampler(name, LABELS, 4, 256)
  freq = class_frequencies(draw(sampler, 200))  # 51,200 draws.
  np.testing.assert_allclose(freq, expected(name), atol=0.01)


@pytest.mark.parametrize("name", ["resample", "class_balanced"])
def test_a_class_balanced_draw_is_uniform_within_a_class(name):
  sampler = samplers.make_sampler(name, LABELS, 4, 256)
  idx = draw(sampler, 200).ravel()
  tail = idx[LABELS[idx] == 3]  # 10 images of class 3, each ~1/40 of all draws.
  per_image = np.bincount(tail - COUNTS[:3].sum(), minlength=10) / len(tail)
  np.testing.assert_allclose(per_image, 0.1, atol=0.02)


def test_progressive_moves_from_instance_to_class_balanced():
  epochs, batch = 10, 256
  spe = samplers.steps_per_epoch(N, batch)
  sampler = samplers.make_sampler("progressive", LABELS, 4, batch, num_epochs=epochs)
  keys = jax.random.split(jax.random.key(1), 100)
  for epoch in (0, 5, 9):
    # 100 independent keys at one step of this epoch: 25,600 draws from p(epoch).
    idx = np.asarray(jax.vmap(sampler, in_axes=(0, None))(keys, epoch * spe + 1))
    np.testing.assert_allclose(class_frequencies(idx), expected("progressive", epoch, epochs),
                               atol=0.012)


def test_unknown_sampler_names_the_field():
  with pytest.raises(ConfigError, match="train.sampler"):
    samplers.make_sampler("oversample", LABELS, 4, 8)


def test_mixed_batches_keep_their_proportion_and_cover_each_part():
  num_labeled, num_unlabeled, batch, labeled = 10, 30, 8, 2
  sampler = samplers.make_mixed_sampler(num_labeled, num_unlabeled, batch, labeled)
  idx = draw(sampler, 15)  # 30 labeled draws (3 rounds of 10), 90 unlabeled (3 rounds of 30).
  assert (idx[:, :labeled] < num_labeled).all() and (idx[:, labeled:] >= num_labeled).all()
  lab = idx[:, :labeled].ravel()
  unl = idx[:, labeled:].ravel() - num_labeled
  for r in range(3):
    assert sorted(lab[r * 10:(r + 1) * 10]) == list(range(10))
    assert sorted(unl[r * 30:(r + 1) * 30]) == list(range(30))
  with pytest.raises(ConfigError, match="semi.unlabeled_batch_fraction"):
    samplers.make_mixed_sampler(10, 30, 8, 8)
