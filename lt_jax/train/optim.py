"""The reference's optimiser: SGD with momentum, coupled weight decay, an lr set once per epoch.

PyTorch's SGD adds weight_decay * p to the gradient before the momentum buffer (coupled decay)
on every parameter, BatchNorm and biases included; optax's `add_decayed_weights` before `sgd`
is the same update: buf = momentum * buf + (g + wd * p); p -= lr * buf.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lt_jax.errors import ConfigError

SCHEDULES = ("step", "cosine")


def lr_at_epoch(epoch: int, optim: ml_collections.ConfigDict, num_epochs: int) -> float:
  """The learning rate used throughout 0-based epoch `epoch` (host-side, for logs and tests).

  step:   lr * (e + 1) / warmup for e < warmup, then lr, times decay_factors[i] from
          decay_epochs[i] on (reference: 0.1, x0.01 at 160, x0.0001 at 180).
  cosine: the same warm-up, then lr * 0.5 * (1 + cos(pi * t / (E - warmup))) with
          t = e - warmup + cosine_offset: offset 1 is PyTorch's CosineAnnealingLR stepped
          before each epoch, as the ImageNet-LT reference's loop does (the last epoch at 0).
  """
  base, warmup = optim.lr, optim.warmup_epochs
  if epoch < warmup:
    return base * (epoch + 1) / warmup
  if optim.schedule == "cosine":
    span = max(num_epochs - warmup, 1)
    t = epoch - warmup + optim.cosine_offset
    return base * 0.5 * (1.0 + math.cos(math.pi * t / span))
  factor = 1.0
  boundaries = list(zip(optim.decay_epochs, optim.decay_factors))
  if optim.first_release_lr_schedule:
    boundaries = boundaries[:1]  # The first release never reaches its second decay.
  for start, f in boundaries:
    if epoch >= start:
      factor = f
  return base * factor


def make_schedule(optim: ml_collections.ConfigDict, num_epochs: int,
                  steps_per_epoch: int) -> optax.Schedule:
  """step -> lr, constant within an epoch: a table of per-epoch values indexed by step."""
  if optim.schedule not in SCHEDULES:
    raise ConfigError(f"optim.schedule={optim.schedule!r} is unknown; choose one of {SCHEDULES}.")
  table = jnp.asarray([lr_at_epoch(e, optim, num_epochs) for e in range(num_epochs)],
                      jnp.float32)

  def schedule(step):
    return table[jnp.minimum(step // steps_per_epoch, num_epochs - 1)]
  return schedule


def cosine_schedule(lr: float, num_epochs: int, steps_per_epoch: int,
                    offset: int = 0) -> optax.Schedule:
  """The cosine of `lr_at_epoch` without warm-up, set once per epoch: MoCo's schedule
  (offset 0: epoch e at lr * 0.5 * (1 + cos(pi e / E)))."""
  optim = ml_collections.ConfigDict({"lr": lr, "schedule": "cosine", "warmup_epochs": 0,
                                     "cosine_offset": offset})
  return make_schedule(optim, num_epochs, steps_per_epoch)


def make_optimizer(optim: ml_collections.ConfigDict, num_epochs: int, steps_per_epoch: int,
                   frozen: tuple[str, ...] = ()) -> optax.GradientTransformation:
  """SGD as the reference; the parameters under the paths named in `frozen` ('backbone' for a
  whole group, 'head/kernel' for one leaf) get no update at all, weight decay included."""
  schedule = make_schedule(optim, num_epochs, steps_per_epoch)
  tx = optax.chain(
      optax.add_decayed_weights(optim.weight_decay),
      optax.sgd(schedule, momentum=optim.momentum or None, nesterov=optim.nesterov),
  )
  if not frozen:
    return tx

  def is_frozen(path) -> bool:
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    return any(name == f or name.startswith(f + "/") for f in frozen)

  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "frozen" if is_frozen(path) else "train", params)
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
