"""Tests for lt_jax.losses: hand-computed values, a NumPy reference, identities, gradients."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from lt_jax import losses

# CIFAR-10-LT, rho = 100 (the reference's long-tailed subset).
CIFAR10_LT_100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]

# Written down from a separate 40-digit `decimal` calculation of
# w_j = (1 - b) / (1 - b^n_j), b = 0.9999, normalised to sum to 10.
CB_WEIGHTS_9999 = [0.0506113612, 0.0768997946, 0.1211338729, 0.1950366657, 0.3188053731,
                   0.5245898533, 0.8683489410, 1.4426272700, 2.4092230512, 3.9927238170]
# m_j = 0.5 * (50 / n_j)^(1/4), same separate calculation.
LDAM_MARGINS = [0.1581138830, 0.1796969971, 0.2042377053, 0.2320911495, 0.2638290276,
                0.2997676506, 0.3406751919, 0.3872209137, 0.4404970277, 0.5000000000]


# ------------------------------------------------------------------------------------------------
# NumPy references (float64, loops, no shared code with the library).
# ------------------------------------------------------------------------------------------------


def np_ce(logits, labels):
  out = []
  for row, y in zip(np.asarray(logits, np.float64), np.asarray(labels), strict=True):
    top = max(row)
    lse = top + math.log(sum(math.exp(v - top) for v in row))
    out.append(lse - row[y])
  return np.array(out)


def np_weights_of(labels, class_weights):
  if class_weights is None:
    return np.ones(len(labels))
  return np.array([class_weights[y] for y in labels], np.float64)


def np_focal(logits, labels, gamma, class_weights=None):
  """The reference's form: the focal term on the weighted CE."""
  c = np_weights_of(labels, class_weights) * np_ce(logits, labels)
  p = np.exp(-c)
  return (1.0 - p) ** gamma * c


def np_focal_textbook(logits, labels, gamma, class_weights=None):
  """alpha_t (1 - p_t)^gamma (-log p_t) with alpha_t the class weight."""
  ce = np_ce(logits, labels)
  return np_weights_of(labels, class_weights) * (1.0 - np.exp(-ce)) ** gamma * ce


def np_ldam(logits, labels, margins, scale, class_weights=None):
  adjusted = np.array(logits, np.float64)
  for i, y in enumerate(labels):
    adjusted[i, y] -= margins[y]
  return np_weights_of(labels, class_weights) * np_ce(scale * adjusted, labels)


def random_batch(seed=0, batch=8, num_classes=5, scale=3.0):
  rng = np.random.default_rng(seed)
  logits = (scale * rng.standard_normal((batch, num_classes))).astype(np.float32)
  labels = rng.integers(0, num_classes, size=batch).astype(np.int32)
  return logits, labels


# ------------------------------------------------------------------------------------------------
# Host-side class statistics.
# ------------------------------------------------------------------------------------------------


def test_class_balanced_weights_cifar10_lt():
  w = losses.class_balanced_weights(CIFAR10_LT_100, beta=0.9999)
  assert w.dtype == np.float32 and w.shape == (10,)
  np.testing.assert_allclose(w, CB_WEIGHTS_9999, rtol=1e-6)
  np.testing.assert_allclose(w.sum(), 10.0, rtol=1e-6)
  # Independent plain-Python recomputation.
  raw = [(1 - 0.9999) / (1 - 0.9999 ** n) for n in CIFAR10_LT_100]
  np.testing.assert_allclose(w, [10 * r / sum(raw) for r in raw], rtol=1e-6)
  assert np.all(np.diff(w) > 0)  # rarer class, larger weight


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.999, 0.9999])
def test_class_balanced_weights_sum_to_num_classes(beta):
  counts = [500, 100, 20, 3]
  np.testing.assert_allclose(losses.class_balanced_weights(counts, beta).sum(), 4.0, rtol=1e-6)


def test_class_balanced_weights_beta_zero_is_ones():
  np.testing.assert_array_equal(losses.class_balanced_weights(CIFAR10_LT_100, beta=0.0),
                                np.ones(10, np.float32))


