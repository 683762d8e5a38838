"""The supervised stage: a classifier trained on long-tailed data that the pipeline assembled.

`train_and_evaluate(config, workdir, data)` builds the model, the optimiser, the pure train
step (sampler, augmentation, loss and rule from the config) and the evaluators, hands them
to the driver, and writes results.json and the per-class plot. It serves every stage that
trains a classifier: the plain run, the semi-supervised base and final models, rotation
pre-training (4-way labels from `pretrain.rotation`), the linear probe and SSP fine-tuning.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from lt_jax import metrics as lt_metrics
from lt_jax import models, parallel, predict, results, semi, transfer
from lt_jax import workdir as workdir_lib
from lt_jax.data import augment as augment_lib
from lt_jax.data import prepare as prepare_lib
from lt_jax.data import samplers
from lt_jax.pretrain import rotation
from lt_jax.train import driver, optim
from lt_jax.train import objective as objective_lib
from lt_jax.train import step as step_lib
from lt_jax.validate import check_training_data, validate


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       data: prepare_lib.LongTailData) -> dict:
  """Trains and evaluates one classifier; returns (and writes) its results.json content.
  A finished workdir is read back, not retrained."""
  finished = checked_or_finished(config, workdir)
  if finished is not None:
    return finished
  mesh = parallel.make_mesh()
  tr = config.train
  parallel.check_batch_divides(tr.batch_size, mesh, "train.batch_size")
  facts = DatasetFacts.of(data)
  print_counts(facts)
  spe = samplers.steps_per_epoch(len(data.train.labels), tr.batch_size)
  model = models.from_config(config.model, data.num_classes)
  tx = optim.make_optimizer(config.optim, tr.num_epochs, spe, frozen=frozen_parameters(config))
  replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  state = step_lib.create_state(model, tx, data.train.images.shape[1:], config.seed, replicated)
  train_data = put_split(data.train.images, data.train.labels, replicated)
  selection = results.resolve_selection(config)
  check_training_data(config, data)
  print(workdir_lib.write_parameter_table(workdir, state.params), flush=True)
  trained = driver.train(
      workdir, state, make_step(config, data, model, tx, batch_sharding), train_data,
      plan(config, spe), state_sharding=replicated,
      evaluate=epoch_eval_hook(make_evaluator(config, data, model, mesh), selection),
      initialize=backbone_initializer(config, replicated),
      keep_best=selection != "last", log=lambda line: print(line, flush=True))
  return write_outputs(config, workdir, facts, trained, selection,
                       title=f"{data.name}-LT, rho {config.dataset.imbalance_ratio:g}, "
                             f"{config.loss.name}, rule {tr.rule}")


def checked_or_finished(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """Validates a classifier stage's config; returns the results of a run already finished
  in `workdir` (printing its table), else None (the stage trains or resumes)."""
  validate(config, check_data=False)
  finished = workdir_lib.guard(workdir, config)
  if finished is not None:
    print(f"{workdir} already holds a finished run; not retraining. Its results:")
    print(lt_metrics.format_table({k: finished[k] for k in ("final", "best")}))
  return finished


@dataclasses.dataclass(frozen=True)
class DatasetFacts:
  """What the start-of-run summary and results.json say about a stage's training data,
  whether it lives on the device (`of`) or is read from split lists."""
  name: str
  num_classes: int
  train_size: int
  val_size: int  # 0: no validation split.
  test_size: int
  class_counts: list[int]  # Training images per class id.
  report_counts: list[int]  # The counts that define Many / Medium / Few.
  num_labeled: int | None = None  # Labeled examples before a pseudo-labeled pool.

  @classmethod
  def of(cls, data: prepare_lib.LongTailData) -> DatasetFacts:
    return cls(name=data.name, num_classes=data.num_classes,
               train_size=int(len(data.train.labels)),
               val_size=0 if data.val is None else int(len(data.val.labels)),
               test_size=int(len(data.test.labels)),
               class_counts=[int(c) for c in data.class_counts],
               report_counts=[int(c) for c in data.report_counts],
               num_labeled=data.num_labeled)


def epoch_eval_hook(evaluate: Callable[[object], dict[str, dict]], selection: str
                    ) -> Callable[[object, int], driver.EpochEval]:
  """The driver's evaluation hook around `evaluate(state) -> {split: summary}`: the history
  record, the progress line, and the score of the split that selects the best epoch."""

  def epoch_eval(current_state, epoch: int) -> driver.EpochEval:
    del epoch
    evals = evaluate(current_state)
    record = {f"{split}/{k}": s[k] for split, s in evals.items()
              for k in ("top1_acc", "balanced_acc")}
    line = ", ".join(f"{split} top-1 {s['top1_acc']:.2f}% (many {_fmt(s['many_acc'])}, medium "
                     f"{_fmt(s['medium_acc'])}, few {_fmt(s['few_acc'])})"
                     for split, s in evals.items())
    score = None if selection == "last" else evals[selection]["top1_acc"]
    return driver.EpochEval(record, line, score=score,
                            keep={"test": evals["test"], "val": evals.get("val")})
  return epoch_eval


def backbone_initializer(config: ml_collections.ConfigDict, replicated
                         ) -> Callable | None:
  """The driver's `initialize` for model.init_from (a pre-trained backbone), else None."""
  if not config.model.init_from:
    return None

  def initialize(s):
    s = transfer.init_backbone_from(s, config.model.init_from, replicated,
                                    head=bool(config.model.init_head))
    print(f"backbone initialised from {config.model.init_from}; "
          + ("classifier restored" if config.model.init_head else "head re-initialised")
          + (" (backbone frozen)" if config.model.freeze_backbone else ""), flush=True)
    return s
  return initialize


