"""One command, every stage: `run(config, workdir)` is what run.py calls.

- plain config: one supervised run in `workdir`.
- `semi.enabled`: workdir/base (the base model on D_L, or `semi.base_workdir`) ->
  workdir/pseudo_labels (labels for the pool) -> workdir/final (D_L + pseudo-labeled D_U).
- `pretrain.method`: workdir/pretrain (rotation, MoCo v2 or SimCLR on the same imbalanced
  images) -> workdir/probe (linear probe of the frozen backbone) -> workdir/final (the config's
  method, initialised from the pre-trained backbone).
- `decouple.methods`: workdir/stage1 (this config without them: any of the above but a grid,
  or `decouple.stage1_workdir`) -> workdir/<method> for each of cRT, LWS (trained on stage 1's
  frozen backbone), tau-norm and post-hoc logit adjustment (re-scored, no training).
- `grid.methods`: every method x seed x setting as a member in
  workdir/<setting>/<method>/seed_<s>, trained together by the grid stage (grid.py), after
  what the settings need (workdir/pretrain/<method>/seed_<s>, workdir/semi_base/seed_<s>,
  workdir/pseudo_labels/seed_<s>); workdir/summary.md, .csv and plots compare them.

These are the entries of `PIPELINES` (the end of this module), tried in that order; a new
way through the stages is one entry there (docs/EXTENDING.md). Each stage lives in its own
folder with its own config.json: a finished stage is skipped (its
results are read back), a stage that was cut off resumes from its last checkpoint, and the
root results.json gathers `stages.<name>` once the last stage is done.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable

import ml_collections

from lt_jax import (
  classify,
  compilation_cache,
  decouple,
  grid,
  inputs,
  io_utils,
  parallel,
  pseudo_label,
  recipe,
  semi,
  summary,
)
from lt_jax import metrics as lt_metrics
from lt_jax import workdir as workdir_lib
from lt_jax.config import override
from lt_jax.data import unlabeled
from lt_jax.errors import ConfigError
from lt_jax.pretrain import contrastive_stage
from lt_jax.validate import validate


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  parallel.check_same_config(config)  # First: a process that differs must not run alone.
  validate(config)
  compilation_cache.enable()
  # One run at a time in a workdir: a second one would interleave its files with ours.
  with workdir_lib.lock(workdir, primary=parallel.is_main_process()):
    return pipeline_for(config).run(config, workdir)


def pipeline_for(config: ml_collections.ConfigDict) -> Pipeline:
  """The first entry of `PIPELINES` that the config asks for."""
  return next(p for p in PIPELINES.values() if p.applies(config))


def describe(config: ml_collections.ConfigDict) -> str:
  """The stages `run(config, ...)` goes through, in words (run.py --check prints it)."""
  return pipeline_for(config).describe(config)


def _describe_decouple(config) -> str:
  stage1 = ("decouple.stage1_workdir" if config.decouple.stage1_workdir
            else describe(override(config, **{"decouple.methods": ()})))
  return f"decoupled: stage 1 ({stage1}) -> {', '.join(config.decouple.methods)}"


def _describe_grid(config) -> str:
  g = config.grid
  return (f"grid: {len(g.methods)} methods x {len(g.seeds)} seeds x settings "
          f"{', '.join(g.settings)}")


def _describe_ssp(config) -> str:
  probe = " -> probe" if config.pretrain.probe_epochs else ""
  return f"SSP: pretrain ({config.pretrain.method}){probe} -> final"


@dataclasses.dataclass(frozen=True)
class TrainingBatch:
  """One stage's global training batch: what must divide the devices it is split over."""
  stage: str
  field: str  # The config field that sets it.
  size: int
  per_model_group: bool = False  # A grid program's: split over grid.devices_per_model.


def training_batches(config: ml_collections.ConfigDict) -> list[TrainingBatch]:
  """The training batch of every stage that `run(config, ...)` trains, in order, from the
  same stage configs the pipeline builds."""
  return pipeline_for(config).batches(config)


