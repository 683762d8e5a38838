"""The learning-rate schedule at chosen epochs and the SGD update against PyTorch's formula."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lt_jax.config import get_base_config
from lt_jax.errors import ConfigError
from lt_jax.train import optim


@pytest.mark.parametrize("epoch,lr", [
    (0, 0.02), (1, 0.04), (4, 0.1), (5, 0.1), (159, 0.1), (160, 0.001), (179, 0.001),
    (180, 0.00001), (199, 0.00001)])
def test_reference_step_schedule(epoch, lr):
  assert optim.lr_at_epoch(epoch, get_base_config().optim, 200) == pytest.approx(lr, rel=1e-12)


def test_first_release_lr_schedule_keeps_0001_after_180():
  c = get_base_config().optim
  c.first_release_lr_schedule = True
  assert optim.lr_at_epoch(185, c, 200) == pytest.approx(0.001)
  assert optim.lr_at_epoch(170, c, 200) == pytest.approx(0.001)


def test_cosine_after_warmup():
  c = get_base_config().optim
  c.schedule = "cosine"
  assert optim.lr_at_epoch(5, c, 105) == pytest.approx(0.1)
  assert optim.lr_at_epoch(55, c, 105) == pytest.approx(0.05)


def test_schedule_is_constant_within_an_epoch():
  c = get_base_config().optim
  sched = optim.make_schedule(c, 200, 97)
  steps = jnp.array([0, 96, 97, 160 * 97 - 1, 160 * 97, 200 * 97 + 5])
  np.testing.assert_allclose(np.asarray(jax.vmap(sched)(steps)),
                             [0.02, 0.02, 0.04, 0.1, 0.001, 0.00001], rtol=1e-6)
  c.schedule = "linear"
  with pytest.raises(ConfigError, match="optim.schedule"):
    optim.make_schedule(c, 200, 97)


def test_sgd_matches_torch_formula():
  """torch.optim.SGD(momentum=m, weight_decay=wd): g' = g + wd p; buf = m buf + g'; p -= lr buf."""
  c = get_base_config().optim
  tx = optim.make_optimizer(c, 200, 10)
  p = {"w": jnp.array([1.0, -2.0])}
  grads = [jnp.array([0.5, 0.1]), jnp.array([-0.3, 0.2]), jnp.array([0.0, 1.0])]
  state = tx.init(p)
  ref_p, buf = np.array([1.0, -2.0]), np.zeros(2)
  for g in grads:
    upd, state = tx.update({"w": g}, state, p)
    p = optax.apply_updates(p, upd)
    buf = 0.9 * buf + (np.asarray(g) + 2e-4 * ref_p)
    ref_p = ref_p - 0.02 * buf  # Epoch 0 lr: 0.1 * 1 / 5.
  np.testing.assert_allclose(np.asarray(p["w"]), ref_p, rtol=1e-6)
