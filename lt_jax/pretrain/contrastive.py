"""Contrastive self-supervised pre-training: MoCo v2 (He et al. 2020; Chen et al. 2020) and SimCLR.

The paper's SSP for ImageNet-size data pre-trains the backbone with MoCo v2 on the imbalanced
training images (labels unused), then trains any long-tailed method from that initialisation.
`ContrastiveModel` names its submodules `backbone` and `projector`, so `params['backbone']`
and `batch_stats['backbone']` of the query encoder drop into a `CifarResNet` (whose
submodules are `backbone` and `head`); the projector is discarded, as in MoCo's linear eval.

MoCo v2 (per step, two augmented views a, b of the same B images):
  q = f_q(a), k = stop_gradient(f_k(b)), both L2-normalised, a queue of K older keys;
  loss = mean_i InfoNCE(q_i, k_i, queue); SGD on theta_q; theta_k <- m theta_k + (1 - m) theta_q;
  enqueue k (the oldest K/B-th of the queue is overwritten).
MoCo updates theta_k before computing the keys, with the theta_q of the start of the step; here
the key encoder is updated after the SGD step, with the new theta_q. Both give the same
sequence theta_k(t) = m theta_k(t-1) + (1 - m) theta_q(t) with theta_k(0) = theta_q(0), since the
key encoder starts as a copy of the query encoder.

Shuffle-BN, and the "ghost BN groups" that stand in for it. In MoCo every GPU normalises its
own slice of the batch, and BatchNorm lets the samples of a slice communicate: if a query and
its positive key were normalised with statistics of the same sample subset, the network could
recognise the positive by that shared subset signature instead of by content, since the
queue's negatives were normalised with other subsets. MoCo shuffles the batch across GPUs
before the key encoder and un-shuffles after, so each query's BN subset differs from its key's.
lt_jax has no per-GPU slices: a jitted step sees the global batch sharded over the 'data' mesh
axis and BatchNorm statistics cover the whole batch (GSPMD inserts the all-reduce). The leak
remains (the current positives share whole-batch statistics with their queries, the queue's
negatives do not), so both encoders here run BatchNorm in G "ghost" groups with separate
statistics (`ghost_bn_apply`: reshape the batch to [G, B/G, ...] and `jax.vmap` the same
`model.apply` over the group axis). The query encoder uses contiguous groups of the batch in
its original order, like MoCo's per-GPU query BN; the key encoder uses contiguous groups of a
random permutation of the batch, then un-permutes its outputs, like MoCo's shuffle. So a
query's BN group and its key's BN group are different subsets (besides the sample itself they
share on average about 1/G of their members), exactly the structure MoCo gets from G GPUs,
independent of how many devices the batch is sharded over. G = `pretrain.bn_groups` (by
default the largest divisor of B up to 8); G = 1 degenerates to global BN, the leaky setting.

Running BatchNorm statistics: each group updates the running averages from its own batch
statistics and the G results are averaged, i.e. running = mom * running + (1 - mom) *
mean_g(stat_g): the group means average to the batch mean; the variance is the mean
within-group variance. The query encoder keeps the running statistics of its own forward
passes (these are the ones transferred downstream). The key encoder keeps its own too, updated
by its (shuffled) forward passes and never momentum-copied from the query encoder: MoCo's
momentum update covers `parameters()` only, not BN buffers. `momentum_update` works on any
pytree, should one prefer to pull `batch_stats_k` towards `batch_stats_q` as well. The key
encoder's running statistics are unused in training (train-mode BN uses batch statistics) and
are not transferred.

SimCLR: both views go through one encoder in a single forward pass over the 2B images, so
BatchNorm uses statistics of the whole global batch, which is SimCLR's "global BN". NT-Xent's
negatives are "gathered across devices" in SimCLR; here the step sees the global batch, so the
[2B, 2B] similarity matrix already covers every device's examples (GSPMD does the gathering).
"""

from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lt_jax.errors import ConfigError
from lt_jax.losses import cross_entropy
from lt_jax.models.heads import l2_normalize, torch_linear_bias_init
from lt_jax.models.resnet_cifar import CifarResNetBackbone
from lt_jax.train import step as step_lib

