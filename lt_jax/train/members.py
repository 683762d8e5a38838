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

On a mesh with a 'models' axis (`parallel.model_group_mesh`), every cohort's model axis is
split over the groups of devices: vmap's `spmd_axis_name` carries the split into each model's
step, so a group computes only its own models, with no gradient exchange between groups. A
cohort whose size the groups do not divide is padded with copies of its last model: a copy
draws its original's batches (the same keys), is frozen with it, and is never read back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from lt_jax import parallel
from lt_jax.errors import ConfigError

MEMBER_MAPS = ("auto", "vmap", "unroll")


def check_member_map(name: str, split: bool) -> None:
  """Refuses a `member_map` the grid cannot run; `split`: models are split over groups of
  devices (`grid.devices_per_model` > 0), which only vmap can shard."""
  if name not in MEMBER_MAPS:
    raise ConfigError(f"grid.member_map={name!r} is unknown; choose one of {MEMBER_MAPS}.")
  if split and name == "unroll":
    raise ConfigError(
        "grid.member_map='unroll' cannot split models over groups of devices "
        "(grid.devices_per_model); use member_map='vmap' (or 'auto'), or "
        "devices_per_model=0 to train every model on every device.")


def resolve_member_map(name: str, model_groups: int = 1) -> str:
  """`auto`: unroll on CPU backends, vmap elsewhere, and vmap whenever models are split over
  groups of devices (`model_groups` > 1)."""
  check_member_map(name, model_groups > 1)
  if model_groups > 1:
    return "vmap"
  if name != "auto":
    return name
  return "unroll" if jax.default_backend() == "cpu" else "vmap"


def stack(trees: Sequence[Any]) -> Any:
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: Any, n: int) -> list[Any]:
  return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(n)]


def map_models(fn: Callable, how: str, num_models: int, split: bool = False,
               stacked: int = 1) -> Callable:
  """`fn(state, *args)` as a function of a stacked state (models on axis 0) and `args`, of
  which the first `stacked` - 1 are stacked too (one per model: a batch each, counts each) and
  the rest shared; outputs are stacked the same way. `split` (vmap only): the model axis is
  the mesh's 'models' axis inside `fn` too, so its sharding constraints keep each group's
  models on that group."""
  if how == "vmap":
    spmd = parallel.MODELS_AXIS if split else None
    return lambda *args: jax.vmap(
        fn, in_axes=(0,) * stacked + (None,) * (len(args) - stacked),
        spmd_axis_name=spmd)(*args)
  if how == "unroll":
    def unrolled(*args):
      ones = [unstack(a, num_models) for a in args[:stacked]]
      return stack([fn(*(one[i] for one in ones), *args[stacked:])
                    for i in range(num_models)])
    return unrolled
  raise ValueError(f"how={how!r}; use 'vmap' or 'unroll'.")


def padded_size(num_models: int, groups: int) -> int:
  """A cohort's stacked size when its models are split over `groups` groups of devices."""
  return -(-num_models // groups) * groups


def pad_models(tree: Any, size: int) -> Any:
  """`tree`'s leaves [n, ...] grown to [size, ...] with copies of their last model."""
  def pad(x):
    extra = size - x.shape[0]
    return jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)]) if extra else x
  return jax.tree.map(pad, tree)


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


def num_models(cohort: Any) -> int:
  return int(jax.tree.leaves(cohort)[0].shape[0])


def create(cohorts: Sequence[Any], keep_best: bool, mesh: Mesh) -> StackedState:
  """A StackedState of stacked cohort states (all at step 0, of their real sizes), padded for
  the mesh's groups of devices and placed as `shardings` says: a leaf placed otherwise than
  the step's outputs would make the step's second call compile it again."""
  sizes = [num_models(c) for c in cohorts]
  groups = parallel.model_groups(mesh)
  m = sum(sizes)

  def build(cohorts):
    cohorts = tuple(pad_models(c, padded_size(n, groups)) for c, n in zip(cohorts, sizes))
    return StackedState(
        step=jnp.zeros((), jnp.int32), cohorts=cohorts,
        failed_at=jnp.full((m,), -1, jnp.int32), best=cohorts if keep_best else None,
        best_score=jnp.full((m,), -jnp.inf, jnp.float32),
        best_epoch=jnp.zeros((m,), jnp.int32))

  shapes = jax.eval_shape(build, tuple(cohorts))
  return jax.jit(build, out_shardings=shardings(shapes, mesh))(tuple(cohorts))