def _decouple_batches(config) -> list[TrainingBatch]:
  d = config.decouple
  stage1 = [] if d.stage1_workdir else [
      dataclasses.replace(b, stage=f"stage1/{b.stage}")
      for b in training_batches(override(config, **{"decouple.methods": ()}))]
  return stage1 + [TrainingBatch(m, "decouple.batch_size", d.batch_size)
                   for m in d.methods if m in decouple.TRAINED]


def _semi_batches(config) -> list[TrainingBatch]:
  base = [] if config.semi.base_workdir else [
      TrainingBatch("base", "semi.base_batch_size", config.semi.base_batch_size)]
  return base + [TrainingBatch("final", "train.batch_size", config.train.batch_size)]


def _ssp_batches(config) -> list[TrainingBatch]:
  out = [_pretrain_batch(config, "pretrain")]
  if config.pretrain.probe_epochs:
    out.append(TrainingBatch("probe", "train.batch_size", config.train.batch_size))
  return out + [TrainingBatch("final", "train.batch_size", config.train.batch_size)]


def _pretrain_batch(config, stage: str, per_model_group: bool = False) -> TrainingBatch:
  _, batch = inputs.pretrain_epochs_and_batch(config)
  field = "pretrain.batch_size" if config.pretrain.batch_size else "train.batch_size"
  return TrainingBatch(stage, field, batch, per_model_group)


def _grid_batches(config) -> list[TrainingBatch]:
  g, tr = config.grid, config.train
  out = []
  if "ssp" in g.settings:  # Rotation trains as a grid program; MoCo / SimCLR alone.
    out.append(_pretrain_batch(config, "pretrain", config.pretrain.method == "rotation"))
  if {"scratch", "ssp"} & set(g.settings):
    out.append(TrainingBatch("members", "train.batch_size", tr.batch_size, True))
  if "semi" in g.settings:
    out.append(TrainingBatch("semi base models", "semi.base_batch_size",
                             config.semi.base_batch_size, True))
    field = "grid.semi_batch_size" if g.semi_batch_size else "train.batch_size"
    out.append(TrainingBatch("semi members", field, g.semi_batch_size or tr.batch_size, True))
  return out


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """One classifier stage in `workdir`: a finished one is read back (its data not even
  loaded), else it trains or resumes."""
  finished = _finished(workdir, config)
  if finished is not None:
    return finished
  return classify.train_and_evaluate(config, workdir, recipe.training_input(config))


def _finished(workdir: str, config: ml_collections.ConfigDict) -> dict | None:
  finished = workdir_lib.guard(workdir, config)
  if finished is not None:
    print(f"{workdir} already holds a finished run; not retraining.", flush=True)
  return finished


def _finish(workdir: str, config, stages: dict, final: dict, rows: dict,
            reused: tuple[str, ...] = (), **extra) -> dict:
  """The pipeline's root results.json; `reused` stages (a finished run a field pointed at)
  keep their results but their time is not this run's."""
  out = {"config": workdir_lib.config_json(config), "stages": stages, **extra,
         "class_counts": final["class_counts"], "final": final["final"], "best": final["best"],
         "selected_on": final["selected_on"],
         "wall_time_s": sum(s.get("wall_time_s") or 0.0 for name, s in stages.items()
                            if name not in reused),
         "train_images_per_s": final.get("train_images_per_s")}
  workdir_lib.write_results(workdir, out)
  print(lt_metrics.format_table(rows), flush=True)
  print(f"results: {os.path.join(workdir, workdir_lib.RESULTS_FILE)}", flush=True)
  return out


# --- semi-supervised ----------------------------------------------------------------------


