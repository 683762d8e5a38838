"""Orbax checkpoints of the whole train state plus a small JSON of loop bookkeeping.

Two managers per run: `checkpoints/last` (the latest, for resuming) and `checkpoints/best`
(the selected model). The train state holds the step and the run's key, and the sampler and
augmentation are pure functions of them, so restoring the state restores the data order too.
Orbax writes each checkpoint into a temporary folder and renames it when complete, so a crash
never leaves a checkpoint that looks whole; the temporary folder a crash leaves behind is
removed when the folder is next opened for training. The newest two steps are kept: when the
newest cannot be read (a damaged disk, a partial copy), a resume falls back to the one before.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from lt_jax import parallel
from lt_jax.errors import DataError

UNREADABLE_SUFFIX = ".unreadable"  # A step folder that failed to restore is renamed so.


class Checkpoints:
  """One folder of checkpoints keeping the newest `keep`. `cleanup` removes the temporary
  folders of saves that a crash cut off (only for a folder this process trains into)."""

  def __init__(self, directory: str, keep: int = 2, cleanup: bool = True):
    self.directory = os.path.abspath(directory)
    # In a multi-process run the processes meet at barriers named after the step; `last` and
    # `best` save the same step at once, so each folder's barriers carry a name of their own.
    folder = hashlib.sha1(self.directory.encode()).hexdigest()[:12]
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, cleanup_tmp_directories=cleanup,
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            barrier_sync_key_prefix=f"{os.path.basename(self.directory)}-{folder}"))
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
    if jax.process_count() > 1:
      # Several processes: each save completes before training goes on, so no write's
      # barriers run beside the training step's collectives.
      self._manager.wait_until_finished()

  def restore(self, target: Any = None, step: int | None = None,
              fallback: bool = True) -> tuple[Any, dict]:
    """Restores into the shapes, dtypes and shardings of `target` (a state or its eval_shape);
    with no target, as saved (nested dicts of arrays). Without `step`, the newest step; with
    `fallback`, when it cannot be read but an older one can, the older one, after renaming the
    unreadable ones to `<step>.unreadable-<time>` with a printed warning. Else DataError."""
    if step is not None:
      return self._restore(step, target)
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    failed = []
    for step in steps if fallback else steps[:1]:
      try:
        restored = self._restore(step, target)
      except Exception as e:  # Orbax and TensorStore raise many kinds for damaged files.
        failed.append((os.path.join(self.directory, str(step)), e))
        continue
      for path, e in failed:
        aside = f"{path}{UNREADABLE_SUFFIX}-{int(time.time())}"
        if parallel.is_main_process():  # Every process found it unreadable; one moves it.
          os.replace(path, aside)
        print(f"warning: the checkpoint {path} cannot be read ({_first_line(e)}); moved it to "
              f"{aside} and resuming from step {step} instead.", flush=True)
      if failed:
        parallel.barrier(f"moved aside unreadable checkpoints of {self.directory}")
        self._manager.reload()
      return restored
    path, e = failed[0]
    raise DataError(f"the checkpoint {path} cannot be read ({_first_line(e)})"
                    + (", nor can an older step" if len(failed) > 1 else "")
                    + "; restore the folder from a copy, or delete "
                    f"{self.directory} to start this stage again from scratch.") from e

  def _restore(self, step: int, target: Any) -> tuple[Any, dict]:
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


def _first_line(e: Exception) -> str:
  """The exception's type and first line, without the reprs of bound methods that TensorStore
  errors carry (`<bound method pybind11_... of <...>>`), which say nothing to a user."""
  text = str(e).splitlines()[0] if str(e) else ""
  return f"{type(e).__name__}: {_without_bound_methods(text)[:200]}"


def _without_bound_methods(text: str) -> str:
  out, i = [], 0
  while (start := text.find("<bound method", i)) >= 0:
    out.append(text[i:start])
    depth, j = 0, start
    while j < len(text):  # To the '>' that closes this repr, nested '<...>' included.
      depth += {"<": 1, ">": -1}.get(text[j], 0)
      j += 1
      if depth == 0:
        break
    i = j
  out.append(text[i:])
  return " ".join("".join(out).split())


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
  readers that build no train state of their own (transfer, pseudo-labeling). It must be
  readable: an older step would be a different model than the one the run reported. The
  arrays come back replicated on this process's devices, whatever devices wrote them (a run
  on eight accelerators, or a grid's models split over groups of them, read on one)."""
  here = parallel.replicated(parallel.make_mesh())
  target = _map_saved(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=here), directory)
  checkpoints = Checkpoints(directory, cleanup=False)
  try:
    return checkpoints.restore(target, fallback=False)
  finally:
    checkpoints.close()


def saved_shapes(directory: str) -> dict:
  """The newest step's state in `directory` as nested dicts of shape tuples, read from its
  metadata alone (no arrays), to compare a checkpoint with a model before any work."""
  return _map_saved(lambda leaf: tuple(leaf.shape), directory)


def _map_saved(fn, directory: str) -> dict:
  """`fn` of each array's metadata (shape, dtype) in the newest step's state, as nested
  dicts."""
  step = latest_step(directory)
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {directory}")
  path = os.path.join(directory, str(step), "state")
  try:
    tree = ocp.StandardCheckpointHandler().metadata(epath.Path(path))
  except Exception as e:  # Orbax raises several kinds for a missing or damaged _METADATA.
    raise DataError(f"the checkpoint {path} cannot be read ({_first_line(e)}); point the "
                    "field at a workdir holding a finished run.") from e
  return jax.tree.map(fn, dict(tree), is_leaf=lambda x: hasattr(x, "shape"))
