"""Contrastive pre-training: InfoNCE and NT-Xent vs NumPy, the queue, momentum, ghost BN, steps."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lt_jax.errors import ConfigError
from lt_jax.models.resnet_cifar import CifarResNetBackbone, ResNetTiny
from lt_jax.pretrain import contrastive as C

TINY_BACKBONE = functools.partial(CifarResNetBackbone, stage_sizes=(1, 1, 1), widths=(4, 8, 16))
B, HW, DIM, HIDDEN = 8, 8, 8, 16
QUEUE = 4 * B
MOMENTUM = 0.99


def unit_rows(rs, n, d):
  x = rs.randn(n, d).astype(np.float32)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def tiny_model():
  return C.ContrastiveModel(TINY_BACKBONE, hidden=HIDDEN, out=DIM)


# ---------------------------------------------------------------------------------------------
# Losses.


def test_info_nce_matches_numpy_loops():
  rs = np.random.RandomState(0)
  q, k, queue = unit_rows(rs, 4, 5), unit_rows(rs, 4, 5), unit_rows(rs, 6, 5)
  t = 0.2
  expected = []
  for i in range(4):
    logits = [np.dot(q[i], k[i]) / t] + [np.dot(q[i], queue[j]) / t for j in range(6)]
    expected.append(-np.log(np.exp(logits[0]) / np.sum(np.exp(logits))))
  got = C.info_nce(q, k, queue, t)
  assert got.shape == (4,)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_info_nce_orthogonal_queue_identity():
  rs = np.random.RandomState(1)
  t, num_neg = 0.2, 6
  q = np.zeros((4, 5), np.float32)
  q[:, :2] = unit_rows(rs, 4, 2)  # Queries in span(e0, e1), the queue in span(e2, e3, e4).
  queue = np.zeros((num_neg, 5), np.float32)
  queue[:, 2:] = unit_rows(rs, num_neg, 3)
  got = C.info_nce(q, q, queue, t)
  np.testing.assert_allclose(got, np.full(4, np.log1p(num_neg * np.exp(-1.0 / t))), rtol=1e-5)


def test_nt_xent_matches_numpy_loops():
  rs = np.random.RandomState(2)
  z_a, z_b = unit_rows(rs, 4, 5), unit_rows(rs, 4, 5)
  t = 0.5
  z = np.concatenate([z_a, z_b])
  expected = []
  for i in range(8):
    pos = (i + 4) % 8
    denom = sum(np.exp(np.dot(z[i], z[j]) / t) for j in range(8) if j != i)
    expected.append(-np.log(np.exp(np.dot(z[i], z[pos]) / t) / denom))
  got = C.nt_xent(z_a, z_b, t)
  assert got.shape == (8,)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_nt_xent_orthonormal_identity_and_finite_grads():
  t = 0.5
  z = np.linalg.qr(np.random.RandomState(3).randn(5, 5))[0][:4].astype(np.float32)
  # Both views equal, different examples orthogonal: positive 1/T, the 2B - 2 negatives 0.
  np.testing.assert_allclose(C.nt_xent(z, z, t), np.full(8, np.log1p(6 * np.exp(-1.0 / t))),
                             rtol=1e-5)
  grads = jax.grad(lambda a, b: jnp.mean(C.nt_xent(a, b, t)), argnums=(0, 1))(z, z)
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)


# ---------------------------------------------------------------------------------------------
# Queue and momentum.


def test_enqueue_is_fifo_and_wraps():
  batch, dim = 2, 3
  queue = jnp.full((4 * batch, dim), -1.0)
  ptr = jnp.zeros((), jnp.int32)
  batches = [(np.full((batch, dim), n) + np.arange(batch)[:, None] / 10).astype(np.float32)
             for n in range(6)]
  for n in range(3):
    queue, ptr = C.enqueue(queue, ptr, batches[n])
  expected = np.concatenate(batches[:3] + [np.full((batch, dim), -1.0, np.float32)])
  np.testing.assert_array_equal(queue, expected)
  assert int(ptr) == 3 * batch
  queue, ptr = C.enqueue(queue, ptr, batches[3])  # Fills the last slot; ptr wraps to 0.
  assert int(ptr) == 0
  queue, ptr = C.enqueue(queue, ptr, batches[4])  # Overwrites the oldest keys (batch 0) first.
  np.testing.assert_array_equal(queue, np.concatenate([batches[4]] + batches[1:4]))
  assert int(ptr) == batch
  with pytest.raises(ConfigError, match="pretrain.queue_size"):
    C.enqueue(jnp.zeros((6, dim)), ptr, np.zeros((4, dim)))


def test_momentum_update():
  k = {"a": jnp.asarray([1.0, 2.0]), "b": {"c": jnp.asarray([[3.0], [-4.0]])}}
  q = {"a": jnp.asarray([5.0, -1.0]), "b": {"c": jnp.asarray([[0.5], [7.0]])}}
  out = C.momentum_update(k, q, 0.9)
  np.testing.assert_allclose(out["a"], [0.9 * 1 + 0.1 * 5, 0.9 * 2 + 0.1 * -1], rtol=1e-6)
  np.testing.assert_allclose(out["b"]["c"], [[0.9 * 3 + 0.1 * 0.5], [0.9 * -4 + 0.1 * 7]],
                             rtol=1e-6)
  jax.tree.map(np.testing.assert_array_equal, C.momentum_update(k, q, 1.0), k)
  jax.tree.map(np.testing.assert_array_equal, C.momentum_update(k, q, 0.0), q)


def test_resolve_bn_groups():
  assert [C.resolve_bn_groups(b) for b in (8, 256, 12, 10, 9, 7, 1)] == [8, 8, 6, 5, 3, 7, 1]
  assert C.resolve_bn_groups(12, 4) == 4
  with pytest.raises(ConfigError, match="pretrain.bn_groups"):
    C.resolve_bn_groups(8, 3)


# ---------------------------------------------------------------------------------------------
# Model and ghost BN.


def test_backbone_names_transfer_to_the_classifier():
  x = jnp.zeros((1, HW, HW, 3))
  pre = jax.eval_shape(lambda: tiny_model().init(jax.random.key(0), x, train=False))
  clf = jax.eval_shape(lambda: ResNetTiny(num_classes=10).init(jax.random.key(0), x, train=False))
  assert set(pre["params"]) == {"backbone", "projector"}
  for col in ("params", "batch_stats"):
    assert jax.tree.structure(pre[col]["backbone"]) == jax.tree.structure(clf[col]["backbone"])
    assert jax.tree.map(lambda s: s.shape, pre[col]["backbone"]) == \
        jax.tree.map(lambda s: s.shape, clf[col]["backbone"])
  out = jax.eval_shape(lambda: tiny_model().init_with_output(jax.random.key(0), x, train=False)[0])
  assert out[0].shape == (1, DIM) and out[1].shape == (1, 16)


@pytest.fixture(scope="module")
def tiny_variables():
  """Random variables of the tiny model without compiling an initialiser (RNG is slow to build)."""
  shapes = jax.eval_shape(
      lambda: tiny_model().init(jax.random.key(0), jnp.zeros((1, HW, HW, 3)), train=False))
  rs = np.random.RandomState(4)
  params = jax.tree.map(lambda s: rs.normal(0.0, 0.5, s.shape).astype(np.float32),
                        shapes["params"])
  stats = jax.tree.map(lambda s: rs.uniform(0.5, 1.0, s.shape).astype(np.float32),
                       shapes["batch_stats"])
  return {"params": params, "batch_stats": stats}


def test_ghost_bn_groups_and_unpermute(tiny_variables):
  groups, size = 4, B // 4
  model = tiny_model()
  ghost = jax.jit(functools.partial(C.ghost_bn_apply, model, groups=groups))
  direct = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
  rs = np.random.RandomState(5)
  x = rs.randn(B, HW, HW, 3).astype(np.float32)
  perm = np.asarray(rs.permutation(B), np.int32)
  (z, feats), stats = ghost(tiny_variables, x, perm=perm)
  assert z.shape == (B, DIM) and feats.shape == (B, 16)

  # Group g holds x[perm[g*size:(g+1)*size]]: outputs match a direct apply on that group, in
  # the original order, and the running statistics are the mean of the per-group updates.
  per_group = []
  for g in range(groups):
    members = perm[g * size:(g + 1) * size]
    (zg, _), upd = direct(tiny_variables, x[members])
    np.testing.assert_allclose(z[members], zg, rtol=1e-5, atol=1e-6)
    per_group.append(upd["batch_stats"])
  mean_stats = jax.tree.map(lambda *s: np.mean(s, axis=0), *per_group)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), stats,
               mean_stats)

  # A sample's output depends only on its group: perturbing one sample changes exactly the
  # outputs of its group.
  target = perm[0]
  group_of_target, other_group = set(perm[:size]), perm[size:2 * size]
  (z2, _), _ = ghost(tiny_variables, _perturbed(x, other_group[0]), perm=perm)
  for i in range(B):
    if i in set(other_group):
      assert not np.allclose(z2[i], z[i])
    else:
      np.testing.assert_array_equal(z2[i], z[i])
  (z3, _), _ = ghost(tiny_variables, _perturbed(x, perm[1]), perm=perm)
  assert perm[1] in group_of_target and not np.allclose(z3[target], z[target])


def _perturbed(x, i):
  x = x.copy()
  x[i] = x[i] * 3.0 + 1.0
  return x


def test_ghost_bn_one_group_is_global_bn(tiny_variables):
  model = tiny_model()
  x = np.random.RandomState(6).randn(B, HW, HW, 3).astype(np.float32)
  perm = np.asarray(np.random.RandomState(7).permutation(B), np.int32)
  (z, _), stats = jax.jit(functools.partial(C.ghost_bn_apply, model, groups=1))(
      tiny_variables, x, perm=perm)
  (z_ref, _), upd = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
      tiny_variables, x)
  np.testing.assert_allclose(z, z_ref, rtol=1e-5, atol=1e-6)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), stats,
               upd["batch_stats"])


# ---------------------------------------------------------------------------------------------
# Train steps.


SHUFFLE_KEY = jax.random.key(3)


def two_views(seed):
  rs = np.random.RandomState(seed)
  a = rs.randn(B, HW, HW, 3).astype(np.float32)
  return a, (a + 0.5 * rs.randn(B, HW, HW, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def moco_setup():
  model, tx = tiny_model(), optax.sgd(0.05)
  state = C.create_moco_state(model, tx, (HW, HW, 3), 0, QUEUE, DIM, None)
  step = jax.jit(functools.partial(C.moco_train_step, model=model, tx=tx, temperature=0.2,
                                   momentum=MOMENTUM, bn_groups=4), donate_argnums=0)
  return model, tx, state, step


def test_create_moco_state(moco_setup):
  _, _, state, _ = moco_setup
  jax.tree.map(np.testing.assert_array_equal, state.params_k, state.params_q)
  jax.tree.map(np.testing.assert_array_equal, state.batch_stats_k, state.batch_stats_q)
  assert state.queue.shape == (QUEUE, DIM) and int(state.queue_ptr) == 0 and int(state.step) == 0
  np.testing.assert_allclose(np.linalg.norm(state.queue, axis=1), 1.0, rtol=1e-5)
  assert state.rng.dtype == jnp.uint32 and state.rng.shape == (2,)
  with pytest.raises(ConfigError, match="dim=4"):
    C.create_moco_state(tiny_model(), optax.sgd(0.1), (HW, HW, 3), 0, QUEUE, 4, None)


def test_moco_step_updates_and_learns(moco_setup):
  _, _, state, step = moco_setup
  state = jax.tree.map(jnp.copy, state)  # The step donates its input; keep the fixture's.
  before = jax.device_get(state)
  a, b = two_views(8)
  state, metrics = step(state, a, b, SHUFFLE_KEY)
  assert np.isfinite(float(metrics["loss"])) and 0.0 <= float(metrics["accuracy"]) <= 1.0
  assert int(metrics["queue_ptr"]) == B and int(state.queue_ptr) == B and int(state.step) == 1
  changed = jax.tree.map(lambda x, y: not np.array_equal(x, y), before.params_q, state.params_q)
  assert all(jax.tree.leaves(changed))
  expected_k = jax.tree.map(lambda k, q: MOMENTUM * k + (1 - MOMENTUM) * np.asarray(q),
                            before.params_k, state.params_q)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-7),
               state.params_k, expected_k)
  np.testing.assert_array_equal(state.queue[B:], before.queue[B:])
  assert not np.allclose(state.queue[:B], before.queue[:B])
  np.testing.assert_allclose(np.linalg.norm(state.queue[:B], axis=1), 1.0, rtol=1e-5)

  # Sanity: on a fixed batch, with the queue and the shuffle held fixed, a few steps lower
  # the loss.
  losses = [float(metrics["loss"])]
  for _ in range(6):
    state = state.replace(step=jnp.zeros((), jnp.int32), queue=jnp.asarray(before.queue),
                          queue_ptr=jnp.zeros((), jnp.int32))
    state, metrics = step(state, a, b, SHUFFLE_KEY)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < losses[0], losses


def test_simclr_step_updates_and_learns(moco_setup):
  model, tx, moco_state, _ = moco_setup
  spec = jax.eval_shape(lambda: C.create_simclr_state(model, tx, (HW, HW, 3), 0, None))
  assert jax.tree.structure(spec.params) == jax.tree.structure(moco_state.params_q)
  # Reuse the MoCo state's initial parameters rather than compiling another initialiser.
  params = jax.tree.map(jnp.copy, moco_state.params_q)
  state = C.SimclrState(step=jnp.zeros((), jnp.int32), params=params,
                        batch_stats=jax.tree.map(jnp.copy, moco_state.batch_stats_q),
                        opt_state=tx.init(params), rng=jnp.copy(moco_state.rng))
  step = jax.jit(functools.partial(C.simclr_train_step, model=model, tx=tx, temperature=0.5),
                 donate_argnums=0)
  a, b = two_views(9)
  before = jax.device_get(state.params)
  losses = []
  for _ in range(6):
    state, metrics = step(state, a, b)
    losses.append(float(metrics["loss"]))
  assert np.isfinite(losses).all() and int(state.step) == 6
  assert all(jax.tree.leaves(jax.tree.map(lambda x, y: not np.array_equal(x, y), before,
                                          state.params)))
  assert losses[-1] < losses[0], losses