# PyTorch's default nn.Linear weight init, kaiming_uniform(a=sqrt(5)) = uniform(+-1/sqrt(fan_in)),
# which MoCo v2's MLP head keeps.
torch_linear_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')

MAX_DEFAULT_BN_GROUPS = 8  # MoCo's 8 GPUs.


# ----------------------------------------------------------------------------------------------
# Model.


class ProjectionHead(nn.Module):
  """MoCo v2's MLP head: Dense(hidden) - ReLU - Dense(out), PyTorch's default Linear init."""

  hidden: int
  out: int = 128

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Dense(self.hidden, kernel_init=torch_linear_kernel_init,
                 bias_init=torch_linear_bias_init(x.shape[-1]), name='fc1')(x)
    x = nn.relu(x)
    return nn.Dense(self.out, kernel_init=torch_linear_kernel_init,
                    bias_init=torch_linear_bias_init(self.hidden), name='fc2')(x)


class ContrastiveModel(nn.Module):
  """Backbone plus projection head; returns `(z, features)`.

  z = normalize(projector(features)) has shape [B, out] and unit L2 norm; features [B, F] are
  the backbone's pooled features (float32), for linear probes. `backbone_fn(name=...)` must
  build a `CifarResNetBackbone`-like module `(x, train) -> features`; `hidden=None` uses the
  feature width F, as MoCo v2 does (2048 -> 2048 -> 128 on ResNet-50).
  """

  backbone_fn: Callable[..., nn.Module] = CifarResNetBackbone
  hidden: int | None = None
  out: int = 128

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    features = self.backbone_fn(name='backbone')(x, train)
    features = jnp.asarray(features, jnp.float32)
    hidden = features.shape[-1] if self.hidden is None else self.hidden
    z = ProjectionHead(hidden, self.out, name='projector')(features)
    return l2_normalize(z, axis=-1), features


# ----------------------------------------------------------------------------------------------
# Losses.


def info_nce_logits(q: jax.Array, k: jax.Array, queue: jax.Array,
                    temperature: float) -> jax.Array:
  """MoCo's logits [B, 1 + K]: column 0 is q_i . k_i / T, column 1 + j is q_i . queue_j / T."""
  q, k, queue = (jnp.asarray(a, jnp.float32) for a in (q, k, queue))
  l_pos = jnp.sum(q * k, axis=-1, keepdims=True)
  l_neg = q @ queue.T
  return jnp.concatenate([l_pos, l_neg], axis=-1) / temperature


def info_nce(q: jax.Array, k: jax.Array, queue: jax.Array, temperature: float) -> jax.Array:
  """InfoNCE with a queue of negatives (MoCo, He et al. 2020, Eq. 1), one value per example.

    L_i = -log( exp(q_i.k_i / T) / (exp(q_i.k_i / T) + sum_j exp(q_i.queue_j / T)) )

  i.e. cross-entropy of the logits [q_i.k_i, q_i.queue_1, ..., q_i.queue_K] / T with label 0.
  q, k: [B, D] (L2-normalised by the model), queue: [K, D], T > 0. Returns [B] float32. Gradients
  flow into whatever is not stopped: MoCo's step passes stop_gradient(k) and a plain queue.
  """
  logits = info_nce_logits(q, k, queue, temperature)
  return cross_entropy(logits, jnp.zeros(logits.shape[:1], jnp.int32))


