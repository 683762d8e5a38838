"""Orbax checkpoints of the whole train state plus a small JSON of loop bookkeeping.

Two managers per run: `checkpoints/last` (the latest, for resuming) and `checkpoints/best`
(the selected model). The train state holds the step and the run's key, and the sampler and
augmentation are pure functions of them, so restoring the state restores the data order too.
Orbax writes each checkpoint into a temporary folder and renames it when complete, so a crash
never leaves a checkpoint that looks whole.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpoints:
  """One folder of checkpoints keeping the newest `keep`."""

  def __init__(self, directory: str, keep: int = 1):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Saves `state` at `step`, replacing a checkpoint of the same step (a resumed run that
    replays an epoch saves its step again)."""
    if step in self._manager.all_steps():
      self._manager.wait_until_finished()
      self._manager.delete(step)
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, target: Any = None, step: int | None = None) -> tuple[Any, dict]:
    """Restores into the shapes, dtypes and shardings of `target` (a state or its eval_shape);
    with no target, as saved (nested dicts of arrays)."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    abstract = None if target is None else jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        target)
    out = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return out["state"], dict(out["meta"])

  def delete_after(self, step: int) -> None:
    """Forgets checkpoints newer than `step`: after a resume from `step` they describe a future
    that the resumed run will replay (and would otherwise outrank its new checkpoints)."""
    for newer in [s for s in self._manager.all_steps() if s > step]:
      self._manager.delete(newer)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def latest_step(directory: str) -> int | None:
  """The newest finished step in a checkpoint folder, read without creating the folder (a
  CheckpointManager would). Orbax names finished steps by their number and unfinished ones
  with a temporary suffix, so only all-digit names count."""
  if not os.path.isdir(directory):
    return None
  steps = [int(n) for n in os.listdir(directory)
           if n.isdigit() and os.path.isdir(os.path.join(directory, n))]
  return max(steps) if steps else None


def restore_saved(directory: str) -> tuple[Any, dict]:
  """The newest checkpoint in `directory` as saved (nested dicts of arrays) and its meta, for
  readers that build no train state of their own (transfer, pseudo-labeling)."""
  checkpoints = Checkpoints(directory)
  try:
    return checkpoints.restore()
  finally:
    checkpoints.close()