def test_class_statistics_reject_empty_classes():
  for fn in (losses.class_balanced_weights, losses.ldam_margins, losses.log_priors):
    with pytest.raises(ValueError, match="at least one"):
      fn([10, 0, 3])


def test_ldam_margins_cifar10_lt():
  m = losses.ldam_margins(CIFAR10_LT_100, max_m=0.5)
  assert m.dtype == np.float32
  np.testing.assert_allclose(m, LDAM_MARGINS, rtol=1e-6)
  np.testing.assert_allclose(m[0], 0.5 * 0.31622776601683794, rtol=1e-6)  # (50/5000)^(1/4)
  assert m.max() == pytest.approx(0.5) and int(np.argmax(m)) == 9


def test_log_priors():
  lp = losses.log_priors([3, 1])
  np.testing.assert_allclose(lp, [math.log(0.75), math.log(0.25)], rtol=1e-6)
  lp = losses.log_priors(CIFAR10_LT_100)
  np.testing.assert_allclose(lp[0], math.log(5000 / 12406), rtol=1e-6)
  np.testing.assert_allclose(np.exp(lp.astype(np.float64)).sum(), 1.0, rtol=1e-6)


def test_deferred_reweighting_switches_at_drw_epoch():
  cb = losses.class_balanced_weights(CIFAR10_LT_100, 0.9999)
  for epoch in (0, 100, 159):
    np.testing.assert_array_equal(losses.deferred_reweighting(epoch, CIFAR10_LT_100),
                                  np.ones(10, np.float32))
  for epoch in (160, 199, 400):  # clipped: no index error past 2 * drw_epoch
    np.testing.assert_array_equal(losses.deferred_reweighting(epoch, CIFAR10_LT_100), cb)


def test_drw_weights_traced_epoch():
  cb = losses.class_balanced_weights(CIFAR10_LT_100, 0.9999)
  fn = jax.jit(lambda e: losses.drw_weights(e, cb, 160))
  np.testing.assert_array_equal(fn(jnp.int32(159)), np.ones(10, np.float32))
  np.testing.assert_array_equal(fn(jnp.int32(160)), cb)
  np.testing.assert_array_equal(fn(jnp.int32(160)),
                                losses.deferred_reweighting(160, CIFAR10_LT_100))


# ------------------------------------------------------------------------------------------------
# Hand-computed tiny cases.
# ------------------------------------------------------------------------------------------------


def test_cross_entropy_hand_computed():
  logits = jnp.array([[0.0, 0.0], [2.0, 0.0], [2.0, 0.0]])
  labels = jnp.array([0, 0, 1])
  expected = [math.log(2.0), math.log(1 + math.exp(-2.0)), 2.0 + math.log(1 + math.exp(-2.0))]
  np.testing.assert_allclose(losses.cross_entropy(logits, labels), expected, rtol=1e-6)


def test_weighted_cross_entropy_hand_computed():
  logits = jnp.array([[0.0, 0.0], [0.0, 0.0]])
  out = losses.weighted_cross_entropy(logits, jnp.array([0, 1]), class_weights=jnp.array([2., .5]))
  np.testing.assert_allclose(out, [2 * math.log(2), 0.5 * math.log(2)], rtol=1e-6)


def test_focal_hand_computed():
  # CE = ln 2 -> p = 1/2 -> loss = (1/2)^gamma ln 2.
  logits = jnp.array([[0.0, 0.0]])
  for gamma in (0.0, 1.0, 2.0):
    out = losses.focal_loss(logits, jnp.array([0]), gamma=gamma)
    np.testing.assert_allclose(out, [0.5 ** gamma * math.log(2)], rtol=1e-6)
  # Reference quirk: c = 2 ln 2 -> p = 1/4 (not the softmax probability 1/2).
  w = jnp.array([2.0, 1.0])
  out = losses.focal_loss(logits, jnp.array([0]), gamma=1.0, class_weights=w, reference_form=True)
  np.testing.assert_allclose(out, [0.75 * 2 * math.log(2)], rtol=1e-6)
  # Default, the weighted focal loss: 2 * (1 - 1/2) * ln 2.
  out = losses.focal_loss(logits, jnp.array([0]), gamma=1.0, class_weights=w)
  np.testing.assert_allclose(out, [2 * 0.5 * math.log(2)], rtol=1e-6)


