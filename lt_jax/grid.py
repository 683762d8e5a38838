"""The grid stage: many classifier runs (methods x seeds) trained together.

`train_members(members, grid_dir)` trains every member whose workdir holds no finished run, in
as few programs as their configs allow. Members share a program when their configs agree on
everything but SHARED_PROGRAM_FIELDS (so on the data, the model, the batch, the schedule): one
copy of the data on the device (a host-fed input instead feeds each model the batches of its
run alone), one jitted step over a stacked state (train/members.py). Within
a program, members whose configs differ only in their seed and starting weights form a cohort
and share one step function mapped over their stacked states. With `devices_per_model`, the
devices form groups of that many and each program's models are split over the groups
(`parallel.model_group_mesh`): small models stop paying for a gradient exchange over every
device.

Each member's workdir ends up holding what a run of its config alone would write (config.json,
results.json, checkpoints/last and best, metrics.jsonl, TensorBoard events, the per-class plot),
plus a `grid` block in results.json. The program's own checkpoints, step logs and progress live
in <grid_dir>/programs/<name>. A member whose loss or gradient stops being finite is frozen at
its last good state and its results.json says `status: diverged` with the step.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lt_jax import inputs, methods, models, parallel, predict, recipe, results, transfer
from lt_jax import metrics as lt_metrics
from lt_jax import workdir as workdir_lib
from lt_jax.checkpoint import Checkpoints
from lt_jax.config import get_base_config, override
from lt_jax.errors import ConfigError
from lt_jax.train import driver, optim, writers
from lt_jax.train import members as members_lib
from lt_jax.train import step as step_lib
from lt_jax.validate import validate

# Config fields in which the members of one program may differ. Everything else (dataset,
# model, batch, epochs, optimiser, augmentation, pseudo-labels) is one program's.
COHORT_FIELDS = ("seed", "model.init_from")  # Members of a cohort differ in these only.
SHARED_PROGRAM_FIELDS = COHORT_FIELDS + ("model.head", "loss", "train.rule", "train.sampler",
                                         "train.cb_beta", "train.drw_epoch")


@dataclasses.dataclass(frozen=True)
class Member:
  name: str  # e.g. "scratch/ldam_drw/seed_1"
  config: ml_collections.ConfigDict
  workdir: str


def member_config(config: ml_collections.ConfigDict, method: str, seed: int,
                  **fields) -> ml_collections.ConfigDict:
  """The config of one member: what `run.py` would train alone (its grid fields at their
  defaults, no pipeline of its own), with `method`, `seed` and dotted `fields` set."""
  defaults = {f"grid.{k}": v for k, v in get_base_config().grid.items()}
  return override(methods.apply_method(config, method), seed=seed, **defaults,
                  **{"pretrain.method": "none", "semi.enabled": False}, **fields)


def _without(config: ml_collections.ConfigDict, fields) -> str:
  tree = workdir_lib.config_json(config)
  for dotted in fields:
    *parents, leaf = dotted.split(".")
    node = tree
    for name in parents:
      node = node[name]
    node.pop(leaf, None)
  return json.dumps(tree, sort_keys=True)


def plan_programs(todo: list[Member], max_models: int = 0) -> list[list[list[Member]]]:
  """Programs (lists of cohorts, each a list of members) for the members still to train, in
  the order given; `max_models` > 0 caps the members of one program."""
  by_program: dict[str, list[Member]] = {}
  for m in todo:
    by_program.setdefault(_without(m.config, SHARED_PROGRAM_FIELDS), []).append(m)
  programs = []
  for group in by_program.values():
    size = max_models or len(group)
    for start in range(0, len(group), size):
      cohorts: dict[str, list[Member]] = {}
      for m in group[start:start + size]:
        cohorts.setdefault(_without(m.config, COHORT_FIELDS), []).append(m)
      programs.append(list(cohorts.values()))
  return programs


def train_members(members: list[Member], grid_dir: str, *, member_map: str = "auto",
                  max_models: int = 0, devices_per_model: int = 0) -> dict[str, dict]:
  """Every member's results.json content by name: read back when finished, else trained.
  `devices_per_model` > 0 splits each program's models over groups of that many devices."""
  out, todo = {}, []
  for m in members:
    validate(m.config, check_data=False)
    finished = workdir_lib.guard(m.workdir, m.config)
    if finished is None:
      todo.append(m)
    else:
      out[m.name] = finished
  if out:
    print(f"{len(out)} of {len(members)} members already finished; read back.", flush=True)
  programs = plan_programs(todo, max_models)
  mesh = parallel.model_group_mesh(devices_per_model)
  groups = parallel.model_groups(mesh)
  how = members_lib.resolve_member_map(member_map, groups)
  for i, cohorts in enumerate(programs):
    names = [m.name for c in cohorts for m in c]
    program_dir = os.path.join(grid_dir, "programs", _program_name(names, groups))
    print(f"== program {i + 1}/{len(programs)} ({how}{_groups_note(cohorts, groups)}): "
          f"{len(names)} models in {len(cohorts)} cohorts -> {program_dir}\n   "
          + ", ".join(names), flush=True)
    out |= train_program(cohorts, program_dir, how, label=f"program {i + 1}/{len(programs)}",
                         mesh=mesh)
  return {m.name: out[m.name] for m in members}


