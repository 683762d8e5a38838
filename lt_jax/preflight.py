"""`run.py --check`: what a run would do on this machine's devices, checked without training.

It resolves and validates the config, checks that every stage's training batch divides the
devices it is split over, shows the padded batch of the forward passes over a split
(evaluation, pseudo-labeling, decoupled scoring), and looks for the data. Nothing is written.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import ml_collections

from lt_jax import inputs, parallel, pipeline
from lt_jax.data import datasets, image_source, list_pools, prepare, unlabeled
from lt_jax.errors import ConfigError, DataError
from lt_jax.validate import validate

READY, CONFIG_PROBLEM, DATA_ABSENT = 0, 1, 3  # run.py --check's exit codes.
VERDICTS = {READY: "ready: the same command without --check runs it.",
            CONFIG_PROBLEM: "not ready: fix the error above.",
            DATA_ABSENT: "not ready: the data is absent (docs/DATA.md says where to get it); "
                         "the config and the device layout are fine."}


@dataclasses.dataclass
class Report:
  lines: list[str]
  status: int  # READY, CONFIG_PROBLEM or DATA_ABSENT.

  @property
  def text(self) -> str:
    return "\n".join(self.lines + [VERDICTS[self.status]])


def check(config: ml_collections.ConfigDict, devices=None) -> Report:
  """Every check a run makes before it trains, over `devices` (default: all of them)."""
  devices = jax.devices() if devices is None else list(devices)
  lines = []
  try:
    validate(config, check_data=False)
  except ConfigError as e:
    return Report([f"config: error: {e}"], CONFIG_PROBLEM)
  lines.append(f"config: valid; {pipeline.describe(config)}")
  processes = len({d.process_index for d in devices})
  lines.append(f"devices: {len(devices)} x {devices[0].platform} ({devices[0].device_kind}) "
               f"in {processes} process{'es' if processes > 1 else ''}")
  layout, problems = layout_lines(config, devices)
  lines += layout
  try:
    validate(config)
    checked = check_image_files(config)
  except ConfigError as e:
    return Report(lines + [f"config: error: {e}"], CONFIG_PROBLEM)
  except DataError as e:
    return Report(lines + [f"data: absent or unreadable: {e}"],
                  CONFIG_PROBLEM if problems else DATA_ABSENT)
  lines.append(f"data: {config.dataset.name} found" + (f"; {checked}" if checked else ""))
  return Report(lines, CONFIG_PROBLEM if problems else READY)


def check_image_files(config: ml_collections.ConfigDict) -> str:
  """Reads the header of every image file a run will decode (a host-fed dataset's listed
  images, an image-folder dataset or pool), so that one report names all the broken ones
  before a run meets them mid-training. Returns what was checked, '' when nothing was."""
  checked = []
  if datasets.get(config.dataset.name).host_fed:
    splits = inputs.read_splits(config.dataset)  # Every listed file exists.
    paths = [p for images in splits.values() if images is not None for p in images.paths]
    print(f"checking the {len(paths):,} listed images ...", flush=True)
    image_source.check_files(paths, "replace the file or remove its list line",
                             log=lambda line: print(line, flush=True))
    checked.append(f"{len(paths):,} listed images readable")
    if _draws_a_pool(config):  # A pool these files cannot hold stops here, as in a run.
      pool = list_pools.draw(config, splits, inputs.list_classes(config.dataset.name, splits))
      drawn = (f"{len(pool.images):,} drawn on labels" if isinstance(pool, unlabeled.Pool)
               else f"{sum(pool.requested_counts):,} to draw on predictions from "
                    f"{len(pool.candidates.images):,}")
      checked.append(f"pool: {drawn}")
  spec, ds = datasets.get(config.dataset.name), config.dataset
  if spec.check_files is not None:  # A dataset of image files read into arrays.
    location = spec.find(spec, ds.data_dir, prepare.source_options(ds))
    checked.append(spec.check_files(location, lambda line: print(line, flush=True)))
  semi = config.semi
  if _draws_a_pool(config) and semi.pool_source == "image_folder":
    if not semi.image_folder or not os.path.isdir(os.path.expanduser(semi.image_folder)):
      raise DataError(f"semi.image_folder={semi.image_folder!r} is not a folder of images.")
    paths = image_source.list_images(os.path.expanduser(semi.image_folder))
    image_source.check_files(paths, "replace or remove them",
                             log=lambda line: print(line, flush=True))
    checked.append(f"{len(paths):,} pool images readable")
  return "; ".join(checked)


def layout_lines(config: ml_collections.ConfigDict, devices) -> tuple[list[str], int]:
  """One line per training batch and forward pass, and how many training batches do not
  divide their devices (their lines say `error:` and the fix)."""
  mesh = parallel.make_mesh(devices)
  group_mesh = mesh
  if config.grid.methods and config.grid.devices_per_model:
    try:
      group_mesh = parallel.model_group_mesh(config.grid.devices_per_model, devices)
    except ConfigError as e:
      return [f"  error: {e}"], 1
  lines, problems = [], 0
  for batch in pipeline.training_batches(config):
    on = group_mesh if batch.per_model_group else mesh
    n = parallel.data_devices(on)
    head = f"  {batch.stage}: {batch.field}={batch.size}"
    try:
      parallel.check_batch_divides(batch.size, on, batch.field)
    except ConfigError as e:
      problems += 1
      lines.append(f"{head}: error: {e}")
      continue
    lines.append(f"{head}, {batch.size // n} per device")
  # A grid evaluates each model on its group's devices; pseudo-labels use every device.
  forward = [("train.eval_batch_size", config.train.eval_batch_size, group_mesh)]
  if _draws_a_pool(config):
    forward.append(("semi.label_batch_size", config.semi.label_batch_size, mesh))
  for field, size, on in forward:
    padded, n = parallel.padded_batch_size(size, on), parallel.data_devices(on)
    pad = f", padded to {padded} (the {padded - size} extra rows masked)" if padded != size \
        else ""
    lines.append(f"  forward passes: {field}={size}{pad}, {padded // n} per device")
  return lines, problems


def _draws_a_pool(config: ml_collections.ConfigDict) -> bool:
  """A semi-supervised run, or a grid with a semi setting: an unlabeled pool is labeled."""
  return bool(config.semi.enabled or (config.grid.methods and "semi" in config.grid.settings))

