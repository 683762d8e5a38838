"""One command, every stage: `run(config, workdir)` is what run.py calls.

- plain config: one supervised run in `workdir`.
- `semi.enabled`: workdir/base (the base model on D_L, or `semi.base_workdir`) ->
  workdir/pseudo_labels (labels for the pool) -> workdir/final (D_L + pseudo-labeled D_U).
- `pretrain.method`: workdir/pretrain (rotation, MoCo v2 or SimCLR on the same imbalanced
  images) -> workdir/probe (linear probe of the frozen backbone) -> workdir/final (the config's
  method, initialised from the pre-trained backbone).

Each stage lives in its own folder with its own config.json: a finished stage is skipped (its
results are read back), a stage that was cut off resumes from its last checkpoint, and the
root results.json gathers `stages.<name>` once the last stage is done.
"""

from __future__ import annotations

import copy
import json
import os

import ml_collections

from lt_jax import classify, io_utils, pseudo_label, semi
from lt_jax import metrics as lt_metrics
from lt_jax import workdir as workdir_lib
from lt_jax.data import prepare as prepare_lib
from lt_jax.data import unlabeled
from lt_jax.errors import ConfigError
from lt_jax.pretrain import contrastive_stage, rotation
from lt_jax.validate import validate


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  validate(config)
  if config.semi.enabled:
    return run_semi(config, workdir)
  if config.pretrain.method != "none":
    return run_ssp(config, workdir)
  return train(config, workdir)


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


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """One classifier stage in `workdir`: a finished one is read back (its data not even
  loaded), else it trains or resumes."""
  finished = _finished(workdir, config)
  if finished is not None:
    return finished
  return classify.train_and_evaluate(config, workdir, training_data(config))


def _finished(workdir: str, config: ml_collections.ConfigDict) -> dict | None:
  finished = workdir_lib.guard(workdir, config)
  if finished is not None:
    print(f"{workdir} already holds a finished run; not retraining.", flush=True)
  return finished


def stage_config(config: ml_collections.ConfigDict, **fields) -> ml_collections.ConfigDict:
  """A copy of `config` with dotted fields replaced:
  stage_config(c, **{"train.batch_size": 128})."""
  out = ml_collections.ConfigDict(copy.deepcopy(config.to_dict()))
  for dotted, value in fields.items():
    *parents, leaf = dotted.split(".")
    node = out
    for name in parents:
      node = node[name]
    node[leaf] = value
  return out