def _program_name(names: list[str], groups: int = 1) -> str:
  """Named by its members and, when they are split over groups of devices, the number of
  groups: the stacked checkpoint's shapes depend on it (padded cohorts)."""
  key = "\n".join(names) + (f"\ngroups={groups}" if groups > 1 else "")
  digest = hashlib.sha1(key.encode()).hexdigest()[:10]
  return f"{names[0].split('/')[0]}-{len(names)}-{digest}"


def _groups_note(cohorts: list[list[Member]], groups: int) -> str:
  if groups == 1:
    return ""
  copies = sum(members_lib.padded_size(len(c), groups) - len(c) for c in cohorts)
  return (f", models split over {groups} groups of devices"
          + (f", {copies} padding copies" if copies else ""))


@dataclasses.dataclass
class Program:
  """What the driver needs to train one program's members: built, not yet trained."""
  cohorts: list[list[Member]]
  how: str
  input: inputs.Input
  state: members_lib.StackedState
  step: driver.StepFn  # Pure: (StackedState, data) -> (StackedState, metrics).
  train_data: Any  # The device-resident data every model samples, or a feed of a batch each.
  evaluate: _Evaluator
  plan: driver.Plan
  mesh: Any
  sharding: Any  # The state's: a StackedState of shardings.

  @property
  def members(self) -> list[Member]:
    return [m for c in self.cohorts for m in c]

  @property
  def sizes(self) -> list[int]:
    return [len(c) for c in self.cohorts]


