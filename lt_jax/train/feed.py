"""Training batches fed from the host, for data too large for the device (ImageNet-LT,
iNaturalist): what the driver steps on instead of a device-resident training set.

A `HostFeed` wraps a host pipeline (data/image_pipeline.py: each host yields its own rows of
every global batch) and
- puts each host's rows on that host's devices only, as one global batch sharded over the
  mesh's data axis (`jax.make_array_from_process_local_data`);
- keeps `prefetch` batches ahead on a background thread, so decoding and the transfer overlap
  the device's work on the step before;
- starts at any step (`start(step)`): the pipeline's batches are pure functions of (seed,
  position in the stream), so a run stopped mid-epoch continues with the very batches an
  uninterrupted run would have seen;
- describes its stream and position (`state()`) for the checkpoint's meta, and refuses to
  resume a checkpoint that was trained on another stream (`check`).
"""

from __future__ import annotations

import abc
import json
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import numpy as np

from lt_jax.errors import DataError


class Feed(abc.ABC):
  """What the driver needs from a source of training batches that live on the host."""

  spec: dict[str, jax.ShapeDtypeStruct]  # One global batch's shapes (to trace the step).

  @abc.abstractmethod
  def start(self, step: int) -> None:
    """Positions the feed so that the next batch is the one of `step`."""

  @abc.abstractmethod
  def __next__(self) -> dict[str, jax.Array]:
    """The next global batch as sharded device arrays."""

  @abc.abstractmethod
  def state(self) -> dict:
    """JSON-able description of the stream and the position, for the checkpoint's meta."""

  @abc.abstractmethod
  def check(self, saved: dict | None, step: int, where: str) -> None:
    """Raises unless `saved` (a checkpoint's `state()`) continues this stream at `step`."""

  @abc.abstractmethod
  def close(self) -> None:
    """Stops background work (the driver calls it when training ends or fails)."""


class StreamEnded(DataError):
  """The pipeline ran out of batches."""


class _Failed:
  def __init__(self, error: BaseException):
    self.error = error


_END = object()


class HostFeed(Feed):
  """Global batches from `batches_from(step)`, an iterable of this host's rows of each batch
  from `step` on ({name: numpy array [B / processes, ...]}), placed with `sharding`.

  `stream` identifies the batches (lists, seed, order, sizes): it is saved with each
  checkpoint and compared on resume. `spec` gives one global batch's shapes and dtypes."""

  def __init__(self, batches_from: Callable[[int], Iterable[dict]], sharding, *,
               spec: dict[str, jax.ShapeDtypeStruct], stream: dict, prefetch: int = 2):
    self.batches_from, self._sharding = batches_from, sharding
    self.spec, self.stream, self._prefetch = spec, stream, prefetch
    self.position = 0  # The step of the next batch handed out.
    self._queue: queue.Queue | None = None
    self._stop: threading.Event | None = None
    self._thread: threading.Thread | None = None

  def start(self, step: int) -> None:
    self.close()
    self.position = step
    self._queue, self._stop = queue.Queue(maxsize=self._prefetch), threading.Event()
    self._thread = threading.Thread(target=self._produce, args=(step, self._queue, self._stop),
                                    name="lt_jax-host-feed", daemon=True)
    self._thread.start()

  def _produce(self, step: int, out: queue.Queue, stop: threading.Event) -> None:
    iterator = None
    try:
      iterator = iter(self.batches_from(step))
      for rows in iterator:
        batch = {k: jax.make_array_from_process_local_data(self._sharding, np.asarray(v))
                 for k, v in rows.items()}
        if not _put(out, batch, stop):
          return
      _put(out, _END, stop)
    except BaseException as e:  # Handed to the training loop, which raises it.
      _put(out, _Failed(e), stop)
    finally:
      close = getattr(iterator, "close", None)
      if close is not None:
        close()

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, jax.Array]:
    if self._queue is None:
      raise RuntimeError("HostFeed.start(step) must be called before the first batch.")
    item = self._queue.get()
    if isinstance(item, _Failed):
      raise item.error
    if item is _END:
      raise StreamEnded(f"the input pipeline ended at step {self.position}, before the "
                      "training plan did; its batches per epoch or epochs differ from the "
                      "plan's.")
    self.position += 1
    return item

  def state(self) -> dict:
    return {"position": int(self.position), "stream": self.stream}

  def check(self, saved: dict | None, step: int, where: str) -> None:
    if saved is None:
      raise DataError(f"the checkpoint in {where} holds no input-stream state, so the batches "
                      f"after step {step} cannot be matched; resume it with the data it was "
                      "trained on, or start in a new workdir.")
    theirs = saved.get("stream")
    if theirs != _json_like(self.stream):
      differ = sorted(k for k in set(theirs or {}) | set(self.stream)
                      if (theirs or {}).get(k) != _json_like(self.stream).get(k))
      raise DataError(f"the checkpoint in {where} was trained on another input stream "
                      f"({', '.join(differ)} differ: the split lists changed, or the seed, "
                      "order or batch); restore the lists it was trained on, or start in a "
                      "new workdir.")
    if int(saved.get("position", -1)) != step:
      raise DataError(f"the checkpoint in {where} is at step {step} but its input stream at "
                      f"step {saved.get('position')}; the checkpoint is damaged: start in a new "
                      "workdir.")

  def close(self) -> None:
    if self._thread is None:
      return
    self._stop.set()
    while self._thread.is_alive():  # Unblock a producer waiting on a full queue.
      try:
        self._queue.get(timeout=0.05)
      except queue.Empty:
        pass
    self._thread.join()
    self._thread = self._queue = self._stop = None


