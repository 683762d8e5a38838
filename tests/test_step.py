"""The train step's loss composition and frozen backbone, against direct computations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from conftest import tiny_config

from lt_jax import parallel
from lt_jax.data import augment
from lt_jax.models import create_model
from lt_jax.train import objective as objective_lib
from lt_jax.train import optim
from lt_jax.train import step as step_lib

B, COUNTS = 8, [5, 3]


def setup(frozen=False):
  config = tiny_config()
  model = create_model("resnet_tiny", num_classes=2, frozen_backbone=frozen)
  tx = optim.make_optimizer(config.optim, 1, 1, frozen=("backbone",) if frozen else ())
  sharding = parallel.replicated(parallel.make_mesh())
  state = step_lib.create_state(model, tx, (8, 8, 1), 0, sharding)
  rng = np.random.default_rng(0)
  data = step_lib.DeviceData(jnp.asarray(rng.integers(0, 255, (B, 8, 8, 1), dtype=np.uint8)),
                             jnp.asarray([0, 1, 0, 0, 1, 0, 1, 1], jnp.int32))
  objective = objective_lib.make_objective(config, COUNTS)
  kwargs = dict(model=model, tx=tx, objective=objective, sampler=lambda k, s: jnp.arange(B),
                augment=augment.no_augment, mean=(0.5,), std=(0.25,), steps_per_epoch=1,
                schedule=optim.make_schedule(config.optim, 1, 1),
                batch_sharding=parallel.batch_sharded(parallel.make_mesh()))
  return state, data, objective, kwargs


def test_labeled_and_unlabeled_parts_are_reduced_separately():
  state, data, objective, kwargs = setup()
  x = augment.normalize(data.images, (0.5,), (0.25,))
  (logits, _), _ = jax.jit(functools.partial(kwargs["model"].apply, train=True,
                                             mutable=["batch_stats"]))(
      {"params": state.params, "batch_stats": state.batch_stats}, x)
  y, epoch = data.labels, jnp.asarray(0)
  expected = (objective(logits[:3], y[:3], epoch) + 0.4 * objective(logits[3:], y[3:], epoch))
  _, metrics = jax.jit(functools.partial(step_lib.train_step, labeled_per_batch=3,
                                         unlabeled_weight=0.4, **kwargs))(state, data)
  np.testing.assert_allclose(float(metrics["loss"]), float(expected), rtol=1e-5)
  _, plain = jax.jit(functools.partial(step_lib.train_step, **kwargs))(state, data)
  np.testing.assert_allclose(float(plain["loss"]),
                             float(objective(logits, y, epoch)), rtol=1e-5)


def test_frozen_backbone_keeps_parameters_and_statistics():
  state, data, _, kwargs = setup(frozen=True)
  new_state, _ = jax.jit(functools.partial(step_lib.train_step, **kwargs))(state, data)
  for old, new in zip(jax.tree.leaves(state.params["backbone"]),
                      jax.tree.leaves(new_state.params["backbone"])):
    np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
  for old, new in zip(jax.tree.leaves(state.batch_stats), jax.tree.leaves(new_state.batch_stats)):
    np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
  changed = [not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
             zip(jax.tree.leaves(state.params["head"]), jax.tree.leaves(new_state.params["head"]))]
  assert all(changed)