def build_program(cohorts: list[list[Member]], how: str, label: str = "",
                  mesh=None) -> Program:
  """The input, every member's initial state stacked per cohort, the stacked step, the
  evaluation hook and the driver's plan (batch: all members' images per step). `mesh`:
  `parallel.model_group_mesh`'s, whose 'models' axis (if any) splits the models; by default
  every model on every device. A device-resident input is held once for every model; a
  host-fed one feeds each model the batches its run alone would take."""
  config = cohorts[0][0].config
  tr = config.train
  inp = recipe.training_input(config)
  recipe.print_counts(inp.facts)
  for cohort in cohorts:
    inp.check(cohort[0].config)
  mesh = parallel.make_mesh() if mesh is None else mesh
  groups = parallel.model_groups(mesh)
  split = groups > 1
  if split and inp.batch_per_model and jax.process_count() > 1:
    raise ConfigError("grid.devices_per_model splits models over groups of devices, which a "
                      "host-fed dataset on several processes cannot feed yet (each host reads "
                      "its rows of every model's batch); set grid.devices_per_model=0.")
  parallel.check_batch_divides(tr.batch_size, mesh, "train.batch_size")
  replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  spe = inp.steps_per_epoch(tr.batch_size)
  sizes = [len(c) for c in cohorts]
  selection = results.resolve_selection(config)
  steps, counters, stacked = [], [], []
  predictor = None
  for cohort in cohorts:
    cfg = cohort[0].config
    model = models.from_config(cfg.model, inp.num_classes)
    tx = optim.make_optimizer(cfg.optim, tr.num_epochs, spe,
                              frozen=recipe.frozen_parameters(cfg))
    steps.append(inp.make_step(cfg, model, tx, batch_sharding))
    predictor = predict.Predictor(model, inp.mean, inp.std, inp.num_classes,
                                  batch_size=tr.eval_batch_size, mesh=mesh)
    counters.append(_CohortCounts(predictor, how, len(cohort), split))
    stacked.append(members_lib.stack([step_lib.create_state(
        model, tx, inp.image_shape, m.config.seed, replicated) for m in cohort]))
  plan = dataclasses.replace(recipe.plan(config, spe),
                             batch_size=tr.batch_size * sum(sizes), label=label)
  state = members_lib.create(stacked, selection != "last", mesh)
  sharding = members_lib.shardings(state, mesh)
  padded = [[m.config for m in c] + [c[-1].config] * (members_lib.padded_size(len(c), groups)
                                                      - len(c)) for c in cohorts]
  return Program(cohorts, how, inp,
                 state, members_lib.make_step(steps, sizes, how, split, inp.batch_per_model),
                 inp.grid_train_data(padded, mesh),
                 _Evaluator(counters, inp.eval_splits(config, predictor), sizes, inp,
                            selection, sharding), plan, mesh, sharding)


def train_program(cohorts: list[list[Member]], program_dir: str, how: str, label: str = "",
                  mesh=None) -> dict[str, dict]:
  """Trains one program's members together and writes each member's workdir."""
  p = build_program(cohorts, how, label, mesh)
  keep_best = p.state.best is not None
  replicated = parallel.replicated(p.mesh)

  def initialize(s: members_lib.StackedState) -> members_lib.StackedState:
    cohorts_out = []
    for cohort, cohort_state in zip(p.cohorts, s.cohorts):
      ones = members_lib.unstack(cohort_state, len(cohort))
      ones = [transfer.init_backbone_from(one, m.config.model.init_from, replicated,
                                          head=bool(m.config.model.init_head))
              if m.config.model.init_from else one for one, m in zip(ones, cohort)]
      cohorts_out.append(members_lib.stack(ones))
    print("backbones initialised from " + ", ".join(
        sorted({m.config.model.init_from for m in p.members if m.config.model.init_from})),
          flush=True)
    return members_lib.create(cohorts_out, keep_best, p.mesh)

  trained = driver.train(
      program_dir, p.state, p.step, p.train_data, p.plan, state_sharding=p.sharding,
      evaluate=p.evaluate,
      initialize=initialize if any(m.config.model.init_from for m in p.members) else None,
      log=lambda line: print(line, flush=True))
  return _write_members(p, trained, program_dir)


class _CohortCounts:
  """A cohort's evaluation counts, stacked over its (padded) models: over a device split in
  one call, or a host split's batches added one at a time."""

  def __init__(self, predictor: predict.Predictor, how: str, n: int, split_models: bool):
    self.predictor = predictor
    self.whole = jax.jit(members_lib.map_models(
        lambda state, split: predictor.split_counts(predict.variables_of(state), split),
        how, n, split_models))
    self.add = jax.jit(members_lib.map_models(
        lambda state, counts, batch: predictor.add_counts(predict.variables_of(state), counts,
                                                          batch),
        how, n, split_models, stacked=2), donate_argnums=1)
    self.sharding = parallel.models_sharded(predictor.mesh)

  def zeros(self, cohort_state) -> dict:
    models = members_lib.num_models(cohort_state)
    return jax.tree.map(
        lambda z: parallel.put(np.zeros((models, *z.shape), z.dtype), self.sharding),
        predict.zero_counts(self.predictor.num_classes))


