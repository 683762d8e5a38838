"""Stopping cleanly when asked: a preempted TPU VM or a cluster scheduler sends SIGTERM, a user
presses Ctrl-C. After `install()`, either one asks the training driver to save a checkpoint at
its next log-window boundary and stop (`Stopped`); the same command then continues exactly
where it stopped. A second Ctrl-C stops at once (the last checkpoint is kept).

In a multi-process run a signal may reach one host only, or each at another moment: at every
window boundary the processes exchange what they received, so all stop after the same step.
"""

from __future__ import annotations

import signal
import sys

import jax
import numpy as np
from jax.experimental import multihost_utils

# The signals a stop may be asked with, in the order they win when processes received
# different ones (a SIGTERM means the machine goes away: it outranks a Ctrl-C).
SIGNALS = ("SIGINT", "SIGTERM")

_requested: str | None = None
_stopped_at_once = False


class Stopped(Exception):
  """Training stopped on request after saving a checkpoint at `step`."""

  def __init__(self, signal_name: str, step: int, checkpoint_dir: str):
    super().__init__(f"stopped by {signal_name} at step {step}; the checkpoint is in "
                     f"{checkpoint_dir}: run the same command to continue.")
    self.signal_name, self.step, self.checkpoint_dir = signal_name, step, checkpoint_dir


def install() -> None:
  """Routes SIGTERM and SIGINT to a stop request (run.py does; a notebook keeps Python's own
  Ctrl-C). Call from the main thread."""
  signal.signal(signal.SIGTERM, _on_signal)
  signal.signal(signal.SIGINT, _on_signal)


def request(signal_name: str = "SIGTERM") -> None:
  """Asks the running (or next) training loop to save and stop, as the signal would."""
  global _requested
  if signal_name not in SIGNALS:
    raise ValueError(f"signal_name must be one of {SIGNALS}, not {signal_name!r}.")
  if _requested is None or SIGNALS.index(signal_name) > SIGNALS.index(_requested):
    _requested = signal_name


def clear() -> None:
  """Forgets a stop request once it was honoured (a notebook trains on afterwards)."""
  global _requested
  _requested = None


def stopped_at_once() -> bool:
  """Whether a second Ctrl-C asked to stop at once. Its KeyboardInterrupt is raised wherever
  Python was, and may come out wrapped (a C extension that called back into Python turns it
  into SystemError): run.py asks this instead of trusting the exception's type."""
  return _stopped_at_once


def _on_signal(signum, frame) -> None:
  global _stopped_at_once
  name = signal.Signals(signum).name
  if name == "SIGINT" and _requested is not None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _stopped_at_once = True
    raise KeyboardInterrupt  # Asked twice: stop now.
  if _requested is None:
    again = "; press Ctrl-C again to stop at once" if name == "SIGINT" else ""
    print(f"\n{name}: saving a checkpoint at the next step boundary, then stopping{again}.",
          file=sys.stderr, flush=True)
  request(name)


def agreed() -> str | None:
  """The signal every process stops on now, or None. With several processes each passes its
  own request to all (a small collective), so they decide alike."""
  if jax.process_count() == 1:
    return _requested
  mine = 0 if _requested is None else SIGNALS.index(_requested) + 1
  with jax.transfer_guard("allow"):  # The driver's loop disallows reads; this one is meant.
    votes = multihost_utils.process_allgather(np.int32(mine))
  strongest = int(np.max(votes))
  return SIGNALS[strongest - 1] if strongest else None