def test_ldam_hand_computed():
  # True logit 0.5 - 0.3 = 0.2 ties the other class; times s = 10 -> CE = ln 2.
  out = losses.ldam_loss(jnp.array([[0.5, 0.2]]), jnp.array([0]), margins=jnp.array([0.3, 0.9]),
                         scale=10.0)
  np.testing.assert_allclose(out, [math.log(2)], rtol=1e-6)
  # Only the true-class margin applies: label 1 gets m_1 = 0.9, logits (0.5, 0.2 - 0.9) * 10.
  out = losses.ldam_loss(jnp.array([[0.5, 0.2]]), jnp.array([1]), margins=jnp.array([0.3, 0.9]),
                         scale=10.0)
  np.testing.assert_allclose(out, [12.0 + math.log(1 + math.exp(-12.0))], rtol=1e-6)


def test_balanced_softmax_hand_computed():
  # Priors (3/4, 1/4), equal logits: softmax(z + log pi) = pi -> CE = -log pi_y.
  lp = losses.log_priors([3, 1])
  out = losses.balanced_softmax_loss(jnp.zeros((2, 2)), jnp.array([0, 1]), log_prior=lp)
  np.testing.assert_allclose(out, [math.log(4 / 3), math.log(4)], rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Against the NumPy reference.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_losses_match_numpy_reference(seed):
  logits, labels = random_batch(seed, batch=16, num_classes=10)
  counts = CIFAR10_LT_100
  w = losses.class_balanced_weights(counts, 0.9999)
  m = losses.ldam_margins(counts)
  lp = np.log(np.array(counts, np.float64) / sum(counts))
  ce = np_ce(logits, labels)
  np.testing.assert_allclose(losses.cross_entropy(logits, labels), ce, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(losses.weighted_cross_entropy(logits, labels, class_weights=w),
                             np_weights_of(labels, w) * ce, rtol=1e-5, atol=1e-6)
  for gamma in (0.5, 1.0, 2.0):
    np.testing.assert_allclose(
        losses.focal_loss(logits, labels, gamma=gamma, class_weights=w, reference_form=True),
        np_focal(logits, labels, gamma, w), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        losses.focal_loss(logits, labels, gamma=gamma, class_weights=w),
        np_focal_textbook(logits, labels, gamma, w), rtol=1e-5, atol=1e-6)
  cos = np.tanh(logits)  # cosine-like logits in [-1, 1]
  np.testing.assert_allclose(
      losses.ldam_loss(cos, labels, margins=m, scale=30.0, class_weights=w),
      np_ldam(cos, labels, m, 30.0, w), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      losses.logit_adjusted_loss(logits, labels, log_prior=lp, tau=0.7),
      np_ce(logits + 0.7 * lp, labels), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      losses.balanced_softmax_loss(logits, labels, log_prior=lp, class_weights=w),
      np_weights_of(labels, w) * np_ce(logits + lp, labels), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Identities.
# ------------------------------------------------------------------------------------------------


def test_identities():
  logits, labels = random_batch(3, batch=12, num_classes=6)
  w = jnp.array([0.2, 0.5, 1.0, 1.5, 2.0, 0.8])
  lp = jnp.asarray(losses.log_priors([600, 300, 100, 50, 20, 5]))
  ce = losses.cross_entropy(logits, labels)
  np.testing.assert_allclose(losses.focal_loss(logits, labels, gamma=0.0, class_weights=w),
                             losses.weighted_cross_entropy(logits, labels, class_weights=w),
                             rtol=1e-6)
  np.testing.assert_allclose(losses.weighted_cross_entropy(logits, labels), ce, rtol=1e-6)
  np.testing.assert_allclose(losses.logit_adjusted_loss(logits, labels, log_prior=lp, tau=0.0), ce,
                             rtol=1e-6)
  np.testing.assert_allclose(
      losses.balanced_softmax_loss(logits, labels, log_prior=lp, class_weights=w),
      losses.logit_adjusted_loss(logits, labels, log_prior=lp, tau=1.0, class_weights=w),
      rtol=1e-6)
  np.testing.assert_allclose(
      losses.ldam_loss(logits, labels, margins=jnp.zeros(6), scale=1.0), ce, rtol=1e-6)


def test_output_shape_and_dtype():
  logits, labels = random_batch(4)
  for fn in (losses.cross_entropy, losses.weighted_cross_entropy, losses.focal_loss):
    out = jax.jit(fn)(jnp.asarray(logits, jnp.bfloat16), labels)
    assert out.shape == (8,) and out.dtype == jnp.float32


def test_rejects_bad_inputs():
  logits, labels = random_batch(5)
  with pytest.raises(TypeError, match="integer"):
    losses.cross_entropy(logits, labels.astype(np.float32))
  with pytest.raises(ValueError, match="labels shape"):
    losses.cross_entropy(logits, labels[:3])
  with pytest.raises(ValueError, match="class_weights shape"):
    losses.weighted_cross_entropy(logits, labels, class_weights=jnp.ones(3))
  with pytest.raises(ValueError, match="gamma"):
    losses.focal_loss(logits, labels, gamma=-1.0)


# ------------------------------------------------------------------------------------------------
# Reductions.
# ------------------------------------------------------------------------------------------------


def test_weighted_mean_is_pytorch_weighted_reduction():
  logits, labels = random_batch(6, batch=10, num_classes=5)
  w = np.array([0.2, 0.5, 1.0, 1.5, 3.0], np.float32)
  per = losses.weighted_cross_entropy(logits, labels, class_weights=w)
  wy = np_weights_of(labels, w)
  expected = np.sum(wy * np_ce(logits, labels)) / np.sum(wy)
  got = losses.weighted_mean(per, labels, class_weights=w)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # No weights: plain mean.
  ce = losses.cross_entropy(logits, labels)
  np.testing.assert_allclose(losses.weighted_mean(ce, labels), np.mean(np_ce(logits, labels)),
                             rtol=1e-5)


def test_weighted_mean_and_masked_mean_ignore_masked_entries():
  per = jnp.array([1.0, 2.0, 3.0, 1e6])
  labels = jnp.array([0, 1, 1, 0])
  w = jnp.array([2.0, 0.5])
  where = jnp.array([True, True, True, False])
  # (1 + 2 + 3) / (2 + 0.5 + 0.5)
  np.testing.assert_allclose(losses.weighted_mean(per, labels, class_weights=w, where=where), 2.0)
  np.testing.assert_allclose(losses.weighted_mean(per, labels, where=where), 2.0)
  np.testing.assert_allclose(losses.masked_mean(per, where=where), 2.0)
  np.testing.assert_allclose(losses.masked_mean(per[:3]), 2.0)
  # NaN in a masked-out entry does not leak.
  per_nan = per.at[3].set(jnp.nan)
  assert np.isfinite(losses.masked_mean(per_nan, where=where))
  # Nothing masked in: 0, with a zero (finite) gradient.
  none = jnp.zeros(4, bool)
  assert losses.weighted_mean(per, labels, class_weights=w, where=none) == 0.0
  g = jax.grad(lambda p: losses.masked_mean(p, where=none))(per)
  np.testing.assert_array_equal(g, np.zeros(4))


def test_padded_label_contributes_nothing():
  logits, labels = random_batch(7, batch=4, num_classes=3)
  labels = labels.copy()
  labels[3] = -1
  w = jnp.array([1.0, 2.0, 3.0])
  per = losses.weighted_cross_entropy(logits, labels, class_weights=w)
  assert per[3] == 0.0
  full = losses.weighted_mean(per, labels, class_weights=w)
  np.testing.assert_allclose(full, losses.weighted_mean(per[:3], labels[:3], class_weights=w),
                             rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Gradients.
# ------------------------------------------------------------------------------------------------


def test_check_grads():
  logits, labels = random_batch(8, batch=4, num_classes=4, scale=1.0)
  w = np.array([0.5, 1.0, 1.5, 2.0])
  m = np.array([0.5, 0.3, 0.2, 0.1])
  with jax.enable_x64(True):
    x = jnp.asarray(logits, jnp.float64)
    y = jnp.asarray(labels)
    fns = [
        lambda z: losses.cross_entropy(z, y),
        lambda z: losses.focal_loss(z, y, gamma=1.0, class_weights=w),
        lambda z: losses.focal_loss(z, y, gamma=0.5),
        lambda z: losses.ldam_loss(jnp.tanh(z), y, margins=m, scale=5.0, class_weights=w),
    ]
    for fn in fns:  # Jitted: check_grads calls each derivative many times.
      check_grads(jax.jit(fn), (x,), order=2, modes=["rev"])


def test_focal_gradient_matches_naive_formula_away_from_zero():
  logits, labels = random_batch(9, batch=6, num_classes=4)

  def naive(z):
    c = 1.7 * losses.cross_entropy(z, labels)
    return jnp.sum((1.0 - jnp.exp(-c)) ** 0.5 * c)

  def ours(z):
    return jnp.sum(losses.focal_loss(z, labels, gamma=0.5, class_weights=jnp.full(4, 1.7),
                                     reference_form=True))

  np.testing.assert_allclose(jax.grad(ours)(logits), jax.grad(naive)(logits), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["ce", "wce", "focal", "ldam", "bs", "la"])
def test_finite_at_extreme_logits(name):
  logits = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [1e4, 1e4, -1e4]])
  labels = jnp.array([0, 0, 2])
  w = jnp.array([1.0, 2.0, 0.5])
  lp = jnp.asarray(losses.log_priors([100, 10, 1]))
  fn = {
      "ce": lambda z: losses.cross_entropy(z, labels),
      "wce": lambda z: losses.weighted_cross_entropy(z, labels, class_weights=w),
      "focal": lambda z: losses.focal_loss(z, labels, gamma=0.5, class_weights=w),
      "ldam": lambda z: losses.ldam_loss(z, labels, margins=jnp.array([.5, .3, .1]),
                                         class_weights=w),
      "bs": lambda z: losses.balanced_softmax_loss(z, labels, log_prior=lp),
      "la": lambda z: losses.logit_adjusted_loss(z, labels, log_prior=lp, tau=1.5),
  }[name]
  values = fn(logits)
  grads = jax.grad(lambda z: jnp.sum(fn(z)))(logits)
  assert np.all(np.isfinite(values)) and np.all(np.isfinite(grads))
  if name == "ce":
    np.testing.assert_allclose(values, [0.0, 2e4, 2e4 + math.log(2)], rtol=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 1.0, 2.0])
def test_focal_finite_at_perfect_classification(gamma):
  # Row 0: CE underflows to exactly 0; row 1: CE is tiny but positive.
  logits = jnp.array([[200.0, 0.0, 0.0], [20.0, 0.0, 0.0]])
  labels = jnp.array([0, 0])
  fn = lambda z: jnp.sum(losses.focal_loss(z, labels, gamma=gamma))
  values = losses.focal_loss(logits, labels, gamma=gamma)
  grads = jax.jit(jax.grad(fn))(logits)
  assert values[0] == 0.0
  assert np.all(np.isfinite(values)) and np.all(np.isfinite(grads))
  np.testing.assert_array_equal(grads[0], np.zeros(3))  # saturated softmax: zero gradient
  # The focal term itself, f(c) = (1 - e^{-c})^g c, at and near c = 0: f'(0) = 1 if g = 0 else 0.
  dfdc = jax.vmap(jax.grad(losses._focal_term), in_axes=(0, None))(
      jnp.array([0.0, 1e-38, 1e-30, 1e-6, 1.0]), jnp.float32(gamma))
  assert np.all(np.isfinite(dfdc))
  np.testing.assert_allclose(dfdc[0], 1.0 if gamma == 0 else 0.0)
  c = 1.0
  exact = (1 - math.exp(-c)) ** gamma + gamma * (1 - math.exp(-c)) ** (gamma - 1) * math.exp(-c) * c
  np.testing.assert_allclose(dfdc[-1], exact, rtol=1e-5)