def run_semi(config: ml_collections.ConfigDict, workdir: str) -> dict:
  finished = _finished(workdir, config)
  if finished is not None:
    return finished
  # Draw the pool first: a pool that cannot hold the requested sizes fails here, naming what
  # would fit, before any training. It is kept for the pseudo-labeling stage.
  labeled, pool = recipe.labeled_and_pool(config)
  base_dir = config.semi.base_workdir or workdir_lib.stage_dir(workdir, "base")
  if config.semi.base_workdir:
    base = workdir_lib.finished_results(base_dir, "semi.base_workdir")
    pseudo_label.check_base(config, base_dir, base, labeled)
  else:
    base_cfg = override(config, **{"semi.enabled": False,
                                   "train.batch_size": config.semi.base_batch_size})
    print(f"== stage 1/3: base model on the labeled data -> {base_dir}", flush=True)
    base = train(base_cfg, base_dir)

  labels_dir = workdir_lib.stage_dir(workdir, "pseudo_labels")
  print(f"== stage 2/3: pseudo-labels for the unlabeled pool -> {labels_dir}", flush=True)
  labels_path, report = generate_pseudo_labels(config, base_dir, labels_dir, pool, labeled)

  final_dir = workdir_lib.stage_dir(workdir, "final")
  final_cfg = override(config, **{"semi.enabled": False,
                                  "semi.pseudo_labels": labels_path})
  print(f"== stage 3/3: final model on labeled + pseudo-labeled data -> {final_dir}",
        flush=True)
  final = train(final_cfg, final_dir)
  rows = {"base (D_L only)": base["final"], "semi (D_L + pseudo D_U)": final["final"]}
  return _finish(workdir, config, {"base": base, "pseudo_labels": report, "final": final},
                 final, rows, reused=("base",) if config.semi.base_workdir else ())


def generate_pseudo_labels(config, base_dir: str, labels_dir: str,
                           pool: unlabeled.Pool | unlabeled.PoolRequest,
                           labeled: inputs.Input) -> tuple[str, dict]:
  """Labels `pool` (this config's, see `semi.draw_pool`) with the frozen base model unless this
  stage already did (the .npz is written atomically, so its presence means it is complete).
  `labeled` is the labeled draw: its normalisation and number of classes."""
  path = os.path.join(labels_dir, workdir_lib.PSEUDO_LABELS_FILE)
  report_path = os.path.join(labels_dir, workdir_lib.PSEUDO_LABEL_REPORT_FILE)
  done, labeled_already = os.path.exists(report_path), os.path.exists(path)
  # Every process looks before process 0 writes either file, so all of them take one branch
  # (one that looked late would skip the labeling, and the barrier process 0 waits at).
  parallel.barrier(f"pseudo-label files looked up in {labels_dir}")
  if done:
    with open(report_path) as f:
      return path, json.load(f)
  started = time.time()
  if not labeled_already:
    pseudo_label.pseudo_label_pool(config, base_dir, pool, labeled, path)
    parallel.barrier(f"pseudo-labels written to {path}")  # Process 0 wrote; all read it now.
  saved = semi.read_pseudo_labels(path, labeled.num_classes)
  report = pseudo_label.report(saved["pseudo_labels"], saved["keep"], saved.get("true_labels"),
                               labeled.num_classes)
  report["pool_source"] = config.semi.pool_source
  report["pool_draw_on"] = str(saved.get("pool_draw_on", "labels"))
  report["requested_counts"] = pool.requested_counts
  if isinstance(pool, unlabeled.PoolRequest):  # Drawn on predictions: what fell short.
    short = report["shortfall"] = pseudo_label.shortfall(pool, saved["pseudo_labels"])
    if any(short):
      print(f"warning: the base model predicts {sum(1 for s in short if s)} classes for fewer "
            f"images than asked; semi.short_class_policy='take_available' took what there is, "
            f"{sum(short)} images short in all (report.json: shortfall).", flush=True)
  report["file"] = path
  report["sha256"] = io_utils.sha256_file(path)  # The final stage refuses a changed file.
  report["wall_time_s"] = time.time() - started
  pseudo_label.plot_report(os.path.join(labels_dir, workdir_lib.PSEUDO_LABEL_PLOT_FILE), report)
  io_utils.atomic_write_json(report_path, report)
  accuracy = report.get("accuracy")
  print(f"pseudo-labeled {report['num_kept']} of {report['num_pool']} pool images"
        + (f"; pseudo-label accuracy {accuracy:.2f}%" if accuracy is not None else ""),
        flush=True)
  return path, report


