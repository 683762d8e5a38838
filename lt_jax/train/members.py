"""Many models in one program: a stacked state, one pure step over every model, and models
that diverge frozen while the others go on.

A program's models come in cohorts: the models of a cohort share one step function (the same
loss, head, class weights and schedule; they differ in seed and initial weights only), so their
states are stacked along a leading axis and the step is mapped over it. Models with different
steps sit in different cohorts of the same program, which XLA compiles as one computation over
one copy of the data.

How a cohort's step is mapped over its models (`member_map`):
- vmap: one batched computation (a convolution over M models becomes one grouped convolution),
  what keeps an accelerator busy;
- unroll: the models' steps side by side in one program, each exactly its own computation.
  XLA:CPU runs grouped convolutions several times slower than M plain ones (a cohort of four
  ResNet-20s: 4.3x), so `auto` picks unroll on CPU backends and vmap elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

MEMBER_MAPS = ("auto", "vmap", "unroll")


def resolve_member_map(name: str) -> str:
  if name not in MEMBER_MAPS:
    raise ValueError(f"member_map={name!r}; choose one of {MEMBER_MAPS}.")
  if name != "auto":
    return name
  return "unroll" if jax.default_backend() == "cpu" else "vmap"


def stack(trees: Sequence[Any]) -> Any:
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: Any, n: int) -> list[Any]:
  return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(n)]


def map_models(fn: Callable, how: str, num_models: int) -> Callable:
  """`fn(state, *shared)` as a function of a stacked state (models on axis 0) and shared
  arguments; outputs are stacked the same way."""
  if how == "vmap":
    return lambda stacked, *shared: jax.vmap(fn, in_axes=(0,) + (None,) * len(shared))(
        stacked, *shared)
  if how == "unroll":
    return lambda stacked, *shared: stack(
        [fn(one, *shared) for one in unstack(stacked, num_models)])
  raise ValueError(f"how={how!r}; use 'vmap' or 'unroll'.")


@flax.struct.dataclass
class StackedState:
  """Every model of a program. `step` is the program's step (the driver's counter); a frozen
  model's own `step` stops where it diverged. With model selection, `best` holds each model's
  state at its best evaluation so far, so it is checkpointed and resumed with the rest."""
  step: jax.Array
  cohorts: tuple  # One TrainState per cohort, its models stacked on axis 0.
  failed_at: jax.Array  # [M] int32: the step whose metrics were not finite, -1 while healthy.
  best: tuple | None  # Like `cohorts`, or None without model selection.
  best_score: jax.Array  # [M] float32, -inf before the first evaluation.
  best_epoch: jax.Array  # [M] int32, 0 before the first evaluation.


def cohort_slices(sizes: Sequence[int]) -> list[slice]:
  """Each cohort's models as a slice of the program's model axis [M]."""
  ends = np.cumsum(sizes)
  return [slice(int(e - n), int(e)) for n, e in zip(sizes, ends)]


def create(cohorts: Sequence[Any], keep_best: bool, sharding) -> StackedState:
  """A StackedState of stacked cohort states (all at step 0), every leaf placed with
  `sharding`: a leaf placed otherwise than the step's outputs would make the step's second
  call compile it again."""
  m = sum(int(jax.tree.leaves(c)[0].shape[0]) for c in cohorts)
  cohorts = tuple(cohorts)
  return jax.device_put(StackedState(
      step=jnp.zeros((), jnp.int32), cohorts=cohorts, failed_at=jnp.full((m,), -1, jnp.int32),
      best=jax.tree.map(jnp.copy, cohorts) if keep_best else None,
      best_score=jnp.full((m,), -jnp.inf, jnp.float32), best_epoch=jnp.zeros((m,), jnp.int32)),
      sharding)


def _select(mask: jax.Array, new: Any, old: Any) -> Any:
  """Per model: `new` where `mask` else `old` (mask [n] against leaves [n, ...])."""
  return jax.tree.map(
      lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


def make_step(cohort_steps: Sequence[Callable], sizes: Sequence[int], how: str) -> Callable:
  """The program's pure step `(StackedState, data) -> (StackedState, metrics)`.

  Every cohort steps with its own function. A model whose metrics are not finite keeps its
  previous state from then on and `failed_at` records the step. Metrics: per model as
  `member/<name>` vectors (0 for frozen models) and, for progress, their mean over the
  models still training (NaN once none is, which stops the driver).
  """
  mapped = [map_models(fn, how, n) for fn, n in zip(cohort_steps, sizes)]
  slices = cohort_slices(sizes)

  def step(state: StackedState, data) -> tuple[StackedState, dict[str, jax.Array]]:
    outs = [fn(cohort, data) for fn, cohort in zip(mapped, state.cohorts)]
    per_model = {k: jnp.concatenate([jnp.asarray(m[k], jnp.float32) for _, m in outs])
                 for k in outs[0][1]}
    finite = jnp.all(jnp.stack([jnp.isfinite(v) for v in per_model.values()]), axis=0)
    healthy = state.failed_at < 0
    ok = healthy & finite
    cohorts = tuple(_select(ok[sl], new, old)
                    for sl, (new, _), old in zip(slices, outs, state.cohorts))
    failed_at = jnp.where(healthy & ~finite, state.step, state.failed_at)
    live = jnp.sum(ok)
    metrics = {k: jnp.sum(jnp.where(ok, v, 0.0)) / live for k, v in per_model.items()}
    metrics |= {f"member/{k}": jnp.where(ok, v, 0.0) for k, v in per_model.items()}
    metrics["models_training"] = live.astype(jnp.float32)
    return state.replace(step=state.step + 1, cohorts=cohorts, failed_at=failed_at), metrics
  return step


def update_best(state: StackedState, improved: jax.Array, scores: jax.Array, epoch: jax.Array,
                sizes: Sequence[int]) -> StackedState:
  """Keeps each model's state, score and epoch where `improved` [M] (its score beat its best
  so far: the caller decides, so its own records follow the same choice)."""
  best = tuple(_select(improved[sl], cur, old)
               for sl, cur, old in zip(cohort_slices(sizes), state.cohorts, state.best))
  return state.replace(best=best, best_score=jnp.where(improved, scores, state.best_score),
                       best_epoch=jnp.where(improved, epoch, state.best_epoch))


def model_states(cohorts: tuple, sizes: Sequence[int]) -> list[Any]:
  """The program's models as single states, in model order."""
  return [one for cohort, n in zip(cohorts, sizes) for one in unstack(cohort, n)]
