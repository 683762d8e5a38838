"""The supervised stage: a classifier trained on long-tailed data that the pipeline assembled.

`train_and_evaluate(config, workdir, input)` builds the model and the optimiser, asks the
input (`lt_jax.inputs`: device-resident arrays or host-decoded image lists) for the pure train
step, its data and the evaluation splits, hands them to the driver, and writes results.json
and the per-class plot. It serves every stage that trains a classifier: the plain run, the
semi-supervised base and final models, rotation pre-training (4-way labels from
`pretrain.rotation`), the linear probe, SSP fine-tuning and cRT / LWS.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import ml_collections
import numpy as np

from lt_jax import inputs, models, parallel, predict, recipe, results, transfer
from lt_jax import metrics as lt_metrics
from lt_jax import workdir as workdir_lib
from lt_jax.train import driver, optim
from lt_jax.train import objective as objective_lib
from lt_jax.train import step as step_lib
from lt_jax.validate import validate


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       inp: inputs.Input) -> dict:
  """Trains and evaluates one classifier on `inp`; returns (and writes) its results.json
  content. A finished workdir is read back, not retrained."""
  finished = checked_or_finished(config, workdir)
  if finished is not None:
    return finished
  mesh = parallel.make_mesh()
  tr = config.train
  parallel.check_batch_divides(tr.batch_size, mesh, "train.batch_size")
  recipe.print_counts(inp.facts)
  inp.check(config)
  spe = inp.steps_per_epoch(tr.batch_size)
  model = models.from_config(config.model, inp.num_classes)
  tx = optim.make_optimizer(config.optim, tr.num_epochs, spe,
                            frozen=recipe.frozen_parameters(config))
  replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  state = step_lib.create_state(model, tx, inp.image_shape, config.seed, replicated)
  predictor = predict.Predictor(model, inp.mean, inp.std, inp.num_classes,
                                batch_size=tr.eval_batch_size, mesh=mesh)
  evaluator = Evaluator(predictor, inp.eval_splits(config, predictor), inp.facts.report_counts,
                        with_confusion=inp.confusion_file is None)
  selection = results.resolve_selection(config)
  print(workdir_lib.write_parameter_table(workdir, state.params), flush=True)
  trained = driver.train(
      workdir, state, inp.make_step(config, model, tx, batch_sharding),
      inp.train_data(config, mesh), recipe.plan(config, spe), state_sharding=replicated,
      evaluate=epoch_eval_hook(evaluator, selection),
      initialize=backbone_initializer(config, replicated),
      keep_best=selection != "last", log=lambda line: print(line, flush=True))
  inp.write_confusion(workdir, evaluator.confusion)
  return write_outputs(config, workdir, inp.facts, trained, selection,
                       title=f"{inp.title}, {config.model.name}, {config.loss.name}, rule "
                             f"{tr.rule}, sampler {objective_lib.sampler_for(tr.rule, tr.sampler)}")


def checked_or_finished(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """Validates a classifier stage's config; returns the results of a run already finished
  in `workdir` (printing its table), else None (the stage trains or resumes)."""
  validate(config, check_data=False)
  finished = workdir_lib.guard(workdir, config)
  if finished is not None:
    print(f"{workdir} already holds a finished run; not retraining. Its results:")
    print(lt_metrics.format_table({k: finished[k] for k in ("final", "best")}))
  return finished


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


def write_outputs(config: ml_collections.ConfigDict, workdir: str, facts: inputs.DatasetFacts,
                  trained: driver.Trained, selection: str, title: str) -> dict:
  """Writes results.json and the per-class plot of a trained classifier, prints the table;
  returns the results."""
  out = recipe.results_json(config, facts, trained, selection)
  workdir_lib.write_results(workdir, out)
  results.plot_per_class_accuracy(
      os.path.join(workdir, results.PLOT_FILE), facts.report_counts,
      {"final": out["final"], "best": out["best"]}, title=title)
  print(lt_metrics.format_table({"final": out["final"], "best": out["best"]}), flush=True)
  print(f"results: {os.path.join(workdir, workdir_lib.RESULTS_FILE)}", flush=True)
  return out


class Evaluator:
  """state -> {split: summary} over the input's evaluation splits, counted by the predictor.
  Without `with_confusion` the summaries leave the confusion matrices out (1,000 or 8,142
  classes square); `Input.write_confusion` then writes the last evaluation's to a file."""

  def __init__(self, predictor: predict.Predictor, splits: dict[str, predict.Split],
               report_counts, with_confusion: bool = True):
    self.predictor, self.splits = predictor, splits
    self.report_counts, self.with_confusion = report_counts, with_confusion
    self.confusion: dict[str, np.ndarray] = {}

  def __call__(self, state) -> dict[str, dict]:
    variables = predict.variables_of(state)
    out = {}
    for name, split in self.splits.items():
      counts = self.predictor.counts(variables, split)
      out[name] = lt_metrics.summarize(counts["confusion"], counts["top5_correct"],
                                       self.report_counts, with_confusion=self.with_confusion)
      self.confusion[name] = np.asarray(counts["confusion"], np.int32)
    return out


def _fmt(value) -> str:
  return "-" if value is None else f"{value:.1f}"


