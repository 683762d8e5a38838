"""The training loop: `train_and_evaluate(config, workdir)` is the one entry the CLI and the
notebooks call.

Restore order: the newest checkpoint in this workdir (resume), else scratch. A workdir that
already holds results.json is a finished run: its results are returned and nothing is
retrained or overwritten; a workdir whose saved config differs from the new one is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time

import jax
import ml_collections
import numpy as np
from clu import parameter_overview

from lt_jax import io_utils, parallel, results, semi, transfer
from lt_jax import metrics as lt_metrics
from lt_jax.checkpoint import Checkpoints
from lt_jax.data import augment as augment_lib
from lt_jax.data import prepare as prepare_lib
from lt_jax.data import samplers
from lt_jax.data.sources import Split
from lt_jax.errors import ConfigError
from lt_jax.models import create_model
from lt_jax.pretrain import rotation
from lt_jax.train import objective as objective_lib
from lt_jax.train import optim, writers
from lt_jax.train import step as step_lib
from lt_jax.validate import validate

CONFIG_FILE = "config.json"


def resolve_selection(config) -> str:
  if config.train.select_on != "auto":
    return config.train.select_on
  return "val" if config.dataset.val_per_class > 0 else "test"


def guard_workdir(workdir: str, config: ml_collections.ConfigDict) -> dict | None:
  """Returns the finished run's results, raises on a different config, else records ours."""
  os.makedirs(workdir, exist_ok=True)
  results_path = os.path.join(workdir, results.RESULTS_FILE)
  config_path = os.path.join(workdir, CONFIG_FILE)
  ours = json.loads(config.to_json_best_effort())
  if os.path.exists(config_path):
    with open(config_path) as f:
      theirs = json.load(f)
    diff = sorted(_diff(theirs, ours))
    if diff:
      raise ConfigError(
          f"workdir {workdir} holds a run with a different config ({', '.join(diff[:8])}"
          f"{' ...' if len(diff) > 8 else ''} differ); use a new --workdir, or the old "
          "config to resume that run.")
  if os.path.exists(results_path):
    with open(results_path) as f:
      return json.load(f)
  io_utils.atomic_write_json(config_path, ours)
  return None


def _diff(a, b, prefix=""):
  if isinstance(a, dict) and isinstance(b, dict):
    for key in set(a) | set(b):
      yield from _diff(a.get(key), b.get(key), f"{prefix}{key}.")
  elif a != b:
    yield prefix.rstrip(".")