def nt_xent_logits(z_a: jax.Array, z_b: jax.Array,
                   temperature: float) -> tuple[jax.Array, jax.Array]:
  """SimCLR's [2B, 2B] logits z_i.z_j / T over the views [z_a; z_b], self-similarity -inf.

  Also returns the index of each row's positive, (i + B) mod 2B.
  """
  z = jnp.concatenate([z_a, z_b], axis=0).astype(jnp.float32)
  n = z.shape[0]
  logits = (z @ z.T) / temperature
  logits = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, logits)
  positives = (jnp.arange(n) + n // 2) % n
  return logits, positives


def nt_xent(z_a: jax.Array, z_b: jax.Array, temperature: float) -> jax.Array:
  """NT-Xent (SimCLR, Chen et al. 2020, Eq. 1), one value per view: [2B] float32.

  With z = [z_a; z_b] ([2B, D], L2-normalised so z_i.z_j is the cosine similarity) and p(i) the
  other view of example i ((i + B) mod 2B):

    L_i = -log( exp(z_i.z_p(i) / T) / sum_{j != i} exp(z_i.z_j / T) )

  The denominator holds the positive and the 2B - 2 other views; the self-similarity is
  excluded. Rows 0..B-1 are the a-views, rows B..2B-1 the b-views; SimCLR's loss is the mean.
  """
  logits, positives = nt_xent_logits(z_a, z_b, temperature)
  return cross_entropy(logits, positives)


# ----------------------------------------------------------------------------------------------
# MoCo pieces.


def momentum_update(params_k: Any, params_q: Any, m) -> Any:
  """theta_k <- m * theta_k + (1 - m) * theta_q, leaf by leaf (keeps theta_k's dtypes).

  m = 1 leaves theta_k unchanged, m = 0 copies theta_q; MoCo uses m = 0.999 on the key encoder's
  parameters. Works on any pytree pair of the same structure (batch_stats too, though MoCo's key
  encoder keeps the running statistics of its own forward passes; see the module docstring).
  """
  return jax.tree.map(lambda k, q: (m * k + (1.0 - m) * q).astype(k.dtype), params_k, params_q)


def check_queue_size(queue_size: int, batch_size: int) -> None:
  """MoCo's queue takes whole batches: K must be a positive multiple of the global batch B."""
  if queue_size < 1 or queue_size % batch_size:
    raise ConfigError(f'pretrain.queue_size={queue_size} must be a positive multiple of the '
                      f'global batch size {batch_size} (MoCo enqueues whole batches).')


def init_queue(key: jax.Array, queue_size: int, dim: int) -> jax.Array:
  """[K, D] random unit vectors (normal draws, L2-normalised per row), as MoCo's buffer."""
  return l2_normalize(jax.random.normal(key, (queue_size, dim), jnp.float32), axis=-1)


def enqueue(queue: jax.Array, ptr: jax.Array, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
  """FIFO ring buffer: rows (ptr + i) mod K <- keys[i], ptr <- (ptr + B) mod K.

  queue [K, D], ptr an int32 scalar, keys [B, D] with K % B == 0 (ConfigError naming
  `pretrain.queue_size` otherwise); the oldest keys are overwritten first.
  """
  size, batch = queue.shape[0], keys.shape[0]
  check_queue_size(size, batch)
  rows = (ptr + jnp.arange(batch, dtype=jnp.int32)) % size
  queue = queue.at[rows].set(jax.lax.stop_gradient(keys).astype(queue.dtype))
  return queue, ((ptr + batch) % size).astype(jnp.int32)


def resolve_bn_groups(batch_size: int, bn_groups: int | None = None) -> int:
  """The number G of ghost-BN groups: `bn_groups`, or by default the largest divisor of B <= 8.

  G must divide the global batch B (ConfigError naming `pretrain.bn_groups` otherwise).
  """
  if bn_groups is None:
    return max(g for g in range(1, MAX_DEFAULT_BN_GROUPS + 1) if batch_size % g == 0)
  if bn_groups < 1 or batch_size % bn_groups:
    raise ConfigError(f'pretrain.bn_groups={bn_groups} must be a positive divisor of the global '
                      f'batch size {batch_size}.')
  return bn_groups


def ghost_bn_apply(model: nn.Module, variables: dict, x: jax.Array, *, groups: int,
                   perm: jax.Array | None = None) -> tuple[Any, Any]:
  """Train-mode `model.apply` with BatchNorm statistics computed separately in G groups.

  Group g holds the samples x[perm][g * B/G : (g + 1) * B/G] (contiguous groups of x when perm
  is None). The same variables are applied to every group under `jax.vmap`, the outputs come
  back in the order of x (un-permuted with argsort(perm)), and the G updated running statistics
  are averaged. Returns (outputs, batch_stats).
  """
  batch = x.shape[0]
  groups = resolve_bn_groups(batch, groups)
  if perm is not None:
    x = x[perm]
  x = x.reshape(groups, batch // groups, *x.shape[1:])

  def apply_group(xg):
    return model.apply(variables, xg, train=True, mutable=['batch_stats'])

  out, updates = jax.vmap(apply_group)(x)
  out = jax.tree.map(lambda y: y.reshape(batch, *y.shape[2:]), out)
  if perm is not None:
    inverse = jnp.argsort(perm)
    out = jax.tree.map(lambda y: y[inverse], out)
  batch_stats = jax.tree.map(lambda s: jnp.mean(s, axis=0), updates.get('batch_stats', {}))
  return out, batch_stats


# ----------------------------------------------------------------------------------------------
# States and steps.


@flax.struct.dataclass
class MocoState:
  step: jax.Array
  params_q: Any
  batch_stats_q: Any
  params_k: Any
  batch_stats_k: Any
  opt_state: Any
  queue: jax.Array  # [K, D] float32 keys, unit norm.
  queue_ptr: jax.Array  # int32 scalar: the next row to write.
  rng: jax.Array  # The run's base key as raw key data (uint32[2]); per-step keys fold in step.


@flax.struct.dataclass
class SimclrState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array  # As in MocoState.


def _init_variables(model: nn.Module, key: jax.Array, input_shape) -> tuple[Any, Any]:
  variables = model.init(key, jnp.zeros((1, *input_shape), jnp.float32), train=False)
  return variables['params'], variables.get('batch_stats', {})


def _check_out_dim(model: nn.Module, input_shape, dim: int) -> None:
  z, _ = jax.eval_shape(
      lambda: model.init_with_output(jax.random.key(0), jnp.zeros((1, *input_shape)),
                                     train=False)[0])
  if z.shape[-1] != dim:
    raise ConfigError(f'The model projects to {z.shape[-1]} dimensions but the queue was asked '
                      f'for dim={dim}; they must match.')


def _seed_keys(key: jax.Array, method: str) -> tuple[jax.Array, jax.Array | None, jax.Array]:
  """(initialisation, queue or None, run) keys of a seed's key: MoCo draws a queue too."""
  if method == "moco":
    init_key, queue_key, run_key = jax.random.split(key, 3)
    return init_key, queue_key, run_key
  init_key, run_key = jax.random.split(key)
  return init_key, None, run_key


def sampler_key(method: str, seed: int) -> jax.Array:
  """The key a `method` pre-training from `seed` samples its batches with (its state's rng
  through `step_lib.step_keys`): what a host feed needs to draw the device step's batches."""
  _, _, run_key = _seed_keys(jax.random.wrap_key_data(step_lib.seed_key_data(seed)), method)
  return step_lib.step_keys(jax.random.key_data(run_key), 0)[0]


def create_moco_state(model: nn.Module, tx: optax.GradientTransformation, input_shape,
                      seed: int, queue_size: int, dim: int, sharding) -> MocoState:
  """Initialises the query encoder, copies it into the key encoder, draws the queue.

  Created directly with `sharding` (replicated) by `jit(init, out_shardings=sharding)`.
  """
  _check_out_dim(model, input_shape, dim)
  if queue_size < 1:
    raise ConfigError(f'pretrain.queue_size={queue_size} must be positive.')

  def init(key):
    init_key, queue_key, run_key = _seed_keys(key, "moco")
    params, batch_stats = _init_variables(model, init_key, input_shape)
    return MocoState(
        step=jnp.zeros((), jnp.int32), params_q=params, batch_stats_q=batch_stats,
        params_k=jax.tree.map(jnp.copy, params), batch_stats_k=jax.tree.map(jnp.copy, batch_stats),
        opt_state=tx.init(params), queue=init_queue(queue_key, queue_size, dim),
        queue_ptr=jnp.zeros((), jnp.int32), rng=jax.random.key_data(run_key))

  return step_lib.compile_initializer(lambda k: init(jax.random.wrap_key_data(k)), sharding)(
      step_lib.seed_key_data(seed))


def create_simclr_state(model: nn.Module, tx: optax.GradientTransformation, input_shape,
                        seed: int, sharding) -> SimclrState:
  """Initialises one encoder (backbone + projector) directly with `sharding`."""

  def init(key):
    init_key, _, run_key = _seed_keys(key, "simclr")
    params, batch_stats = _init_variables(model, init_key, input_shape)
    return SimclrState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                       opt_state=tx.init(params), rng=jax.random.key_data(run_key))

  return step_lib.compile_initializer(lambda k: init(jax.random.wrap_key_data(k)), sharding)(
      step_lib.seed_key_data(seed))


def _constrain(x: jax.Array, sharding) -> jax.Array:
  return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)


def moco_train_step(state: MocoState, images_a: jax.Array, images_b: jax.Array,
                    shuffle_key: jax.Array, *, model: nn.Module,
                    tx: optax.GradientTransformation, temperature: float, momentum: float,
                    bn_groups: int | None = None, batch_sharding=None) -> tuple[MocoState, dict]:
  """One MoCo v2 step on two augmented (and normalised) views [B, H, W, C] of the same images.

  q = f_q(a) in contiguous ghost-BN groups; k = stop_gradient(f_k(b)) in groups of a random
  permutation (drawn from `shuffle_key`, which the stage splits from the step's key),
  un-permuted; loss = mean_i info_nce(q, k, queue);
  SGD on params_q; params_k <- momentum_update(params_k, params_q, momentum); enqueue k.
  Metrics: loss, accuracy (the fraction of queries whose positive logit is the largest),
  queue_ptr (after the enqueue).
  """
  batch = images_a.shape[0]
  groups = resolve_bn_groups(batch, bn_groups)
  check_queue_size(state.queue.shape[0], batch)
  images_a = _constrain(images_a, batch_sharding)
  images_b = _constrain(images_b, batch_sharding)
  perm = jax.random.permutation(shuffle_key, batch)

  (k, _), batch_stats_k = ghost_bn_apply(
      model, {'params': state.params_k, 'batch_stats': state.batch_stats_k}, images_b,
      groups=groups, perm=perm)
  k = _constrain(jax.lax.stop_gradient(k), batch_sharding)

  def loss_fn(params):
    (q, _), batch_stats = ghost_bn_apply(
        model, {'params': params, 'batch_stats': state.batch_stats_q}, images_a, groups=groups)
    logits = info_nce_logits(q, k, state.queue, temperature)
    loss = jnp.mean(cross_entropy(logits, jnp.zeros((batch,), jnp.int32)))
    return loss, (logits, batch_stats)

  (loss, (logits, batch_stats_q)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params_q)
  updates, opt_state = tx.update(grads, state.opt_state, state.params_q)
  params_q = optax.apply_updates(state.params_q, updates)
  params_k = momentum_update(state.params_k, params_q, momentum)
  queue, queue_ptr = enqueue(state.queue, state.queue_ptr, k)
  new_state = state.replace(step=state.step + 1, params_q=params_q, batch_stats_q=batch_stats_q,
                            params_k=params_k, batch_stats_k=batch_stats_k, opt_state=opt_state,
                            queue=queue, queue_ptr=queue_ptr)
  metrics = {'loss': loss, 'accuracy': jnp.mean(jnp.argmax(logits, axis=-1) == 0),
             'queue_ptr': queue_ptr}
  return new_state, metrics


def simclr_train_step(state: SimclrState, images_a: jax.Array, images_b: jax.Array, *,
                      model: nn.Module, tx: optax.GradientTransformation, temperature: float,
                      batch_sharding=None) -> tuple[SimclrState, dict]:
  """One SimCLR step: [a; b] through one encoder (global BN over the 2B images), NT-Xent.

  Metrics: loss (mean over the 2B views), accuracy (the fraction of views whose positive is
  the most similar of the 2B - 1 others).
  """
  images = jnp.concatenate([_constrain(images_a, batch_sharding),
                            _constrain(images_b, batch_sharding)], axis=0)
  images = _constrain(images, batch_sharding)
  batch = images_a.shape[0]

  def loss_fn(params):
    (z, _), updates = model.apply({'params': params, 'batch_stats': state.batch_stats}, images,
                                  train=True, mutable=['batch_stats'])
    logits, positives = nt_xent_logits(z[:batch], z[batch:], temperature)
    loss = jnp.mean(cross_entropy(logits, positives))
    return loss, (logits, positives, updates.get('batch_stats', {}))

  (loss, (logits, positives, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state)
  metrics = {'loss': loss, 'accuracy': jnp.mean(jnp.argmax(logits, axis=-1) == positives)}
  return new_state, metrics