def _finish(workdir: str, config, stages: dict, final: dict, rows: dict) -> dict:
  out = {"config": workdir_lib.config_json(config), "stages": stages,
         "class_counts": final["class_counts"], "final": final["final"], "best": final["best"],
         "selected_on": final["selected_on"],
         "wall_time_s": sum(s.get("wall_time_s") or 0.0 for s in stages.values()),
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
  # would fit, before any training. It is kept for the pseudo-labeling stage (the rest of the
  # source, SVHN's extra split included, is released).
  drawn = semi.draw_labeled(config)
  pool, labeled = semi.draw_pool(config, drawn), drawn.data
  del drawn
  base_dir = config.semi.base_workdir or workdir_lib.stage_dir(workdir, "base")
  if config.semi.base_workdir:
    base = workdir_lib.finished_results(base_dir, "semi.base_workdir")
  else:
    base_cfg = stage_config(config, **{"semi.enabled": False,
                                       "train.batch_size": config.semi.base_batch_size})
    print(f"== stage 1/3: base model on the labeled data -> {base_dir}", flush=True)
    base = train(base_cfg, base_dir)

  labels_dir = workdir_lib.stage_dir(workdir, "pseudo_labels")
  print(f"== stage 2/3: pseudo-labels for the unlabeled pool -> {labels_dir}", flush=True)
  labels_path, report = generate_pseudo_labels(config, base_dir, labels_dir, pool, labeled)

  final_dir = workdir_lib.stage_dir(workdir, "final")
  final_cfg = stage_config(config, **{"semi.enabled": False,
                                      "semi.pseudo_labels": labels_path})
  print(f"== stage 3/3: final model on labeled + pseudo-labeled data -> {final_dir}",
        flush=True)
  final = train(final_cfg, final_dir)
  rows = {"base (D_L only)": base["final"], "semi (D_L + pseudo D_U)": final["final"]}
  return _finish(workdir, config, {"base": base, "pseudo_labels": report, "final": final},
                 final, rows)


def generate_pseudo_labels(config, base_dir: str, labels_dir: str,
                           pool: unlabeled.Pool | unlabeled.PoolRequest,
                           labeled: prepare_lib.LongTailData) -> tuple[str, dict]:
  """Labels `pool` (this config's, see `semi.draw_pool`) with the frozen base model unless this
  stage already did (the .npz is written atomically, so its presence means it is complete).
  `labeled` is the labeled draw: its normalisation and number of classes."""
  path = os.path.join(labels_dir, workdir_lib.PSEUDO_LABELS_FILE)
  report_path = os.path.join(labels_dir, workdir_lib.PSEUDO_LABEL_REPORT_FILE)
  if os.path.exists(report_path):
    with open(report_path) as f:
      return path, json.load(f)
  if not os.path.exists(path):
    semi.pseudo_label_pool(config, base_dir, pool, labeled, path)
  saved = pseudo_label.read_pseudo_labels(path)
  report = pseudo_label.report(saved["pseudo_labels"], saved["keep"], saved.get("true_labels"),
                               labeled.num_classes)
  report["pool_source"] = config.semi.pool_source
  report["pool_draw_on"] = str(saved.get("pool_draw_on", "labels"))
  report["requested_counts"] = pool.requested_counts
  report["file"] = path
  pseudo_label.plot_report(os.path.join(labels_dir, workdir_lib.PSEUDO_LABEL_PLOT_FILE), report)
  io_utils.atomic_write_json(report_path, report)
  accuracy = report.get("accuracy")
  print(f"pseudo-labeled {report['num_kept']} of {report['num_pool']} pool images"
        + (f"; pseudo-label accuracy {accuracy:.2f}%" if accuracy is not None else ""),
        flush=True)
  return path, report


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
    epochs, batch = contrastive_stage.epochs_and_batch(config)
    pre_cfg = stage_config(config, **{
        "pretrain.method": "none", "task": "rotation", "model.head": "linear",
        "loss.name": "ce", "train.rule": "none", "train.sampler": "instance",
        "train.num_epochs": epochs, "train.batch_size": batch})
    pretrain = train(pre_cfg, pre_dir)
  else:
    pretrain = _finished(pre_dir, config) or contrastive_stage.pretrain_and_evaluate(
        config, pre_dir, prepare_lib.prepare(config.dataset))

  stages = {"pretrain": pretrain}
  rows = {}
  if config.pretrain.probe_epochs:
    probe_dir = workdir_lib.stage_dir(workdir, "probe")
    print(f"== stage 2/3: linear probe of the frozen backbone -> {probe_dir}", flush=True)
    probe = train(probe_config(config, pre_dir), probe_dir)
    stages["probe"] = probe
    rows["linear probe"] = probe["final"]

  final_dir = workdir_lib.stage_dir(workdir, "final")
  final_cfg = stage_config(config, **{"pretrain.method": "none", "model.init_from": pre_dir})
  print(f"== stage 3/3: {config.loss.name} from the pre-trained backbone -> {final_dir}",
        flush=True)
  final = train(final_cfg, final_dir)
  stages["final"] = final
  rows[f"SSP + {config.loss.name}"] = final["final"]
  return _finish(workdir, config, stages, final, rows)


def probe_config(config, pre_dir: str) -> ml_collections.ConfigDict:
  """Linear probe: the pre-trained backbone frozen, a linear head trained with plain CE on the
  same long-tailed labels, no augmentation, cosine schedule; its test accuracy scores the
  representation."""
  return stage_config(config, **{
      "pretrain.method": "none", "model.init_from": pre_dir, "model.freeze_backbone": True,
      "model.head": "linear", "loss.name": "ce", "train.rule": "none",
      "train.sampler": "instance", "augment.name": "none",
      "train.num_epochs": config.pretrain.probe_epochs, "optim.schedule": "cosine",
      "optim.warmup_epochs": 0, "optim.lr": 0.1, "optim.weight_decay": 0.0})