# --- decoupled classifier -----------------------------------------------------------------


def run_decouple(config: ml_collections.ConfigDict, workdir: str) -> dict:
  finished = _finished(workdir, config)
  if finished is not None:
    return finished
  d = config.decouple
  if d.stage1_workdir:
    stage1_dir = d.stage1_workdir
    stage1 = workdir_lib.finished_results(stage1_dir, "decouple.stage1_workdir")
  else:
    stage1_dir = workdir_lib.stage_dir(workdir, "stage1")
    print(f"== stage 1: the representation -> {stage1_dir}", flush=True)
    stage1 = run(override(config, **{"decouple.methods": ()}), stage1_dir)
  classifier = decouple.classifier_dir(stage1_dir)
  start = decouple.stage1_checkpoint(config, classifier)
  print(f"second stages start from {start.folder} ({start.note})", flush=True)
  stages, rows = {"stage1": stage1}, {"stage 1": stage1["final"]}
  outputs = functools.cache(lambda: decouple.stage1_outputs(config, start))
  for i, method in enumerate(d.methods, start=1):
    method_dir = workdir_lib.stage_dir(workdir, method)
    print(f"== decoupled classifier {i}/{len(d.methods)}: {decouple.LABELS[method]} on stage "
          f"1's representation -> {method_dir}", flush=True)
    if method in decouple.TRAINED:
      out = train(decouple.stage_config(config, method, start.folder), method_dir)
    else:
      out = decouple.post_hoc(config, method, classifier, start, method_dir, outputs)
    stages[method] = out
    rows[decouple.LABELS[method]] = out["final"]
  return _finish(workdir, config, stages, stages[d.methods[-1]], rows,
                 stage1_checkpoint=start.as_json())


# --- self-supervised pre-training ---------------------------------------------------------


def run_ssp(config: ml_collections.ConfigDict, workdir: str) -> dict:
  if config.model.init_from:
    raise ConfigError("model.init_from and pretrain.method are both set; the pipeline fills "
                      "model.init_from from its own pre-training stage. Unset one.")
  finished = _finished(workdir, config)
  if finished is not None:
    return finished
  method = config.pretrain.method
  pre_dir = workdir_lib.stage_dir(workdir, "pretrain")
  print(f"== stage 1/3: {method} pre-training on the same imbalanced images -> {pre_dir}",
        flush=True)
  if method == "rotation":
    pretrain = train(rotation_config(config), pre_dir)
  else:
    pretrain = _finished(pre_dir, config) or contrastive_stage.pretrain_and_evaluate(
        config, pre_dir, inputs.labeled(config))

  stages = {"pretrain": pretrain}
  rows = {}
  if config.pretrain.probe_epochs:
    probe_dir = workdir_lib.stage_dir(workdir, "probe")
    print(f"== stage 2/3: linear probe of the frozen backbone -> {probe_dir}", flush=True)
    probe = train(probe_config(config, pre_dir), probe_dir)
    stages["probe"] = probe
    rows["linear probe"] = probe["final"]

  final_dir = workdir_lib.stage_dir(workdir, "final")
  final_cfg = override(config, **{"pretrain.method": "none", "model.init_from": pre_dir})
  print(f"== stage 3/3: {config.loss.name} from the pre-trained backbone -> {final_dir}",
        flush=True)
  final = train(final_cfg, final_dir)
  stages["final"] = final
  rows[f"SSP + {config.loss.name}"] = final["final"]
  return _finish(workdir, config, stages, final, rows)


def rotation_config(config) -> ml_collections.ConfigDict:
  """Rotation pre-training: 4-way rotation prediction on the same images, plain CE, the
  pretrain stage's epochs and batch."""
  epochs, batch = inputs.pretrain_epochs_and_batch(config)
  return override(config, **{
      "pretrain.method": "none", "task": "rotation", "model.head": "linear",
      "loss.name": "ce", "train.rule": "none", "train.sampler": "instance",
      "train.num_epochs": epochs, "train.batch_size": batch})