class _Evaluator:
  """The driver's evaluation hook for a stacked state: every member's summaries, each member's
  best state kept inside the state, and the summaries of those best states on the host. A
  host split is read once per evaluation for every model of the program."""

  def __init__(self, counters: list[_CohortCounts], splits: dict[str, predict.Split], sizes,
               inp: inputs.Input, selection: str, sharding):
    self.counters, self.splits, self.sizes, self.selection = counters, splits, sizes, selection
    self.report_counts = inp.facts.report_counts
    self.with_confusion = inp.confusion_file is None
    self.confusion: list[dict[str, np.ndarray]] = []  # Per member: the last evaluation's.
    self.best: list[dict] | None = None  # Per member: summaries at its best epoch.
    self._update = jax.jit(functools.partial(members_lib.update_best, sizes=sizes),
                           donate_argnums=0, out_shardings=sharding)

  def counts(self, cohort_states) -> list[dict[str, dict]]:
    """Per cohort, {split: counts stacked over its models}."""
    out = [{} for _ in cohort_states]
    for name, split in self.splits.items():
      if isinstance(split, predict.DeviceSplit):
        for c, (counter, s) in enumerate(zip(self.counters, cohort_states)):
          out[c][name] = counter.whole(s, split)
        continue
      sums = [counter.zeros(s) for counter, s in zip(self.counters, cohort_states)]
      for batch in self.counters[0].predictor.batches(split):
        sums = [counter.add(s, total, batch)
                for counter, s, total in zip(self.counters, cohort_states, sums)]
      for c, total in enumerate(sums):
        out[c][name] = total
    return jax.device_get(out)

  def summaries(self, cohort_states, keep_confusion: bool = False) -> list[dict]:
    """Every member's {split: summary}; `keep_confusion`: also keep its confusion matrices
    (the models now training, not their best states) for a host-fed input's file."""
    out, confusion = [], []
    for cohort_counts, n in zip(self.counts(cohort_states), self.sizes):
      for i in range(n):
        out.append({split: lt_metrics.summarize(c["confusion"][i], c["top5_correct"][i],
                                                self.report_counts,
                                                with_confusion=self.with_confusion)
                    for split, c in cohort_counts.items()})
        confusion.append({split: np.asarray(c["confusion"][i], np.int32)
                          for split, c in cohort_counts.items()})
    if keep_confusion:
      self.confusion = confusion
    return out

  def __call__(self, state: members_lib.StackedState, epoch: int) -> driver.EpochEval:
    evals = self.summaries(state.cohorts, keep_confusion=True)
    record = {f"member/{split}/{k}": [e[split][k] for e in evals]
              for split in evals[0] for k in ("top1_acc", "balanced_acc")}
    # Means, min and max over the healthy models: a frozen one's accuracy is its initial one.
    healthy = jax.device_get(state.failed_at) < 0
    record |= {f"{split}/top1_acc_mean": float(np.mean(
                   [a for a, ok in zip(record[f"member/{split}/top1_acc"], healthy) if ok]
                   or [np.nan])) for split in evals[0]}
    top1 = [a for a, ok in zip(record["member/test/top1_acc"], healthy) if ok]
    line = (f"test top-1 mean {np.mean(top1):.2f}% (min {min(top1):.2f}, max {max(top1):.2f})"
            if top1 else "test top-1: every model diverged")
    failed = int(np.sum(~healthy))
    if failed:
      line += f"; {failed} diverged and frozen, not counted"
    if self.selection != "last":
      if self.best is None:  # First evaluation of this process: a resumed run's best states.
        self.best = (self.summaries(state.best) if int(np.max(jax.device_get(state.best_epoch)))
                     else [None] * len(evals))
      scores = np.asarray([e[self.selection]["top1_acc"] for e in evals], np.float32)
      improved = scores > jax.device_get(state.best_score)  # Strictly, as a run alone.
      state = self._update(state, jnp.asarray(improved), jnp.asarray(scores),
                           jnp.int32(epoch + 1))
      self.best = [e if up else b for e, up, b in zip(evals, improved, self.best)]
      record["member/best/score"] = [b[self.selection]["top1_acc"] for b in self.best]
    return driver.EpochEval(record, line, keep=evals, state=state)