def _pad_to_multiple(split, multiple: int):
  n = len(split.labels)
  padded = -(-n // multiple) * multiple
  images = np.zeros((padded, *split.images.shape[1:]), np.uint8)
  labels = np.zeros((padded,), np.int32)
  images[:n], labels[:n] = split.images, split.labels
  return images, labels, n


def _put_split(images, labels, sharding) -> step_lib.DeviceData:
  return step_lib.DeviceData(parallel.put(images, sharding),
                             parallel.put(labels.astype(np.int32), sharding))


def _check_finite(scalars: dict, step: int, epoch: int) -> None:
  for name in ("loss", "grad_norm"):
    if name in scalars and not math.isfinite(scalars[name]):
      raise FloatingPointError(
          f"train {name} is {scalars[name]} at step {step} (epoch {epoch + 1}); the run "
          "diverged. Lower optim.lr, check the inputs, or resume from the last checkpoint.")


def _print_counts(data: prepare_lib.LongTailData) -> None:
  counts = data.class_counts
  print(f"{data.name}: {len(data.train.labels)} training images in {data.num_classes} classes "
        f"(imbalance {max(counts) / max(min(counts), 1):.1f}); test {len(data.test.labels)}"
        + (f", val {len(data.val.labels)}" if data.val is not None else "")
        + (f"; {data.num_labeled} labeled + {len(data.train.labels) - data.num_labeled} "
           "pseudo-labeled" if data.num_labeled is not None else ""), flush=True)
  print("class counts: " + ", ".join(str(c) for c in counts), flush=True)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains and evaluates one run; returns (and writes) its results.json content."""
  start_time = time.time()
  validate(config)
  mesh = parallel.make_mesh()
  parallel.check_batch_divides(config.train.batch_size, mesh, "train.batch_size")
  parallel.check_batch_divides(config.train.eval_batch_size, mesh, "train.eval_batch_size")
  finished = guard_workdir(workdir, config)
  if finished is not None:
    print(f"{workdir} already holds a finished run; not retraining. Its results:")
    print(lt_metrics.format_table({k: finished[k] for k in ("final", "best")}))
    return finished

  data = load_training_data(config)
  _print_counts(data)
  tr = config.train
  num_train = len(data.train.labels)
  spe = samplers.steps_per_epoch(num_train, tr.batch_size)
  total_steps = spe * tr.num_epochs

  frozen = bool(config.model.freeze_backbone)
  model = create_model(config.model.name, num_classes=data.num_classes, head=config.model.head,
                       frozen_backbone=frozen, conv_impl=config.model.conv_impl)
  tx = optim.make_optimizer(config.optim, tr.num_epochs, spe,
                            frozen=("backbone",) if frozen else ())
  replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  state = step_lib.create_state(model, tx, data.train.images.shape[1:], config.seed, replicated)

  last_ckpt = Checkpoints(os.path.join(workdir, "checkpoints", "last"))
  best_ckpt = Checkpoints(os.path.join(workdir, "checkpoints", "best"))
  meta = {"history": [], "best": None, "best_score": -1.0, "best_epoch": None,
          "wall_time_s": 0.0, "train_seconds": 0.0, "train_images": 0}
  if last_ckpt.latest_step() is not None:
    state, meta = last_ckpt.restore(state)
    best_ckpt.delete_after(int(state.step))
    print(f"resumed from {last_ckpt.directory} at step {int(state.step)}", flush=True)
  elif config.model.init_from:
    state = transfer.init_backbone_from(state, config.model.init_from, replicated)
    print(f"backbone initialised from {config.model.init_from}; head re-initialised"
          + (" (backbone frozen)" if frozen else ""), flush=True)
  print(parameter_overview.get_parameter_overview(state.params), flush=True)
  start_step = int(state.step)

  train_step = step_lib.make_train_step(
      state_sharding=replicated, model=model, tx=tx,
      objective=objective_lib.make_objective(config, data.class_counts),
      sampler=_make_sampler(config, data), augment=_make_augment(config), mean=data.mean,
      std=data.std, steps_per_epoch=spe,
      schedule=optim.make_schedule(config.optim, tr.num_epochs, spe),
      batch_sharding=batch_sharding,
      task_transform=rotation.rotate_batch if config.task == "rotation" else None,
      labeled_per_batch=_labeled_per_batch(config, data),
      unlabeled_weight=config.semi.unlabeled_weight)
  train_data = _put_split(data.train.images, data.train.labels, replicated)

  eval_sets = {"test": data.test} | ({"val": data.val} if data.val is not None else {})
  evaluators = {}
  for name, split in eval_sets.items():
    images, labels, n = _pad_to_multiple(split, tr.eval_batch_size)
    device_split = _put_split(images, labels, replicated)
    fn = step_lib.make_eval_fn(model=model, mean=data.mean, std=data.std,
                               num_classes=data.num_classes, batch_size=tr.eval_batch_size,
                               num_examples=n, batch_sharding=batch_sharding)
    evaluators[name] = (fn, device_split)

  def evaluate(current_state) -> dict[str, dict]:
    out = {}
    for name, (fn, device_split) in evaluators.items():
      counts = jax.device_get(fn(current_state, device_split))
      out[name] = lt_metrics.summarize(counts["confusion"], counts["top5_correct"],
                                       data.report_counts)
    return out

  selection = resolve_selection(config)
  writer = writers.MetricWriter(workdir, resume_step=start_step)
  progress = writers.Progress(total_steps, tr.batch_size, start_step)
  final = None
  try:
    for epoch in range(start_step // spe, tr.num_epochs):
      epoch_start = time.perf_counter()
      progress.restart_window(epoch * spe)
      state, train_scalars = _train_epoch(state, train_step, train_data, epoch, spe, tr,
                                          writer, progress)
      epoch_seconds = time.perf_counter() - epoch_start
      if epoch > 0 or tr.num_epochs == 1:  # Epoch 0 includes compilation.
        meta["train_seconds"] += epoch_seconds
        meta["train_images"] += spe * tr.batch_size
      record = {"epoch": epoch + 1, **{f"train/{k}": v for k, v in train_scalars.items()}}
      is_last = epoch + 1 == tr.num_epochs
      if (epoch + 1) % tr.eval_every_epochs == 0 or is_last:
        evals = evaluate(state)
        for split, summary in evals.items():
          record[f"{split}/top1_acc"] = summary["top1_acc"]
          record[f"{split}/balanced_acc"] = summary["balanced_acc"]
        line = f"epoch {epoch + 1}/{tr.num_epochs}: " + ", ".join(
            f"{split} top-1 {s['top1_acc']:.2f}% (many {_fmt(s['many_acc'])}, medium "
            f"{_fmt(s['medium_acc'])}, few {_fmt(s['few_acc'])})" for split, s in evals.items())
        if selection != "last":
          score = evals[selection]["top1_acc"]
          if score > meta["best_score"]:
            meta["best_score"], meta["best_epoch"] = score, epoch + 1
            meta["best"] = {"test": evals["test"], "val": evals.get("val")}
            best_ckpt.save(int(state.step), state, {"epoch": epoch + 1, "score": score})
          record["best/score"] = meta["best_score"]
          line += f"; best {selection} {meta['best_score']:.2f}% at epoch {meta['best_epoch']}"
        print(line, flush=True)
        if is_last:
          final = evals
      writer.write(int(state.step), record)
      meta["history"].append(record)
      if (epoch + 1) % tr.checkpoint_every_epochs == 0 or is_last:
        meta["wall_time_s"] += time.time() - start_time
        start_time = time.time()
        last_ckpt.save(int(state.step), state, meta)
    last_ckpt.wait()
    best_ckpt.wait()
  finally:
    writer.close()
    last_ckpt.close()
    best_ckpt.close()

  if final is None:  # Resumed after the last epoch was saved: evaluate the restored state.
    final = evaluate(state)
  meta["wall_time_s"] += time.time() - start_time
  out = _results(config, data, final, meta, selection)
  results.write_results(workdir, out)
  results.plot_per_class_accuracy(
      os.path.join(workdir, results.PLOT_FILE), data.report_counts,
      {"final": out["final"], "best": out["best"]},
      title=f"{data.name}-LT, rho {config.dataset.imbalance_ratio:g}, {config.loss.name}, "
            f"rule {tr.rule}")
  print(lt_metrics.format_table({"final": out["final"], "best": out["best"]}), flush=True)
  print(f"results: {os.path.join(workdir, results.RESULTS_FILE)}", flush=True)
  return out


def load_training_data(config) -> prepare_lib.LongTailData:
  """The labeled long-tailed set, plus the pseudo-labeled pool for a semi-supervised final
  stage, or turned into rotation prediction for the rotation pretext stage."""
  if config.semi.pseudo_labels:
    data = semi.training_data_with_pseudo_labels(config)
  else:
    data = prepare_lib.prepare(config.dataset)
  if config.task == "rotation":
    data = rotation_data(data)
  return data


def rotation_data(data: prepare_lib.LongTailData) -> prepare_lib.LongTailData:
  """Rotation prediction on the same (imbalanced) training images: 4 classes; the test and
  validation images under all four rotations."""

  def rotated(split):
    if split is None:
      return None
    images, ks = rotation.rotated_copies(split.images)
    return Split(images, ks)

  n = len(data.train.labels)
  counts = [n] * rotation.NUM_ROTATIONS  # Each rotation is equally likely for every image.
  return dataclasses.replace(data, val=rotated(data.val),
                             test=rotated(data.test), num_classes=rotation.NUM_ROTATIONS,
                             class_counts=counts, num_labeled=None, group_counts=None)


def _make_sampler(config, data):
  tr = config.train
  labeled = _labeled_per_batch(config, data)
  if labeled is not None:
    return samplers.make_mixed_sampler(data.num_labeled, len(data.train.labels) -
                                       data.num_labeled, tr.batch_size, labeled)
  name = "resample" if tr.rule == "resample" else tr.sampler
  return samplers.make_sampler(name, data.train.labels, data.num_classes, tr.batch_size,
                               num_epochs=tr.num_epochs, beta=tr.cb_beta)


def _labeled_per_batch(config, data) -> int | None:
  """Labeled examples per batch when batches mix a fixed proportion of pseudo-labeled ones."""
  fraction = config.semi.unlabeled_batch_fraction
  if data.num_labeled is None or not fraction:
    return None
  return int(round(config.train.batch_size * (1.0 - fraction)))


def _make_augment(config):
  if config.augment.name == "crop_flip":
    return functools.partial(augment_lib.crop_flip, padding=config.augment.crop_padding)
  return step_lib.no_augment


def _fmt(value) -> str:
  return "-" if value is None else f"{value:.1f}"


def _train_epoch(state, train_step, train_data, epoch, spe, tr, writer, progress):
  """Runs one epoch of steps; returns the state and the epoch's averaged train scalars."""
  epoch_metrics = None
  window = None
  for _ in range(spe):
    state, step_metrics = train_step(state, train_data)
    epoch_metrics = step_metrics if epoch_metrics is None else epoch_metrics.merge(step_metrics)
    window = step_metrics if window is None else window.merge(step_metrics)
    step = int(state.step)
    if step % tr.log_every_steps == 0:
      scalars = {k: float(v) for k, v in window.compute().items()}
      _check_finite(scalars, step, epoch)
      rate = progress.report(epoch, tr.num_epochs, step, scalars)
      writer.write(step, {f"train_step/{k}": v for k, v in scalars.items()}
                   | {"train_step/images_per_s": rate})
      window = None
  scalars = {k: float(v) for k, v in epoch_metrics.compute().items()}
  _check_finite(scalars, int(state.step), epoch)
  return state, scalars


def _results(config, data, final: dict, meta: dict, selection: str) -> dict:
  best = meta["best"] or {"test": final["test"], "val": final.get("val")}
  best_block = dict(best["test"], epoch=meta["best_epoch"])
  if best.get("val") is not None:
    best_block["val"] = {k: best["val"][k] for k in ("top1_acc", "balanced_acc")}
  if selection == "last":
    best_block = dict(final["test"], epoch=config.train.num_epochs)
  images_per_s = (meta["train_images"] / meta["train_seconds"]
                  if meta["train_seconds"] > 0 else None)
  return {
      "config": json.loads(config.to_json_best_effort()),
      "dataset": {"name": data.name, "num_classes": data.num_classes,
                  "train_size": int(len(data.train.labels)),
                  "val_size": 0 if data.val is None else int(len(data.val.labels)),
                  "test_size": int(len(data.test.labels))},
      "class_counts": [int(c) for c in data.class_counts],
      "group_counts": [int(c) for c in data.report_counts],
      "final": dict(final["test"], epoch=config.train.num_epochs),
      "best": best_block,
      "selected_on": selection,
      "selection_note": ("best epoch chosen by test accuracy, as the reference does; the "
                         "best block is optimistic" if selection == "test" else None),
      "wall_time_s": meta["wall_time_s"],
      "train_images_per_s": images_per_s,
      "history": meta["history"],
      "devices": [str(d) for d in jax.devices()],
  }