def probe_config(config, pre_dir: str) -> ml_collections.ConfigDict:
  """Linear probe: the pre-trained backbone frozen, a linear head trained with plain CE on the
  same long-tailed labels, no augmentation, cosine schedule; its test accuracy scores the
  representation."""
  return override(config, **{
      "pretrain.method": "none", "model.init_from": pre_dir, "model.freeze_backbone": True,
      "model.head": "linear", "loss.name": "ce", "train.rule": "none",
      "train.sampler": "instance", "augment.name": "none",
      "train.num_epochs": config.pretrain.probe_epochs, "optim.schedule": "cosine",
      "optim.cosine_offset": 0, "optim.warmup_epochs": 0, "optim.lr": 0.1,
      "optim.weight_decay": 0.0})


# --- a grid of methods x seeds x settings ---------------------------------------------------

# Fields a grid's workdir accepts changes of: its lists may grow (new members train, finished
# ones are read back), and the packing of members into programs may change (lower
# max_models_per_program after running out of device memory): a member is its config run
# alone whatever program it trains in.
GRID_FREE_FIELDS = ("grid.methods", "grid.seeds", "grid.settings",
                    "grid.max_models_per_program", "grid.member_map", "grid.devices_per_model")


def run_grid(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains every member of the grid that is not finished yet (members finished by an earlier
  run of a smaller grid are read back) and writes the grid's summary."""
  if os.path.exists(os.path.join(workdir, workdir_lib.CONFIG_FILE)) and \
      not workdir_lib.read_config(workdir).get("grid", {}).get("methods"):
    raise ConfigError(f"workdir {workdir} holds a single run, not a grid; use a new --workdir.")
  if workdir_lib.holds_work(workdir):  # A grid that stopped before saving anything: replace.
    workdir_lib.check_config(workdir, config, ignore=GRID_FREE_FIELDS)
  os.makedirs(workdir, exist_ok=True)
  io_utils.atomic_write_json(os.path.join(workdir, workdir_lib.CONFIG_FILE),
                             workdir_lib.config_json(config))
  g = config.grid
  settings, seeds = tuple(g.settings), tuple(g.seeds)

  def train_all(members):
    return grid.train_members(members, workdir, member_map=g.member_map,
                              max_models=g.max_models_per_program,
                              devices_per_model=g.devices_per_model)

  def members_of(setting, fields_for_seed):
    return [grid.Member(f"{setting}/{m}/seed_{s}",
                        grid.member_config(config, m, s, **fields_for_seed(s)),
                        os.path.join(workdir, setting, m, f"seed_{s}"))
            for m in g.methods for s in seeds]

  labeled = pool = None
  if "semi" in settings:  # A pool that cannot be drawn fails here, before any training.
    labeled, pool = recipe.labeled_and_pool(config)
  members = []
  if "scratch" in settings:
    members += members_of("scratch", lambda s: {})
  if "ssp" in settings:
    pre_dirs = _grid_pretraining(config, workdir, seeds, train_all)
    members += members_of("ssp", lambda s: {"model.init_from": pre_dirs[s]})
  results = train_all(members)  # From scratch and from SSP share programs.
  if "semi" in settings:
    labels = _grid_pseudo_labels(config, workdir, seeds, results, train_all, pool, labeled)
    batch = g.semi_batch_size or config.train.batch_size
    results |= train_all(members_of("semi", lambda s: {"semi.pseudo_labels": labels[s],
                                                       "train.batch_size": batch}))
  title = (f"{recipe.data_title(config)}, "
           f"{config.model.name}, {config.train.num_epochs} epochs")
  text = summary.write(workdir, results, title)
  print(text, flush=True)
  out = {"config": workdir_lib.config_json(config),
         "summary": summary.json_rows(summary.rows(results, "final")),
         "members": {name: {"workdir": os.path.join(*name.split("/")),
                            "status": r.get("status", "ok"),
                            "final_top1_err": r["final"]["top1_err"],
                            "best_top1_err": r["best"]["top1_err"]}
                     for name, r in results.items()}}
  workdir_lib.write_results(workdir, out)
  print(f"summary: {os.path.join(workdir, summary.MARKDOWN_FILE)}", flush=True)
  return out


def _grid_pretraining(config, workdir: str, seeds, train_all) -> dict[int, str]:
  """One pre-training per seed (pretrain.method): rotation runs as one grid program over the
  seeds, MoCo / SimCLR one seed after another. Returns the pre-trained workdir of each seed."""
  method = config.pretrain.method
  dirs = {s: os.path.join(workdir, "pretrain", method, f"seed_{s}") for s in seeds}
  if method == "rotation":
    train_all([grid.Member(f"pretrain/rotation/seed_{s}",
                           rotation_config(grid.member_config(config, "ce", s)), dirs[s])
               for s in seeds])
    return dirs
  for s in seeds:
    cfg = override(grid.member_config(config, "ce", s), **{"pretrain.method": method})
    if _finished(dirs[s], cfg) is None:
      print(f"== {method} pre-training, seed {s} -> {dirs[s]}", flush=True)
      contrastive_stage.pretrain_and_evaluate(cfg, dirs[s], inputs.labeled(cfg))
  return dirs


def _grid_pseudo_labels(config, workdir: str, seeds, results: dict, train_all, pool, labeled
                        ) -> dict[int, str]:
  """One base model (plain CE on D_L) and one pseudo-label file per seed. The scratch CE
  member of a seed is its base model when its config is the base's (same batch)."""
  bases = {s: grid.member_config(config, "ce", s,
                                 **{"train.batch_size": config.semi.base_batch_size})
           for s in seeds}
  base_dirs, to_train = {}, []
  for s in seeds:
    scratch = results.get(f"scratch/ce/seed_{s}")
    if scratch is not None and scratch["config"] == workdir_lib.config_json(bases[s]):
      base_dirs[s] = os.path.join(workdir, "scratch", "ce", f"seed_{s}")
    else:
      base_dirs[s] = os.path.join(workdir, "semi_base", f"seed_{s}")
      to_train.append(grid.Member(f"semi_base/ce/seed_{s}", bases[s], base_dirs[s]))
  if to_train:
    train_all(to_train)
  labels = {}
  for s in seeds:
    labels_dir = os.path.join(workdir, "pseudo_labels", f"seed_{s}")
    print(f"== pseudo-labels, seed {s}: base {base_dirs[s]} -> {labels_dir}", flush=True)
    labels[s], _ = generate_pseudo_labels(bases[s], base_dirs[s], labels_dir, pool, labeled)
  return labels


# --- the table ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pipeline:
  """One way through the stages. `run` takes the first entry of `PIPELINES` whose `applies`
  holds for the config; `describe` and `batches` say, before any work, what it will do and
  which training batches its stages use (run.py --check, the device-count check)."""
  applies: Callable[[ml_collections.ConfigDict], bool]
  run: Callable[[ml_collections.ConfigDict, str], dict]
  describe: Callable[[ml_collections.ConfigDict], str]
  batches: Callable[[ml_collections.ConfigDict], list[TrainingBatch]]


PIPELINES: dict[str, Pipeline] = {
    "decouple": Pipeline(lambda c: bool(c.decouple.methods), run_decouple, _describe_decouple,
                         _decouple_batches),
    "grid": Pipeline(lambda c: bool(c.grid.methods), run_grid, _describe_grid, _grid_batches),
    "semi": Pipeline(lambda c: bool(c.semi.enabled), run_semi,
                     lambda c: "semi-supervised: base -> pseudo_labels -> final", _semi_batches),
    "ssp": Pipeline(lambda c: c.pretrain.method != "none", run_ssp, _describe_ssp,
                    _ssp_batches),
    "supervised": Pipeline(
        lambda c: True, train, lambda c: "supervised: one classifier",
        lambda c: [TrainingBatch("train", "train.batch_size", c.train.batch_size)]),
}
