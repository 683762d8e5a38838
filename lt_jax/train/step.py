"""Train state and the pure train steps (the eval-mode forward pass is `lt_jax.predict`).

`train_step(state, data) -> (state, metrics)`: sample indices, gather from the device-resident
uint8 training set, augment, normalise, forward, loss, SGD update. `train_step_on_batch` takes
a batch the host drew and augmented (ImageNet-size data) and shares the forward, loss and
update (`sgd_update`). Every random choice comes from `state.rng` and `state.step` through
`step_keys`, so a step is a pure function of its inputs and a resumed run replays the same
batches, crops and flips. The driver (`train/driver.py`) runs many of these steps per
dispatch; metrics are per-step scalars.
"""


import functools
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lt_jax.data import augment as augment_lib
from lt_jax.data.samplers import Sampler


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array  # The run's base key; per-step keys are fold_in(rng, step).


@flax.struct.dataclass
class DeviceData:
  """A split kept on the accelerator: uint8 images [N, H, W, C] and int32 labels [N]."""
  images: jax.Array
  labels: jax.Array


def step_keys(rng_data: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(sampler key, step key) of a run's key data at `step`: every stage uses this scheme.

  The sampler key is fixed for the run (samplers fold in the step or epoch themselves); the
  step key drives this step's augmentation and pretext draws (split it, never reuse it).
  """
  rng = jax.random.wrap_key_data(rng_data)
  return jax.random.fold_in(rng, 0), jax.random.fold_in(jax.random.fold_in(rng, 1), step)


def create_state(model: nn.Module, tx: optax.GradientTransformation, input_shape, seed: int,
                 sharding) -> TrainState:
  """Initialises parameters directly with their (replicated) sharding. Compiled once per
  (model, optimiser, shape, sharding): a grid creates many states that differ only in seed."""
  return _init_fn(model, tx, tuple(input_shape), sharding)(seed_key_data(seed))


def seed_key_data(seed: int) -> jax.Array:
  """The raw key data of `seed`: what every stage's initialiser takes."""
  return jax.random.key_data(jax.random.key(seed))


def _init_and_run_keys(key_data: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(parameter initialisation key, the run's key: TrainState.rng's) of a seed's key data."""
  init_key, run_key = jax.random.split(jax.random.wrap_key_data(key_data))
  return init_key, run_key


def sampler_key(seed: int) -> jax.Array:
  """The sampler key a classifier trained from `seed` draws its batches with (`step_keys`):
  what a host feed needs to draw the very batches the device-resident step would
  (`contrastive.sampler_key` is a pre-training's)."""
  _, run_key = _init_and_run_keys(seed_key_data(seed))
  return step_keys(jax.random.key_data(run_key), 0)[0]


@functools.lru_cache(maxsize=64)
def _init_fn(model: nn.Module, tx: optax.GradientTransformation, input_shape: tuple, sharding):
  def init(key_data):
    init_key, run_key = _init_and_run_keys(key_data)
    variables = model.init(init_key, jnp.zeros((1, *input_shape), jnp.float32), train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                      rng=jax.random.key_data(run_key))
  return compile_initializer(init, sharding)


def compile_initializer(init: Callable[[jax.Array], Any], sharding) -> Callable:
  """`init(key_data) -> state` compiled with `sharding` for its outputs, for a program that
  runs once per run.

  On a CPU the compilation skips LLVM's optimisation passes: a ResNet-32's initialiser (a
  random draw per parameter, about 2,000 operations) took 11-14 s to compile optimised on a
  2-core CPU and 3.4-5.5 s without, and it runs once. Its normal draws then differ from an
  optimised build's in the last bit of about 4% of the values (max 6e-8); accelerators
  compile it as before.
  """
  jitted = jax.jit(init, out_shardings=sharding)
  if jax.default_backend() != "cpu":
    return jitted
  key = seed_key_data(0)
  compiled = jitted.lower(jax.ShapeDtypeStruct(key.shape, key.dtype)).compile(
      compiler_options={"xla_backend_optimization_level": 0})
  # Traced (inside eval_shape or another jit), it is the plain jitted function.
  return lambda key_data: (jitted if isinstance(key_data, jax.core.Tracer) else compiled)(
      key_data)


def train_step(state: TrainState, data: DeviceData, *, model: nn.Module,
               tx: optax.GradientTransformation, objective: Callable, sampler: Sampler,
               augment: Callable, mean, std, steps_per_epoch: int,
               schedule: Callable, batch_sharding, task_transform: Callable | None = None,
               labeled_per_batch: int | None = None, unlabeled_weight: float = 1.0
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step. `task_transform(key, images, labels) -> (images, labels)` turns the batch
  into a pretext task (rotation prediction). With `labeled_per_batch`, the first that many
  examples of the batch are labeled and the rest pseudo-labeled, and the loss is
  L_labeled + unlabeled_weight * L_unlabeled, each reduced over its own part."""
  sample_key, step_key = step_keys(state.rng, state.step)
  aug_key, task_key = jax.random.split(step_key)

  idx = sampler(sample_key, state.step)
  images = jax.lax.with_sharding_constraint(data.images[idx], batch_sharding)
  labels = jax.lax.with_sharding_constraint(data.labels[idx], batch_sharding)
  images = augment(aug_key, images)
  if task_transform is not None:
    images, labels = task_transform(task_key, images, labels)
  return sgd_update(state, augment_lib.normalize(images, mean, std), labels, model=model,
                    tx=tx, objective=objective, steps_per_epoch=steps_per_epoch,
                    schedule=schedule, labeled_per_batch=labeled_per_batch,
                    unlabeled_weight=unlabeled_weight)


def train_step_on_batch(state: TrainState, batch: dict, *, model: nn.Module,
                        tx: optax.GradientTransformation, objective: Callable, mean, std,
                        steps_per_epoch: int, schedule: Callable, batch_sharding,
                        task_transform: Callable | None = None,
                        labeled_per_batch: int | None = None, unlabeled_weight: float = 1.0,
                        augment: Callable | None = None
                        ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on a batch the host already drew and augmented (ImageNet-size data, see
  train/feed.py): {'image': uint8 [B, S, S, 3], 'label': int32 [B]}. The forward pass, loss,
  update and metrics are `train_step`'s; the step key is drawn as there (`step_keys`), so a
  pretext `task_transform` gets the same key it would get from the device-resident step;
  `labeled_per_batch` and `unlabeled_weight` as there. `augment(key, images)` (the device
  augmentation, for images the host only read) draws the key `train_step` gives it."""
  _, step_key = step_keys(state.rng, state.step)
  aug_key, task_key = jax.random.split(step_key)
  images = jax.lax.with_sharding_constraint(batch["image"], batch_sharding)
  labels = jax.lax.with_sharding_constraint(batch["label"], batch_sharding)
  if augment is not None:
    images = augment(aug_key, images)
  if task_transform is not None:
    images, labels = task_transform(task_key, images, labels)
  return sgd_update(state, augment_lib.normalize(images, mean, std), labels, model=model,
                    tx=tx, objective=objective, steps_per_epoch=steps_per_epoch,
                    schedule=schedule, labeled_per_batch=labeled_per_batch,
                    unlabeled_weight=unlabeled_weight)


def sgd_update(state: TrainState, x: jax.Array, labels: jax.Array, *, model: nn.Module,
               tx: optax.GradientTransformation, objective: Callable, steps_per_epoch: int,
               schedule: Callable, labeled_per_batch: int | None = None,
               unlabeled_weight: float = 1.0) -> tuple[TrainState, dict[str, jax.Array]]:
  """Forward, loss, gradient and optimiser update on a normalised batch: the part every
  supervised step shares, whatever produced the batch. Metrics: loss, accuracy, grad_norm, lr."""
  epoch = state.step // steps_per_epoch

  def total_loss(logits):
    if labeled_per_batch is None:
      return objective(logits, labels, epoch)
    unlabeled = jnp.arange(labels.shape[0]) >= labeled_per_batch
    return (objective(logits, labels, epoch, where=~unlabeled)
            + unlabeled_weight * objective(logits, labels, epoch, where=unlabeled))

  def loss_fn(params):
    (logits, _), updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, x, train=True,
        mutable=["batch_stats"])
    return total_loss(logits), (logits, updates.get("batch_stats", state.batch_stats))

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state)
  return new_state, {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
                     "grad_norm": optax.tree.norm(grads), "lr": schedule(state.step)}
