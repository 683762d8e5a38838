"""One data-parallel layout from a laptop to a pod: a 1-D mesh named 'data' over every device.

Batches are split along their first axis over 'data'; parameters, optimiser state and the
device-resident datasets are replicated. Arrays are built with `make_array_from_callback`, which
works for one host and for many (each host fills only the shards it owns).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lt_jax.errors import ConfigError

DATA_AXIS = "data"


def initialize_distributed() -> None:
  """Joins a multi-host job when the environment describes one (no-op on a single host).

  Cloud TPU pods and SLURM set the variables `jax.distributed.initialize()` reads; elsewhere
  set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID.
  """
  if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("SLURM_JOB_ID") or \
      os.environ.get("TPU_WORKER_HOSTNAMES"):
    jax.distributed.initialize()


def make_mesh(devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_divides(batch_size: int, mesh: Mesh, field: str) -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise ConfigError(f"{field}={batch_size} does not divide over the {n} devices; use a "
                      f"multiple of {n}.")


def put(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """Places a host array (identical on every host) with `sharding`."""
  array = np.asarray(array)
  return jax.make_array_from_callback(array.shape, sharding, lambda idx: array[idx])