def shardings(state: StackedState, mesh: Mesh) -> StackedState:
  """Each leaf's placement: the stacked models' states (and best states) split over the
  mesh's 'models' axis where it has one, the per-model records and the step replicated."""
  rep, split = parallel.replicated(mesh), parallel.models_sharded(mesh)
  return jax.tree.map(lambda _: rep, state).replace(
      cohorts=jax.tree.map(lambda _: split, state.cohorts),
      best=None if state.best is None else jax.tree.map(lambda _: split, state.best))


def _select(mask: jax.Array, new: Any, old: Any) -> Any:
  """Per model: `new` where `mask` else `old` (mask [n] against leaves [n, ...])."""
  return jax.tree.map(
      lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


def _per_cohort(values: jax.Array, sizes: Sequence[int], cohorts: tuple) -> list[jax.Array]:
  """A per-model vector [M] as one vector per cohort, padded as the cohort's stacked state."""
  return [pad_models(values[sl], num_models(c))
          for sl, c in zip(cohort_slices(sizes), cohorts)]


def make_step(cohort_steps: Sequence[Callable], sizes: Sequence[int], how: str,
              split: bool = False, batch_per_model: bool = False) -> Callable:
  """The program's pure step `(StackedState, data) -> (StackedState, metrics)`.

  Every cohort steps with its own function (`split`: see `map_models`). The data is shared by
  every model (device-resident images each model samples), or, with `batch_per_model`, a
  host-fed batch per model (`cohort_batch`: cohort c's under keys 'c/<name>', models on axis
  0, a padded cohort's copies with their original's rows). A model whose metrics
  are not finite keeps its previous state from then on and `failed_at` records the step.
  Metrics: per model as `member/<name>` vectors (0 for frozen models) and, for progress, their
  mean over the models still training (NaN once none is, which stops the driver).
  """
  mapped = [map_models(fn, how, n, split, stacked=2 if batch_per_model else 1)
            for fn, n in zip(cohort_steps, sizes)]

  def step(state: StackedState, data) -> tuple[StackedState, dict[str, jax.Array]]:
    outs = [fn(cohort, cohort_batch(data, c) if batch_per_model else data)
            for c, (fn, cohort) in enumerate(zip(mapped, state.cohorts))]
    per_model = {k: jnp.concatenate([jnp.asarray(m[k], jnp.float32)[:n]
                                     for (_, m), n in zip(outs, sizes)])
                 for k in outs[0][1]}
    finite = jnp.all(jnp.stack([jnp.isfinite(v) for v in per_model.values()]), axis=0)
    healthy = state.failed_at < 0
    ok = healthy & finite
    cohorts = tuple(_select(keep, new, old) for keep, (new, _), old in
                    zip(_per_cohort(ok, sizes, state.cohorts), outs, state.cohorts))
    failed_at = jnp.where(healthy & ~finite, state.step, state.failed_at)
    live = jnp.sum(ok)
    metrics = {k: jnp.sum(jnp.where(ok, v, 0.0)) / live for k, v in per_model.items()}
    metrics |= {f"member/{k}": jnp.where(ok, v, 0.0) for k, v in per_model.items()}
    metrics["models_training"] = live.astype(jnp.float32)
    return state.replace(step=state.step + 1, cohorts=cohorts, failed_at=failed_at), metrics
  return step


def cohort_batch(batch: dict, cohort: int) -> dict:
  """Cohort `cohort`'s part of a program's per-model batch ({'<cohort>/<name>': [n, ...]})."""
  prefix = f"{cohort}/"
  return {k[len(prefix):]: v for k, v in batch.items() if k.startswith(prefix)}


def update_best(state: StackedState, improved: jax.Array, scores: jax.Array, epoch: jax.Array,
                sizes: Sequence[int]) -> StackedState:
  """Keeps each model's state, score and epoch where `improved` [M] (its score beat its best
  so far: the caller decides, so its own records follow the same choice)."""
  best = tuple(_select(up, cur, old) for up, cur, old in
               zip(_per_cohort(improved, sizes, state.cohorts), state.cohorts, state.best))
  return state.replace(best=best, best_score=jnp.where(improved, scores, state.best_score),
                       best_epoch=jnp.where(improved, epoch, state.best_epoch))


def model_states(cohorts: tuple, sizes: Sequence[int]) -> list[Any]:
  """The program's models as single states, in model order (padding copies left out)."""
  return [one for cohort, n in zip(cohorts, sizes) for one in unstack(cohort, n)]
