"""One data-parallel layout from a laptop to a pod: a 1-D mesh named 'data' over every device.

Batches are split along their first axis over 'data'; parameters, optimiser state and the
device-resident datasets are replicated. A grid of many small models may instead split its
models over groups of devices (`model_group_mesh`: a 2-D mesh ('models', 'data')), each group
training its share of the models with their batches split over the group's devices. Arrays are
built with `make_array_from_callback`, which works for one host and for many (each host fills
only the shards it owns).
"""

from __future__ import annotations

import json
import os
import sys
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lt_jax import config as config_lib
from lt_jax.errors import ConfigError

DATA_AXIS = "data"
MODELS_AXIS = "models"


JOIN_TIMEOUT_S = 300  # jax.distributed's own default wait for every process to join.


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           detect: bool = False, join_timeout_s: int = JOIN_TIMEOUT_S) -> None:
  """Joins a multi-process job when one is described (no-op for a single process).

  `detect`: the environment describes the job (a Cloud TPU pod slice, SLURM, Open MPI) and
  `jax.distributed.initialize()` reads it. Otherwise (GPU hosts started by hand, processes on
  one machine) pass all three arguments, or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES
  and JAX_PROCESS_ID. Must run before anything touches a device.

  A process that does not see the whole job within `join_timeout_s` exits with one line
  naming the processes it waited for; jax's own wait would end in a C++ abort instead.
  """
  env = os.environ
  coordinator_address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
  if num_processes is None and env.get("JAX_NUM_PROCESSES"):
    num_processes = _env_int("JAX_NUM_PROCESSES")
  if process_id is None and env.get("JAX_PROCESS_ID"):
    process_id = _env_int("JAX_PROCESS_ID")
  explicit = (coordinator_address, num_processes, process_id)
  if detect:
    jax.distributed.initialize(*explicit)
    return
  if all(v is None for v in explicit) or num_processes == 1:
    return
  if any(v is None for v in explicit):
    raise ConfigError(
        "a multi-process run needs --coordinator_address (host:port of process 0), "
        "--num_processes and --process_id (0 .. num_processes-1) together, or --distributed "
        "on a Cloud TPU pod slice or under SLURM; got "
        f"coordinator_address={coordinator_address}, num_processes={num_processes}, "
        f"process_id={process_id}.")
  if not 0 <= process_id < num_processes:
    raise ConfigError(f"--process_id={process_id} is not in 0 .. {num_processes - 1} "
                      f"(--num_processes={num_processes}).")
  # CPU processes exchange gradients through gloo (the CPU client has no collectives of its
  # own); accelerators use theirs, so this changes nothing for them.
  if jax.config.jax_cpu_collectives_implementation in (None, "none"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  joined = _exit_unless_joined(join_timeout_s, coordinator_address, num_processes, process_id)
  # jax's own deadline after ours, so that ours reports first.
  jax.distributed.initialize(coordinator_address, num_processes, process_id,
                             initialization_timeout=join_timeout_s + 60)
  joined.set()


def _exit_unless_joined(timeout_s: int, address: str, num_processes: int,
                        process_id: int) -> threading.Event:
  """An event to set once the job has joined; unset after `timeout_s`, this process prints one
  error line naming whom it waited for and exits 1."""
  joined = threading.Event()
  others = [i for i in range(num_processes) if i != process_id]
  if process_id == 0:
    waited = (f"process {others[0]}" if len(others) == 1 else
              f"one or more of processes {', '.join(map(str, others))}")
    what = f"{waited} did not join"
  else:
    what = ("process 0 (the coordinator) or another process of the job did not start, or "
            "this host cannot reach the coordinator")

  def expire():
    if not joined.wait(timeout_s):
      print(f"error: process {process_id} waited {timeout_s} s (--join_timeout) for the "
            f"{num_processes} processes of the job at {address}: {what}. Start every process "
            f"with the same --coordinator_address and --num_processes={num_processes} and its "
            "own --process_id, or raise --join_timeout.", file=sys.stderr, flush=True)
      os._exit(1)

  threading.Thread(target=expire, name="join-timeout", daemon=True).start()
  return joined


def check_same_config(config) -> None:
  """Every process of a job must run the same config: a process started with other flags
  would train a mix of two runs while config.json records one. Each process gathers every
  process's config, so all of them stop with the same line naming who differs, and in what."""
  if jax.process_count() == 1:
    return
  text = json.dumps(config.to_dict(), sort_keys=True, default=repr).encode()
  lengths = np.asarray(multihost_utils.process_allgather(np.asarray([len(text)], np.int32)))
  padded = np.zeros(int(lengths.max()), np.uint8)
  padded[:len(text)] = np.frombuffer(text, np.uint8)
  rows = np.asarray(multihost_utils.process_allgather(padded))
  configs = [json.loads(bytes(row[:int(n)])) for row, n in zip(rows, lengths[:, 0])]
  differ = []
  for i, other in enumerate(configs[1:], start=1):
    fields = config_lib.differences(configs[0], other)
    if fields:
      shown = ", ".join(f"{f} ({b!r} there, {a!r} on process 0)" for f, a, b in fields[:3])
      differ.append(f"process {i} in {shown}{' ...' if len(fields) > 3 else ''}")
  if differ:
    raise ConfigError(f"the processes of this job were started with different configs: "
                      f"{'; '.join(differ)}. Start every process with the same command and "
                      "flags (only --process_id differs).")


def _env_int(name: str) -> int:
  try:
    return int(os.environ[name])
  except ValueError:
    raise ConfigError(f"{name}={os.environ[name]!r} is not an integer.") from None


def is_main_process() -> bool:
  """Process 0 writes what one run writes once (logs, results, plots); every process writes
  its part of the checkpoints."""
  return jax.process_index() == 0


def make_mesh(devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def model_group_mesh(devices_per_model: int, devices=None) -> Mesh:
  """The devices as groups of `devices_per_model` consecutive ones (a host's devices stay
  together): axis 'models' across the groups, 'data' within one. 0: one group of every
  device, the plain data-parallel mesh."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  if devices_per_model == 0:
    return make_mesh(devices)
  if devices_per_model < 0 or devices.size % devices_per_model:
    raise ConfigError(
        f"grid.devices_per_model={devices_per_model} does not divide the {devices.size} "
        f"devices; use a divisor of {devices.size}, or 0 to train every model on all of them.")
  return Mesh(devices.reshape(devices.size // devices_per_model, devices_per_model),
              (MODELS_AXIS, DATA_AXIS))


def model_groups(mesh: Mesh) -> int:
  """How many groups of devices a mesh splits models over (1 without a 'models' axis)."""
  return dict(mesh.shape).get(MODELS_AXIS, 1)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def models_sharded(mesh: Mesh) -> NamedSharding:
  """Arrays of stacked models [M, ...] split along M over the 'models' axis (replicated on a
  mesh without one)."""
  return NamedSharding(mesh, PartitionSpec(MODELS_AXIS) if model_groups(mesh) > 1
                       else PartitionSpec())


def models_and_batch_sharded(mesh: Mesh) -> NamedSharding:
  """Batches of stacked models [M, B, ...]: M split as `models_sharded`, B over 'data'."""
  models = MODELS_AXIS if model_groups(mesh) > 1 else None
  return NamedSharding(mesh, PartitionSpec(models, DATA_AXIS))


def data_devices(mesh: Mesh) -> int:
  """How many devices one batch is split over: the mesh's 'data' axis."""
  return dict(mesh.shape)[DATA_AXIS]


def padded_batch_size(batch_size: int, mesh: Mesh) -> int:
  """The batch of a forward pass over a split: `batch_size` rounded up to a multiple of the
  devices it is split over. The extra rows are padding that a mask drops, so any requested
  size runs on any device count and counts every image once, as on one device."""
  n = data_devices(mesh)
  return -(-batch_size // n) * n


def check_batch_divides(batch_size: int, mesh: Mesh, field: str) -> None:
  """A training batch is split evenly over the devices (BatchNorm and the loss see every
  row), so it must divide; the message names the nearest sizes that do."""
  n = data_devices(mesh)
  if batch_size % n:
    where = (f"the {n} devices of a model's group" if model_groups(mesh) > 1
             else f"the {n} devices")
    below, above = batch_size // n * n, padded_batch_size(batch_size, mesh)
    nearest = f"the nearest are {below} and {above}" if below else f"the smallest is {above}"
    raise ConfigError(f"{field}={batch_size} does not divide over {where}; use a "
                      f"multiple of {n} ({nearest}).")


def put(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """Places a host array (identical on every host) with `sharding`."""
  array = np.asarray(array)
  return jax.make_array_from_callback(array.shape, sharding, lambda idx: array[idx])


def barrier(name: str) -> None:
  """Waits until every process reached the barrier `name`: after process 0 wrote a file that
  the others read next (no-op for one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
