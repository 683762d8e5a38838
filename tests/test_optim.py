"""The learning-rate schedule at chosen epochs and the SGD update against PyTorch's formula."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lt_jax import decouple
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
  c.schedule, c.cosine_offset = "cosine", 0
  assert optim.lr_at_epoch(5, c, 105) == pytest.approx(0.1)
  assert optim.lr_at_epoch(55, c, 105) == pytest.approx(0.05)
  c.cosine_offset = 1  # One epoch further along: the half-way point comes an epoch earlier.
  assert optim.lr_at_epoch(54, c, 105) == pytest.approx(0.05)
  assert optim.lr_at_epoch(104, c, 105) == pytest.approx(0.0, abs=1e-12)


def _torch_cosine_annealing_stepped_before_each_epoch(base_lr, t_max, eta_min, epochs):
  """The lr of each epoch when a loop calls CosineAnnealingLR.step() before the epoch's
  batches, as the ImageNet-LT reference's `train()` does: PyTorch's recursive form of the
  schedule (torch/optim/lr_scheduler.py CosineAnnealingLR.get_lr), applied step by step."""
  lr, out = base_lr, []
  for last_epoch in range(1, epochs + 1):  # The step() before epoch `last_epoch`.
    if (last_epoch - 1 - t_max) % (2 * t_max) == 0:
      lr = lr + (base_lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
    else:
      lr = ((1 + math.cos(math.pi * last_epoch / t_max))
            / (1 + math.cos(math.pi * (last_epoch - 1) / t_max)) * (lr - eta_min) + eta_min)
    out.append(lr)
  return out


def test_a_10_epoch_crt_follows_the_references_cosine_stepping():
  config = get_base_config()
  crt = decouple.stage_config(config, "crt", "/stage1")
  assert crt.train.num_epochs == 10 and crt.optim.lr == 0.2
  ours = [optim.lr_at_epoch(e, crt.optim, 10) for e in range(10)]
  # cls_crt.yaml: lr 0.2, 10 epochs, coslr with endlr 0.0.
  reference = _torch_cosine_annealing_stepped_before_each_epoch(0.2, 10, 0.0, 10)
  np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-12)
  assert ours[-1] == pytest.approx(0.0, abs=1e-12) and ours[0] < 0.2


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
