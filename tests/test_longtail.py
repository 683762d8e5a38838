"""Long-tailed counts and subsets against the reference recipe."""

import numpy as np
import pytest

from lt_jax.data import datasets, longtail
from lt_jax.errors import ConfigError


@pytest.mark.parametrize("rho,total", [(100, 12406), (50, 13996), (10, 20431)])
def test_cifar10_totals(rho, total):
  assert sum(longtail.class_counts(5000, 10, "exp", 1 / rho)) == total


def test_cifar10_rho100_counts():
  assert longtail.class_counts(50000 / 10, 10, "exp", 1 / 100) == [
      5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


@pytest.mark.parametrize("rho,total", [(100, 10847), (50, 12608), (10, 19573)])
def test_cifar100_totals(rho, total):
  counts = longtail.class_counts(50000 / 100, 100, "exp", 1 / rho)
  assert sum(counts) == total
  assert counts[0] == 500 and counts[-1] == int(500 / rho)


def test_step_and_none():
  assert longtail.class_counts(5000, 10, "step", 0.01) == [5000] * 5 + [50] * 5
  assert longtail.class_counts(500, 3, "none", 0.01) == [500] * 3
  with pytest.raises(ConfigError, match="dataset.imb_type"):
    longtail.class_counts(500, 3, "linear", 0.01)


def reference_subset(labels, counts, seed, order):
  """The reference's gen_imbalanced_data, on numpy's global legacy generator."""
  np.random.seed(seed)
  kept = []
  for cls, n in zip(order, counts):
    idx = np.where(labels == cls)[0]
    np.random.shuffle(idx)
    kept.extend(idx[:n].tolist())
  return np.asarray(kept)


@pytest.mark.parametrize("seed", [0, 1, 123])
def test_indices_replay_reference(seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, size=3000)
  counts = longtail.class_counts(250, 10, "exp", 0.05)
  expected = reference_subset(labels, counts, seed, np.unique(labels))
  got = longtail.longtail_indices(labels, counts, seed=seed)
  np.testing.assert_array_equal(got, expected)


def test_indices_leave_global_generator_alone():
  np.random.seed(7)
  before = np.random.rand()
  np.random.seed(7)
  longtail.longtail_indices(np.repeat(np.arange(3), 20), [10, 5, 2], seed=0)
  assert np.random.rand() == before


def test_svhn_order_gives_largest_count_to_class_one():
  labels = np.repeat(np.arange(10), 1200)
  order = datasets.get("svhn").class_order
  counts = longtail.class_counts(1000, 10, "exp", 0.01)
  idx = longtail.longtail_indices(labels, counts, seed=0, class_order=order)
  np.testing.assert_array_equal(idx, reference_subset(labels, counts, 0, order))
  by_class = np.bincount(labels[idx], minlength=10)
  assert by_class[1] == 1000 and by_class[0] == 10
  assert list(by_class) == longtail.counts_by_class(counts, order, 10)


def test_too_few_images_names_the_field():
  labels = np.repeat(np.arange(2), [30, 5])
  with pytest.raises(ConfigError, match="dataset.img_max"):
    longtail.longtail_indices(labels, [20, 10])


def test_validation_split_is_balanced_disjoint_and_stable():
  labels = np.repeat(np.arange(4), 50)
  rest, val = longtail.validation_split(labels, 5, seed=0)
  assert np.bincount(labels[val]).tolist() == [5] * 4
  assert len(np.intersect1d(rest, val)) == 0 and len(rest) + len(val) == 200
  rest2, val2 = longtail.validation_split(labels, 5, seed=0)
  np.testing.assert_array_equal(val, val2)
  with pytest.raises(ConfigError, match="dataset.val_per_class"):
    longtail.validation_split(labels, 50)