def write_outputs(config: ml_collections.ConfigDict, workdir: str, facts: DatasetFacts,
                  trained: driver.Trained, selection: str, title: str) -> dict:
  """Writes results.json and the per-class plot of a trained classifier, prints the table;
  returns the results."""
  out = results_json(config, facts, trained, selection)
  workdir_lib.write_results(workdir, out)
  results.plot_per_class_accuracy(
      os.path.join(workdir, results.PLOT_FILE), facts.report_counts,
      {"final": out["final"], "best": out["best"]}, title=title)
  print(lt_metrics.format_table({"final": out["final"], "best": out["best"]}), flush=True)
  print(f"results: {os.path.join(workdir, workdir_lib.RESULTS_FILE)}", flush=True)
  return out


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


def make_step(config: ml_collections.ConfigDict, data: prepare_lib.LongTailData, model, tx,
              batch_sharding) -> driver.StepFn:
  """The pure supervised step for this config and data (not jitted: the driver jits it)."""
  tr = config.train
  spe = samplers.steps_per_epoch(len(data.train.labels), tr.batch_size)
  return functools.partial(
      step_lib.train_step, model=model, tx=tx,
      objective=objective_lib.make_objective(config, data.class_counts),
      sampler=make_sampler(config, data),
      augment=augment_lib.make_augment(config.augment.name, config.augment.crop_padding),
      mean=data.mean, std=data.std, steps_per_epoch=spe,
      schedule=optim.make_schedule(config.optim, tr.num_epochs, spe),
      batch_sharding=batch_sharding,
      task_transform=rotation.rotate_batch if config.task == "rotation" else None,
      labeled_per_batch=labeled_per_batch(config, data),
      unlabeled_weight=config.semi.unlabeled_weight)


def evaluation_splits(config, data: prepare_lib.LongTailData, model, mesh
                      ) -> tuple[predict.Predictor, dict[str, predict.DeviceSplit]]:
  """The predictor of `model` and the test (and validation) split on the device."""
  predictor = predict.Predictor(model, data.mean, data.std, data.num_classes,
                                batch_size=config.train.eval_batch_size, mesh=mesh)
  splits = {"test": data.test} | ({"val": data.val} if data.val is not None else {})
  return predictor, {name: predictor.put(split.images, split.labels)
                     for name, split in splits.items()}


def make_evaluator(config, data: prepare_lib.LongTailData, model, mesh):
  """state -> {split: summary} over the test (and validation) split, each in one jitted call."""
  predictor, splits = evaluation_splits(config, data, model, mesh)

  def evaluate(state) -> dict[str, dict]:
    variables = predict.variables_of(state)
    return {name: lt_metrics.summarize(**predictor.counts(variables, split),
                                       train_counts=data.report_counts)
            for name, split in splits.items()}
  return evaluate


def make_sampler(config, data: prepare_lib.LongTailData) -> samplers.Sampler:
  tr = config.train
  labeled = labeled_per_batch(config, data)
  if labeled is not None:
    return samplers.make_mixed_sampler(data.num_labeled, len(data.train.labels) -
                                       data.num_labeled, tr.batch_size, labeled)
  return samplers.make_sampler(objective_lib.sampler_for(tr.rule, tr.sampler), data.train.labels,
                               data.num_classes, tr.batch_size, num_epochs=tr.num_epochs,
                               beta=tr.cb_beta, samples_per_class=tr.samples_per_class)


def labeled_per_batch(config, data: prepare_lib.LongTailData) -> int | None:
  """Labeled examples per batch when batches mix a fixed proportion of pseudo-labeled ones."""
  fraction = config.semi.unlabeled_batch_fraction
  if data.num_labeled is None or not fraction:
    return None
  return int(round(config.train.batch_size * (1.0 - fraction)))


def put_split(images, labels, sharding) -> step_lib.DeviceData:
  return step_lib.DeviceData(parallel.put(images, sharding),
                             parallel.put(np.asarray(labels).astype(np.int32), sharding))


def print_counts(facts: DatasetFacts) -> None:
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


def _fmt(value) -> str:
  return "-" if value is None else f"{value:.1f}"


def results_json(config, facts: DatasetFacts, trained: driver.Trained, selection: str) -> dict:
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
