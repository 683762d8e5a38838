"""The config's loss and train rule against a direct computation of the reference's reduction."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from lt_jax.train.objective import make_objective

COUNTS = [50, 20, 5]
BETA = 0.9999


def cb_weights():
  w = (1 - BETA) / (1 - BETA ** np.array(COUNTS, np.float64))
  return w / w.sum() * 3


def ce(logits, labels):
  z = logits - logits.max(1, keepdims=True)
  return -(z[np.arange(len(labels)), labels] - np.log(np.exp(z).sum(1)))


LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0], [0.0, 0.0, 2.0]])
LABELS = np.array([0, 2, 1, 2])


def objective(rule, loss="ce", drw_epoch=2, **loss_fields):
  c = tiny_config(train__rule=rule, loss__name=loss, train__drw_epoch=drw_epoch)
  for k, v in loss_fields.items():
    c.loss[k] = v
  return make_objective(c, COUNTS)


def value(fn, epoch):
  return float(fn(jnp.asarray(LOGITS, jnp.float32), jnp.asarray(LABELS), jnp.asarray(epoch)))


def test_plain_ce_is_the_mean():
  assert value(objective("none"), 0) == pytest.approx(ce(LOGITS, LABELS).mean(), rel=1e-5)
  assert value(objective("resample"), 9) == pytest.approx(ce(LOGITS, LABELS).mean(), rel=1e-5)


def test_reweight_divides_by_the_batch_weight_sum():
  w = cb_weights()[LABELS]
  expected = (w * ce(LOGITS, LABELS)).sum() / w.sum()
  assert value(objective("reweight"), 0) == pytest.approx(expected, rel=1e-5)


def test_drw_switches_at_its_epoch():
  fn = objective("drw", drw_epoch=2)
  w = cb_weights()[LABELS]
  assert value(fn, 1) == pytest.approx(ce(LOGITS, LABELS).mean(), rel=1e-5)
  assert value(fn, 2) == pytest.approx((w * ce(LOGITS, LABELS)).sum() / w.sum(), rel=1e-5)


def test_focal_takes_a_plain_mean_of_weighted_terms():
  w = cb_weights()[LABELS]
  c = ce(LOGITS, LABELS)
  expected = (w * (1 - np.exp(-c)) * c).mean()  # gamma 1, weighted focal, mean over examples.
  assert value(objective("reweight", "focal"), 0) == pytest.approx(expected, rel=1e-5)
  ref = ((1 - np.exp(-w * c)) * w * c).mean()
  fn = objective("reweight", "focal", focal_reference_form=True)
  assert value(fn, 0) == pytest.approx(ref, rel=1e-5)


def test_ldam_subtracts_margins_and_scales():
  m = np.array(COUNTS, np.float64) ** -0.25
  m = m * 0.5 / m.max()
  adjusted = LOGITS.copy()
  adjusted[np.arange(4), LABELS] -= m[LABELS]
  expected = ce(30 * adjusted, LABELS).mean()
  assert value(objective("none", "ldam"), 0) == pytest.approx(expected, rel=1e-5)


def test_balanced_softmax_and_logit_adjustment_add_log_priors():
  prior = np.log(np.array(COUNTS) / sum(COUNTS))
  bs = ce(LOGITS + prior, LABELS).mean()
  assert value(objective("none", "balanced_softmax"), 0) == pytest.approx(bs, rel=1e-5)
  la = ce(LOGITS + 0.5 * prior, LABELS).mean()
  assert value(objective("none", "logit_adjust", la_tau=0.5), 0) == pytest.approx(la, rel=1e-5)
