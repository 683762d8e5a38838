"""The parts of a classifier run that its config decides, shared by the stages that train
classifiers (classify.py: one run; grid.py: many runs in one program): the data it trains on,
the parameters its optimiser freezes, the driver's plan, the start-of-run summary and the
results.json it writes.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from lt_jax import inputs, semi
from lt_jax import workdir as workdir_lib
from lt_jax.data import datasets, list_pools, unlabeled
from lt_jax.data import prepare as prepare_lib
from lt_jax.pretrain import rotation
from lt_jax.train import driver


def training_data(config: ml_collections.ConfigDict) -> prepare_lib.LongTailData:
  """The data a classifier stage trains on: the labeled long-tailed set, plus the
  pseudo-labeled pool for a semi-supervised final stage, or turned into rotation prediction
  for the rotation pretext stage."""
  if config.semi.pseudo_labels:
    data = semi.training_data_with_pseudo_labels(config)
  else:
    data = prepare_lib.prepare(config.dataset)
  if config.task == "rotation":
    data = rotation.rotation_data(data)
  return data


def training_input(config: ml_collections.ConfigDict) -> inputs.Input:
  """The input a classifier stage trains on: a list dataset's files decoded on the host, or
  `training_data` as arrays (held on the device, or read from their files each step)."""
  if datasets.get(config.dataset.name).host_fed:
    return inputs.HostInput.of(config)
  return inputs.of_arrays(config, training_data(config), title=data_title(config))


def data_title(config: ml_collections.ConfigDict) -> str:
  """The training data in plot and table titles: a list dataset by its name, arrays with the
  long-tailed draw's imbalance."""
  ds = config.dataset
  if datasets.get(ds.name).host_fed:
    return ds.name
  return f"{ds.name}-LT, rho {ds.imbalance_ratio:g}"


def labeled_and_pool(config: ml_collections.ConfigDict
                     ) -> tuple[inputs.Input, unlabeled.Pool | unlabeled.PoolRequest]:
  """A semi-supervised config's labeled set (what its base model trains on) and its unlabeled
  pool: arrays drawn by `semi`, or, for a host-fed dataset, files listed by `list_pools`. A
  pool that cannot hold the requested sizes fails here, before any training."""
  if datasets.get(config.dataset.name).host_fed:
    labeled = inputs.HostInput.of(config)
    return labeled, list_pools.draw(config, labeled.splits, labeled.num_classes)
  drawn = semi.draw_labeled(config)
  return inputs.of_arrays(config, drawn.data), semi.draw_pool(config, drawn)


def frozen_parameters(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Parameter paths the optimiser leaves untouched: the backbone of a frozen-backbone stage,
  and an LWS head's classifier (only its per-class scales learn)."""
  frozen = ("backbone",) if config.model.freeze_backbone else ()
  if config.model.head == "lws":
    frozen += ("head/kernel", "head/bias")
  return frozen


def plan(config: ml_collections.ConfigDict, steps_per_epoch: int,
         prefix: str = "train") -> driver.Plan:
  tr = config.train
  return driver.Plan(num_epochs=tr.num_epochs, steps_per_epoch=steps_per_epoch,
                     batch_size=tr.batch_size,
                     steps_per_call=driver.steps_per_call(tr.steps_per_call),
                     log_every_steps=tr.log_every_steps, eval_every_epochs=tr.eval_every_epochs,
                     checkpoint_every_epochs=tr.checkpoint_every_epochs, prefix=prefix)


def print_counts(facts: inputs.DatasetFacts) -> None:
  counts = facts.class_counts
  print(f"{facts.name}: {facts.train_size} training images in {facts.num_classes} classes "
        f"(imbalance {max(counts) / max(min(counts), 1):.1f}); test {facts.test_size}"
        + (f", val {facts.val_size}" if facts.val_size else "")
        + (f"; {facts.num_labeled} labeled + {facts.train_size - facts.num_labeled} "
           "pseudo-labeled" if facts.num_labeled is not None else ""), flush=True)
  if len(counts) <= 100:
    print("class counts: " + ", ".join(str(c) for c in counts), flush=True)
  else:  # ImageNet-LT's 1,000 or iNaturalist's 8,142: their spread, not every one.
    print(f"class counts: largest {max(counts)}, median {int(np.median(counts))}, smallest "
          f"{min(counts)}; Many (> 100) {sum(c > 100 for c in counts)} classes, Medium "
          f"{sum(20 <= c <= 100 for c in counts)}, Few (< 20) {sum(c < 20 for c in counts)}",
          flush=True)


def results_json(config, facts: inputs.DatasetFacts, trained: driver.Trained,
                 selection: str) -> dict:
  """The results.json content of a trained classifier stage."""
  meta, final = trained.meta, trained.final.keep
  best = meta["best"] or {"test": final["test"], "val": final.get("val")}
  best_block = dict(best["test"], epoch=meta["best_epoch"])
  if best.get("val") is not None:
    best_block["val"] = {k: best["val"][k] for k in ("top1_acc", "balanced_acc")}
  if selection == "last":
    best_block = dict(final["test"], epoch=config.train.num_epochs)
  return {
      "config": workdir_lib.config_json(config),
      "dataset": {"name": facts.name, "num_classes": facts.num_classes,
                  "train_size": facts.train_size, "val_size": facts.val_size,
                  "test_size": facts.test_size},
      "class_counts": list(facts.class_counts),
      "group_counts": list(facts.report_counts),
      "final": dict(final["test"], epoch=config.train.num_epochs),
      "best": best_block,
      "selected_on": selection,
      "selection_note": ("best epoch chosen by test accuracy, as the reference does; the "
                         "best block is optimistic" if selection == "test" else None),
      "wall_time_s": meta["wall_time_s"],
      "train_images_per_s": driver.images_per_second(meta),
      "eval_seconds": driver.seconds_per_evaluation(meta),
      "history": meta["history"],
      "devices": [str(d) for d in jax.devices()],
  }
