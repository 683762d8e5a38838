"""Shared fixtures: tiny, fast configs on the embedded digits data."""

import json
import os

# Tests are dominated by XLA compile time on the CPU; the lowest backend optimisation level
# compiles about 2.5x faster and the tiny models run about as fast. Set before JAX loads.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + TEST_XLA_FLAGS).strip()
# Many tests train the same tiny models: a compilation cache shared by the test processes
# (and their subprocesses) of one session compiles each program once. A fresh folder per
# session, so no test ever reads a cache it did not fill.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import tempfile  # noqa: E402
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="lt_jax_test_xla_cache_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lt_jax.config import get_base_config  # noqa: E402

# The longest tests (subprocesses on fake devices, whole pipelines) start first, so that the
# two workers end on short tests rather than one idling while the other finishes a long one.
LONG_FIRST = (
    "test_each_family_on_eight_devices_equals_one_device",
    "test_a_grid_split_over_device_groups_resumes_and_matches_runs_alone",
    "test_two_processes_stop_on_sigterm_resume_and_equal_one_process",
    "test_grid_with_ssp_and_semi_settings_shares_pretraining_and_base_models",
    "test_colab_setup_cell_clones_installs_keeps_jax_and_enters_the_repository",
    "test_benchmark_notebook_runs_a_tiny_grid",
)


def pytest_collection_modifyitems(items):
  items.sort(key=lambda item: item.originalname not in LONG_FIRST)  # Stable: else as found.


def tiny_config(**overrides):
  """digits-LT on the tiny ResNet: a few seconds per run on a CPU."""
  c = get_base_config()
  c.dataset.name = "digits"
  c.dataset.imbalance_ratio = 10.0
  c.dataset.img_max = 100
  c.augment.name = "none"
  c.model.name = "resnet_tiny"
  c.train.num_epochs = 3
  c.train.batch_size = 32
  c.train.eval_batch_size = 64
  c.train.checkpoint_every_epochs = 1
  c.train.log_every_steps = 5
  c.train.drw_epoch = 1
  c.optim.warmup_epochs = 1
  c.optim.decay_epochs = (2,)
  c.optim.decay_factors = (0.1,)
  for key, value in overrides.items():
    section, field = key.split("__")
    c[section][field] = value
  return c


def read_jsonl(path) -> list[dict]:
  """A metrics.jsonl file's records, in order."""
  with open(path) as f:
    return [json.loads(line) for line in f]


def fake_devices_env(devices: int) -> dict:
  """This process's environment for a subprocess whose JAX sees `devices` CPU devices."""
  flags = os.environ.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count", "")
  return {**os.environ, "JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={devices}".strip()}


def assert_class_aware_cycles(labels: np.ndarray, stream: np.ndarray, k: int) -> None:
  """The reference ClassAwareSampler's law, for either implementation (the jitted sampler,
  the host pipeline's order): visits of k images of one class; every round of visits sees
  each present class once, in a reshuffled order; each class's images come as a sequence of
  full permutations of them."""
  present = list(np.flatnonzero(np.bincount(labels)))
  rounds = len(stream) // (len(present) * k)
  classes = labels[stream[:rounds * len(present) * k]].reshape(rounds, len(present), k)
  assert np.all(classes == classes[..., :1])
  assert all(sorted(r[:, 0]) == present for r in classes)
  assert len({tuple(r[:, 0]) for r in classes}) > 1
  for c in present:
    members = list(np.flatnonzero(labels == c))
    seen = stream[labels[stream] == c]  # Class c's images in the order they were drawn.
    assert len(seen) >= len(members)
    for start in range(0, len(seen) // len(members) * len(members), len(members)):
      assert sorted(seen[start:start + len(members)]) == members


@pytest.fixture
def tiny():
  return tiny_config


def killed_at_epoch(run, epoch: int) -> None:
  """Calls `run()` with the training driver killed (KeyboardInterrupt) as it starts its
  `epoch`-th epoch (counted over every stage `run` trains), then restores the driver."""
  from lt_jax.train import driver
  real, calls = driver._train_epoch, []

  def epoch_or_kill(*args, **kwargs):
    calls.append(1)
    if len(calls) == epoch:
      raise KeyboardInterrupt("simulated kill")
    return real(*args, **kwargs)

  driver._train_epoch = epoch_or_kill
  try:
    with pytest.raises(KeyboardInterrupt):
      run()
  finally:
    driver._train_epoch = real
