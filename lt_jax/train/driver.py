"""The one training loop: epochs, evaluation hook, checkpoints, resume, timing and progress.

Every stage (supervised, rotation, MoCo, SimCLR, and the multi-model steps built on them)
hands the driver a pure step `step(state, data) -> (state, metrics)` wrapped by
`make_multi_step`, a state to start from, and optionally an evaluation hook. The driver knows
nothing else about the stage.

`data` is either device-resident (the same arrays every call; the step samples from them) or
a `train.feed.Feed` that hands over the next global batch each step (ImageNet-size data
decoded and augmented on the host). A feed is started at the step the run resumes from, its
stream and position go into every checkpoint's meta and are checked on resume, so a run
stopped mid-epoch continues with the same batches.

Keeping the accelerator busy: within an epoch the host never waits on the device. It keeps
its own step counter, dispatches up to `steps_per_call` steps per call (one compiled
`fori_loop` whose trip count is an argument, so every chunk size runs the same program and
results are bit-identical whatever `steps_per_call` is), and reads the metric sums of a log
window only after the next call is queued. The loop runs under
`jax.transfer_guard_device_to_host("disallow")`: an accidental host read fails loudly. Evaluation
and checkpoints happen on epoch boundaries (a stop request, below, may save inside an epoch).

Restore order: the newest checkpoint of this workdir (resume; the stage's `initialize` is then
skipped), else `initialize(state)` (e.g. a pre-trained backbone), else the state as given.

A stop request (SIGTERM, Ctrl-C: see train/preemption.py) is honoured at the end of a log
window inside an epoch, or at the end of an epoch (after its evaluation): the state is saved at
that step (mid-epoch, with the epoch's metric sums so far) and the resumed run goes on from
there, so its parameters, history and metrics.jsonl equal an uninterrupted run's.

Metrics are scalars, or vectors (one entry per model of a stacked state, see train/members.py):
vectors are summed and averaged like scalars and kept in the history as lists, while progress
lines and TensorBoard show the scalars.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lt_jax import parallel
from lt_jax import workdir as workdir_lib
from lt_jax.checkpoint import Checkpoints, latest_step
from lt_jax.errors import ConfigError
from lt_jax.train import preemption, writers
from lt_jax.train.feed import Feed

StepFn = Callable[[Any, Any], tuple[Any, dict[str, jax.Array]]]
# Reported as the window's last value (also under a prefix: member/lr); the rest are averaged.
LAST_VALUE_METRICS = ("lr",)


def is_last_value(name: str) -> bool:
  return name.rsplit("/", 1)[-1] in LAST_VALUE_METRICS


# Steps per call on accelerators when train.steps_per_call is 0 (auto): enough to hide the
# host's dispatch of a step behind the device's work on the previous ones.
AUTO_STEPS_PER_CALL = 32


# --- many steps per dispatch ----------------------------------------------------------------


class MultiStep:
  """`(state, sums, data, num_steps) -> (state, sums)`: `num_steps` steps in one dispatch.

  `sums` holds, per metric, the running sum over the window's steps (the last value for
  LAST_VALUE_METRICS), `steps` (how many ran) and `nonfinite_step` (the position in the
  window of the first step whose metrics were not finite, -1 if none). A window starts from
  `zeros(state, data)` and threads through its calls, so the sums are added in the same order
  whatever the chunk sizes. The state is donated.

  With `loop`, the steps run in a `fori_loop` whose trip count `num_steps` is traced: one
  compiled program serves every chunk size, so results do not depend on the chunking. Without
  it, each call is one plain step (`num_steps` must be 1): XLA compiles a loop body apart from
  the entry computation, and on XLA:CPU convolutions inside a loop body run 5-40x slower.
  """

  def __init__(self, step: StepFn, state_sharding, loop: bool = True):
    self.step, self.loop = step, loop
    # The sums go in and out replicated on the state's mesh: inputs that differ in placement
    # from the previous call's outputs would compile the step a second time.
    self._sharding = _replicated_like(state_sharding)
    self._run = jax.jit(self._multi, donate_argnums=0,
                        out_shardings=(state_sharding, self._sharding))
    self._zeros = None
    self.called = False  # The first call compiles the step.

  def zeros(self, state, data) -> dict:
    if self._zeros is None:  # Tracing the step once tells the metrics' names.
      _, shapes = jax.eval_shape(self.step, state, data)
      zeros = ({k: np.zeros(v.shape, np.float32) for k, v in shapes.items()}
               | {"steps": np.zeros((), np.int32), "nonfinite_step": np.full((), -1, np.int32)})
      self._zeros = jax.device_put(zeros, self._sharding)
    return self._zeros

  def __call__(self, state, sums, data, num_steps: int):
    if not self.loop and num_steps != 1:
      raise ValueError(f"this MultiStep runs one step per call, not {num_steps}.")
    self.called = True
    return self._run(state, sums, data, np.int32(num_steps))

  def _one(self, state, sums, data):
    state, metrics = self.step(state, data)
    metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in metrics.values()]))
    new = {k: v if is_last_value(k) else sums[k] + v for k, v in metrics.items()}
    new["steps"] = sums["steps"] + 1
    new["nonfinite_step"] = jnp.where((sums["nonfinite_step"] < 0) & ~finite, sums["steps"],
                                      sums["nonfinite_step"])
    return state, new

  def _multi(self, state, sums, data, num_steps):
    if not self.loop:
      return self._one(state, sums, data)
    return jax.lax.fori_loop(0, num_steps, lambda _, c: self._one(*c, data), (state, sums))


def _replicated_like(state_sharding):
  """Replicated on the mesh of `state_sharding` (one sharding, or a tree of them whose
  leaves may split some arrays, as a grid's state over groups of devices)."""
  first = jax.tree.leaves(state_sharding)[0]
  if isinstance(first, jax.sharding.NamedSharding):
    return parallel.replicated(first.mesh)
  return first


def steps_per_call(requested: int) -> int:
  """Config field train.steps_per_call: 0 (auto) is 1 on CPU backends (a loop would slow the
  convolutions down, see MultiStep) and AUTO_STEPS_PER_CALL on accelerators."""
  if requested:
    return requested
  return 1 if jax.default_backend() == "cpu" else AUTO_STEPS_PER_CALL


def make_multi_step(step: StepFn, state_sharding, steps: int) -> MultiStep:
  """The driver's step for `steps` (>= 1) steps per call; 1 runs without a loop."""
  return MultiStep(step, state_sharding, loop=steps > 1)


def combine(windows: list[dict]) -> dict:
  """Host-side: consecutive windows' sums (already read and checked) into one."""
  out = dict(windows[0])
  for w in windows[1:]:
    for k, v in w.items():
      if k == "nonfinite_step":
        continue  # Every window was checked as it was read.
      if is_last_value(k):
        out[k] = v
      else:
        out[k] = out[k] + v
  return out


def means(sums: dict) -> dict[str, float | list[float]]:
  """A window's mean per metric (the last value for LAST_VALUE_METRICS), the loss first;
  vector metrics as lists."""
  n = max(int(sums["steps"]), 1)
  names = sorted((k for k in sums if k not in ("steps", "nonfinite_step")),
                 key=lambda k: (k != "loss", k))
  out = {}
  for k in names:
    value = np.asarray(sums[k], np.float64)
    value = value if is_last_value(k) else value / n
    out[k] = float(value) if value.ndim == 0 else value.tolist()
  return out


def scalars_only(values: dict) -> dict[str, float]:
  """The scalar entries of a metrics dict (what progress lines and TensorBoard show)."""
  return {k: v for k, v in values.items() if not isinstance(v, list)}


# --- the loop -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
  """How long a stage trains and how often it logs, evaluates and checkpoints."""
  num_epochs: int
  steps_per_epoch: int
  batch_size: int  # Images per step (the global batch), for images/s.
  steps_per_call: int = 1  # Resolved (>= 1): see steps_per_call().
  log_every_steps: int = 50
  eval_every_epochs: int = 1
  checkpoint_every_epochs: int = 10
  prefix: str = "train"  # Scalars are written as <prefix>/<name> and <prefix>_step/<name>.
  label: str = ""  # Starts every progress line (e.g. which of several programs this is).


@dataclasses.dataclass(frozen=True)
class EpochEval:
  """What an evaluation hook returns after an epoch."""
  record: dict[str, float]  # Scalars for the history and TensorBoard.
  line: str  # Printed after the epoch's train scalars.
  score: float | None = None  # Higher is better; None: no model selection.
  keep: Any = None  # Stored as meta["best"] when `score` is the best so far.
  # The state training goes on with, when the hook changed it (a stacked state keeps each
  # model's best copy inside itself, so it is checkpointed and resumed with the rest).
  state: Any = None


@dataclasses.dataclass(frozen=True)
class Trained:
  state: Any
  meta: dict  # history, best, best_score, best_epoch, wall_time_s, train_images_per_s, ...
  final: EpochEval | None  # The last epoch's evaluation (None without a hook).


def new_meta() -> dict:
  return {"history": [], "best": None, "best_score": None, "best_epoch": None,
          "wall_time_s": 0.0, "train_seconds": 0.0, "train_images": 0, "eval_seconds": 0.0,
          "evals": 0}


def train(workdir: str, state: Any, step: StepFn, data: Any, plan: Plan, *, state_sharding,
          evaluate: Callable[[Any, int], EpochEval] | None = None,
          initialize: Callable[[Any], Any] | None = None, keep_best: bool = False,
          log: Callable[[str], None] = print) -> Trained:
  """Trains `state` with the pure `step` for `plan.num_epochs` epochs (resuming from
  workdir's checkpoints); the state keeps `state_sharding`. `data` is what `step` takes
  besides the state: device-resident arrays, or a `Feed` whose next batch each step gets.

  `evaluate(state, epoch)` runs after every `plan.eval_every_epochs` epochs and the last one.
  With `keep_best`, the state of the best score so far is kept on the device and written to
  checkpoints/best whenever checkpoints/last is written: a resumed run replays the epochs
  after its last checkpoint, so it finds the same best again.
  """
  start_time = time.time()
  feed = data if isinstance(data, Feed) else None
  if feed is not None:
    # One plain step per call: a host-fed step (an ImageNet-size batch through a ResNet) is
    # long enough that dispatching each one costs nothing, and a loop could not take a new
    # batch per step anyway.
    plan = dataclasses.replace(plan, steps_per_call=1)
  multi_step = make_multi_step(step, state_sharding, plan.steps_per_call)
  # Before any checkpoint manager starts its background threads: a refusal then exits clean.
  check_free_space(workdir, state, keep_best=keep_best, resumed=latest_step(
      workdir_lib.checkpoint_dir(workdir, "last")) is not None)
  last_ckpt = Checkpoints(workdir_lib.checkpoint_dir(workdir, "last"))
  best_ckpt = Checkpoints(workdir_lib.checkpoint_dir(workdir, "best")) if keep_best else None
  meta = new_meta()
  if last_ckpt.latest_step() is not None:
    state, saved = last_ckpt.restore(state)
    meta |= saved  # Keys a run written by an older version lacks keep their start values.
    if best_ckpt is not None:
      best_ckpt.delete_after(int(state.step))
    log(f"resumed from {last_ckpt.directory} at step {int(state.step)}")
  else:
    recorded = writers.last_recorded_step(workdir)
    if recorded:  # Its checkpoints were deleted, or never written: say so, then start over.
      print(f"warning: {workdir} records training up to step {recorded} (metrics.jsonl) but "
            f"holds no checkpoint in {last_ckpt.directory}: training starts again from step "
            "0 and those records are replaced.", flush=True)
    if initialize is not None:
      state = initialize(state)
  spe, epochs = plan.steps_per_epoch, plan.num_epochs
  start_step = int(state.step)
  if feed is not None and last_ckpt.latest_step() is not None:
    feed.check(meta.get("feed"), start_step, last_ckpt.directory)
  writer = writers.MetricWriter(workdir, resume_step=start_step)
  progress = writers.Progress(spe * epochs, plan.batch_size, start_step, label=plan.label)
  final, best = None, None  # best: (state copy, step, epoch, score) not yet written.
  compiled_eval = False
  try:
    if feed is not None:
      feed.start(start_step)
    for epoch in range(start_step // spe, epochs):
      epoch_start = time.perf_counter()
      first = max(epoch * spe, start_step)  # A run stopped mid-epoch resumes mid-epoch.
      partial = meta.pop("partial_epoch", None)  # Saved by a run stopped mid-epoch.
      carried = _windows_from_json(partial) if first % spe else []
      progress.restart_window(first)
      state, sums, stopped = _train_epoch(state, multi_step, data, epoch, plan, writer,
                                          progress, last_ckpt, first, carried, log)
      if stopped is not None:
        _record_feed(meta, feed)
        _save_and_stop(stopped, state, sums, meta, last_ckpt, best_ckpt, best, start_time)
      scalars = means(sums)
      step = (epoch + 1) * spe
      if epoch > 0 or epochs == 1:  # Epoch 0 includes compilation.
        meta["train_seconds"] += time.perf_counter() - epoch_start
        meta["train_images"] += (step - first) * plan.batch_size
      record = {"epoch": epoch + 1, **{f"{plan.prefix}/{k}": v for k, v in scalars.items()}}
      line = f"epoch {epoch + 1}/{epochs}: {plan.prefix} " + ", ".join(
          f"{k} {v:.4g}" for k, v in scalars_only(scalars).items() if not is_last_value(k))
      is_last = epoch + 1 == epochs
      if evaluate is not None and ((epoch + 1) % plan.eval_every_epochs == 0 or is_last):
        if not compiled_eval:
          log(f"{_label(plan)}epoch {epoch + 1}/{epochs} trained; compiling the evaluation "
              "(first call) ...")
        eval_start = time.perf_counter()
        ev = evaluate(state, epoch)
        if ev.state is not None:
          state = ev.state
        if compiled_eval:  # This process's first evaluation includes compilation.
          meta["eval_seconds"] += time.perf_counter() - eval_start
          meta["evals"] += 1
        compiled_eval = True
        record |= ev.record
        line += "; " + ev.line
        best_so_far = -math.inf if meta["best_score"] is None else meta["best_score"]
        if ev.score is not None and ev.score > best_so_far:
          meta["best_score"], meta["best_epoch"], meta["best"] = ev.score, epoch + 1, ev.keep
          if best_ckpt is not None:
            best = (_copy(state), step, epoch + 1, ev.score)
        if ev.score is not None:
          record["best/score"] = meta["best_score"]
          line += f"; best {meta['best_score']:.2f} at epoch {meta['best_epoch']}"
        if is_last:
          final = ev
      log(line)
      writer.write(step, record)
      meta["history"].append(record)
      if (epoch + 1) % plan.checkpoint_every_epochs == 0 or is_last:
        if best is not None:
          best_state, best_step, best_epoch, score = best
          best_ckpt.save(best_step, best_state, {"epoch": best_epoch, "score": score})
          best = None
        meta["wall_time_s"] += time.time() - start_time
        start_time = time.time()
        _record_feed(meta, feed)
        last_ckpt.save(step, state, meta)
      # Epoch ends are polled too: with log windows as long as epochs, no window ends inside one.
      if not is_last and (stopped := preemption.agreed()) is not None:
        _record_feed(meta, feed)
        _save_and_stop(stopped, state, None, meta, last_ckpt, best_ckpt, best, start_time)
    last_ckpt.wait()
    if best_ckpt is not None:
      best_ckpt.wait()
  finally:
    if feed is not None:
      feed.close()
    writer.close()
    last_ckpt.close()
    if best_ckpt is not None:
      best_ckpt.close()
  if final is None and evaluate is not None:  # Resumed after the last epoch was saved.
    final = evaluate(state, epochs - 1)
    state = state if final.state is None else final.state
  meta["wall_time_s"] += time.time() - start_time
  return Trained(state, meta, final)


def check_free_space(workdir: str, state: Any, resumed: bool, keep_best: bool) -> None:
  """Refuses to start training on a disk without room for the checkpoints this run will
  write: a full disk was otherwise found at the first save, an epoch later. A fresh run keeps
  two copies of its state in checkpoints/last (one while resuming adds the next), plus one in
  checkpoints/best with model selection."""
  size = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(state)
             if hasattr(x, "dtype"))
  copies = (1 if resumed else 2) + (1 if keep_best else 0)
  existing = os.path.abspath(workdir)  # The folder may not be made yet (a grid's program).
  while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
    existing = os.path.dirname(existing)
  free = shutil.disk_usage(existing).free
  if free < copies * size:
    raise ConfigError(
        f"the disk holding {workdir} has {_size(free)} free, but this run's checkpoints need "
        f"about {_size(copies * size)} ({copies} copies of a {_size(size)} train state); free "
        "some space or choose a --workdir on another disk, then run the same command.")


def _size(n: float) -> str:
  for unit in ("bytes", "KiB", "MiB"):
    if n < 1024:
      return f"{n:,.0f} bytes" if unit == "bytes" else f"{n:,.1f} {unit}"
    n /= 1024
  return f"{n:,.1f} GiB"


def _record_feed(meta: dict, feed: Feed | None) -> None:
  """Puts the feed's stream and position into the meta about to be checkpointed."""
  if feed is not None:
    meta["feed"] = feed.state()


# One dispatch copies a whole state (op by op, a ResNet-32 state takes ~100 of them).
_copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


def seconds_per_evaluation(meta: dict) -> float | None:
  """Mean wall time of one evaluation hook call, the first (compiling) one excluded."""
  return meta["eval_seconds"] / meta["evals"] if meta.get("evals") else None


def images_per_second(meta: dict) -> float | None:
  """Training images per second over the epochs after the first (compilation excluded)."""
  return meta["train_images"] / meta["train_seconds"] if meta["train_seconds"] > 0 else None


def _train_epoch(state, multi_step, data, epoch: int, plan: Plan, writer, progress, last_ckpt,
                 first: int, carried: list[dict], log: Callable[[str], None] = print
                 ) -> tuple[Any, dict, str | None]:
  """Steps `first` .. the epoch's end in chunks of at most `steps_per_call` steps, cut at log
  boundaries. Returns the state, the epoch's metric sums (`carried`: the windows before
  `first`, from a run stopped mid-epoch) and the signal it stopped on (None: the epoch ended).
  The host reads the device only once per window; a stop request is honoured at a window's
  end, never at the epoch's (its evaluation comes first)."""
  spe, log_every = plan.steps_per_epoch, plan.log_every_steps
  step, end = first, (epoch + 1) * spe
  zeros = multi_step.zeros(state, data.spec if isinstance(data, Feed) else data)
  sums, pending, epoch_windows, stopped = zeros, None, list(carried), None

  def report(at: int, window_sums) -> None:
    window = jax.device_get(window_sums)
    _check_finite(window, at, epoch, last_ckpt)
    epoch_windows.append(window)
    if at % log_every == 0:
      scalars = scalars_only(means(window))
      rate = progress.report(epoch, plan.num_epochs, at, scalars)
      writer.write(at, {f"{plan.prefix}_step/{k}": v for k, v in scalars.items()}
                   | {f"{plan.prefix}_step/images_per_s": rate})

  with jax.transfer_guard_device_to_host("disallow"):
    while step < end:
      n = min(plan.steps_per_call, end - step, log_every - step % log_every)
      inputs = next(data) if isinstance(data, Feed) else data
      if not multi_step.called:
        state, sums = _first_call(multi_step, state, sums, inputs, n, plan, log)
      else:
        state, sums = multi_step(state, sums, inputs, n)
      step += n
      if pending is not None:  # The next chunk is queued: now wait for the last window.
        report(*pending)
        pending = None
      if step % log_every == 0 or step == end:
        pending, sums = (step, sums), zeros
        if step < end and (stopped := preemption.agreed()) is not None:
          break
  report(*pending)
  return state, combine(epoch_windows), stopped


def _label(plan: Plan) -> str:
  return f"{plan.label} | " if plan.label else ""


def _first_call(multi_step: MultiStep, state, sums, inputs, n: int, plan: Plan,
                log: Callable[[str], None]):
  """The first call, which compiles the step (or loads it from the compilation cache): said
  before, and timed after, so a long compilation never looks like a hang."""
  cached = ("; the next run of this config loads it from the compilation cache"
            if jax.config.jax_compilation_cache_dir else "")
  log(f"{_label(plan)}compiling the {plan.prefix} step (first call{cached}) ...")
  start = time.perf_counter()
  state, sums = multi_step(state, sums, inputs, n)
  jax.block_until_ready(state)
  log(f"{_label(plan)}first {plan.prefix} step done in {time.perf_counter() - start:.1f} s; "
      f"{plan.steps_per_epoch} steps per epoch")
  return state, sums


def _save_and_stop(signal_name: str, state, sums: dict | None, meta: dict,
                   last_ckpt: Checkpoints, best_ckpt: Checkpoints | None, best,
                   start_time: float) -> None:
  """Saves the state, a best model not yet written and, mid-epoch, the epoch's metric sums so
  far (the resumed run's epoch means then equal an uninterrupted run's); raises Stopped."""
  step = int(jax.device_get(state.step))
  if best is not None:
    best_state, best_step, best_epoch, score = best
    best_ckpt.save(best_step, best_state, {"epoch": best_epoch, "score": score})
  if sums is not None:
    meta["partial_epoch"] = {k: np.asarray(v).tolist() for k, v in sums.items()
                             if k != "nonfinite_step"}
  meta["wall_time_s"] += time.time() - start_time
  last_ckpt.save(step, state, meta)
  last_ckpt.wait()
  if best_ckpt is not None:
    best_ckpt.wait()
  preemption.clear()
  raise preemption.Stopped(signal_name, step, last_ckpt.directory)


def _windows_from_json(saved: dict | None) -> list[dict]:
  """The metric sums a stopped run saved, with the dtypes the device gives them."""
  if saved is None:
    return []
  return [{k: np.asarray(v, np.int32 if k == "steps" else np.float32) for k, v in saved.items()}]


def _check_finite(sums: dict, end_step: int, epoch: int, last_ckpt: Checkpoints) -> None:
  """Raises when a step of the window ending at `end_step` had non-finite metrics."""
  if int(sums["nonfinite_step"]) < 0:
    return
  bad = end_step - int(sums["steps"]) + int(sums["nonfinite_step"])
  latest = last_ckpt.latest_step()
  where = (f"the last good checkpoint is step {latest} in {last_ckpt.directory}"
           if latest is not None else "no checkpoint was written yet")
  raise FloatingPointError(
      f"training diverged: a non-finite loss or gradient at step {bad} (epoch {epoch + 1}); "
      f"{where}. Lower the learning rate, check the inputs, or change the seed.")