def _write_members(p: Program, trained: driver.Trained, program_dir: str) -> dict[str, dict]:
  """Each member's workdir as its run alone would leave it."""
  flat, sizes, inp, evaluate = p.members, p.sizes, p.input, p.evaluate
  spe, how = p.plan.steps_per_epoch, p.how
  state, meta = trained.state, trained.meta
  failed_at = jax.device_get(state.failed_at)
  best_epoch = jax.device_get(state.best_epoch)
  lasts = members_lib.model_states(state.cohorts, sizes)
  bests = members_lib.model_states(state.best, sizes) if state.best is not None else None
  n = len(flat)
  out = {}
  for i, m in enumerate(flat):
    history = [_member_record(r, i) for r in meta["history"]]
    member_meta = driver.new_meta() | {
        "history": history, "wall_time_s": meta["wall_time_s"],
        "train_seconds": meta["train_seconds"], "train_images": meta["train_images"] / n,
        "eval_seconds": meta["eval_seconds"] / n, "evals": meta["evals"]}
    if bests is not None:
      member_meta |= {"best": evaluate.best[i], "best_epoch": int(best_epoch[i]),
                      "best_score": evaluate.best[i][evaluate.selection]["top1_acc"]}
    final = driver.EpochEval({}, "", keep=trained.final.keep[i])
    res = recipe.results_json(m.config, inp.facts, driver.Trained(lasts[i], member_meta, final),
                              evaluate.selection)
    res["grid"] = {"program": os.path.relpath(program_dir, os.path.dirname(m.workdir)),
                   "models_in_program": n, "member_map": how, "name": m.name,
                   "model_groups": parallel.model_groups(p.mesh),
                   "note": "wall time and images/s are the program's, shared by its models"}
    res["status"] = "ok"
    if failed_at[i] >= 0:
      res["status"] = "diverged"
      res["diverged_at"] = {"step": int(failed_at[i]), "epoch": int(failed_at[i]) // spe + 1}
    _write_workdir(m, inp, res, lasts[i], None if bests is None else bests[i],
                   member_meta, spe, evaluate.confusion[i])
    out[m.name] = res
  return out


def _member_record(record: dict, i: int) -> dict:
  """Member i's entry of a program's epoch record, named as a single run names it."""
  out = {}
  for k, v in record.items():
    if isinstance(v, list):
      prefix, _, rest = k.partition("member/")
      if not rest:
        continue
      out[prefix + rest] = v[i]
    elif k == "epoch":
      out[k] = v
  return out


def _write_workdir(m: Member, inp: inputs.Input, res: dict, last, best, meta: dict, spe: int,
                   confusion: dict[str, np.ndarray]) -> None:
  ckpt = Checkpoints(workdir_lib.checkpoint_dir(m.workdir, "last"))
  ckpt.save(m.config.train.num_epochs * spe, last, meta)  # Where a run alone saves it.
  ckpt.wait()
  ckpt.close()
  if best is not None and meta["best_epoch"]:
    ckpt = Checkpoints(workdir_lib.checkpoint_dir(m.workdir, "best"))
    ckpt.save(meta["best_epoch"] * spe, best,
              {"epoch": meta["best_epoch"], "score": meta["best_score"]})
    ckpt.wait()
    ckpt.close()
  writer = writers.MetricWriter(m.workdir)
  try:
    for record in meta["history"]:
      writer.write(record["epoch"] * spe, record)
  finally:
    writer.close()
  inp.write_confusion(m.workdir, confusion)
  cfg = m.config
  results.plot_per_class_accuracy(
      os.path.join(m.workdir, results.PLOT_FILE), inp.facts.report_counts,
      {"final": res["final"], "best": res["best"]},
      title=f"{inp.title}, {cfg.loss.name}, rule {cfg.train.rule} ({m.name})")
  workdir_lib.write_results(m.workdir, res)