def stacked(groups: Sequence[Sequence[HostFeed]], sharding) -> HostFeed:
  """Many models' feeds as one: group g's batches stacked on a leading model axis under the
  keys 'g/<name>' ([n_g, B, ...], placed with `sharding`, which splits the rows over the
  mesh's 'data' axis). A grid trains each model on its own stream; models whose streams are
  equal (same seed and order: two losses, a padding copy) read theirs once."""
  unique: dict[str, HostFeed] = {}
  layout = []  # Per group, each model's stream key.
  for feeds in groups:
    keys = [json.dumps(_json_like(f.stream), sort_keys=True) for f in feeds]
    for key, f in zip(keys, feeds):
      unique.setdefault(key, f)
    layout.append(keys)

  def batches_from(step: int):
    streams = {key: iter(f.batches_from(step)) for key, f in unique.items()}
    try:
      while True:
        rows = {}
        for key, stream in streams.items():
          row = next(stream, None)
          if row is None:
            return  # One stream ended: the feed ends (the driver names a short stream).
          rows[key] = row
        yield {f"{g}/{name}": np.stack([rows[key][name] for key in keys])
               for g, keys in enumerate(layout) for name in rows[keys[0]]}
    finally:
      for stream in streams.values():
        close = getattr(stream, "close", None)
        if close is not None:
          close()

  spec = {f"{g}/{name}": jax.ShapeDtypeStruct((len(feeds), *s.shape), s.dtype,
                                               sharding=sharding)
          for g, feeds in enumerate(groups) for name, s in feeds[0].spec.items()}
  return HostFeed(batches_from, sharding, spec=spec,
                  stream={"models": [[f.stream for f in feeds] for feeds in groups]})


def _put(out: queue.Queue, item: Any, stop: threading.Event) -> bool:
  """Puts `item` unless the feed is being closed (then False)."""
  while not stop.is_set():
    try:
      out.put(item, timeout=0.1)
      return True
    except queue.Full:
      continue
  return False


def _json_like(tree: dict) -> dict:
  """`tree` as it reads back from the checkpoint's JSON meta (tuples become lists)."""
  return json.loads(json.dumps(tree))


def device_batches(batches: Iterable[dict], sharding, prefetch: int = 2):
  """Yields each of this host's row batches as global sharded arrays, `prefetch` ahead on a
  background thread (host-fed evaluation: one pass over a split)."""
  feed = HostFeed(lambda _: batches, sharding, spec={}, stream={}, prefetch=prefetch)
  feed.start(0)
  try:
    while True:
      try:
        yield next(feed)
      except StreamEnded:  # The end of the split.
        return
  finally:
    feed.close()
