"""Checks a config before any work starts; each failure names the field and the fix."""

from __future__ import annotations

import os

import ml_collections

from lt_jax import methods, ranges, results, transfer
from lt_jax import workdir as workdir_lib
from lt_jax.config import override
from lt_jax.data import (
    augment,
    datasets,
    image_lists,
    longtail,
    prepare,
    samplers,
    unlabeled,
)
from lt_jax.errors import ConfigError, DataError
from lt_jax.models import CONV_IMPLS, DTYPES, HEADS, MODELS
from lt_jax.pretrain import METHODS as PRETRAIN_METHODS
from lt_jax.pretrain import contrastive
from lt_jax.pretrain.rotation import TASKS
from lt_jax.train import members, objective, optim


def _choice(field: str, value, choices) -> None:
  if value not in choices:
    raise ConfigError(f"{field}={value!r} is unknown; choose one of {tuple(choices)}.")


def validate(config: ml_collections.ConfigDict, check_data: bool = True) -> None:
  """Raises ConfigError (DataError for missing files) naming the field and the fix.

  `check_data` adds what the config a run starts from (pipeline.run) needs: every number finite,
  DRW switching on within the run, and the files and workdirs its fields name present. Stage and
  grid-member configs derived from it are validated again without these.
  """
  ds, tr, op = config.dataset, config.train, config.optim
  # Every numeric field within its range (lt_jax/ranges.py); warnings for the run's own config
  # only, not again for each stage derived from it.
  ranges.check(config, warn=_warn if check_data else None)
  _choice("dataset.name", ds.name, tuple(datasets.DATASETS))
  _choice("dataset.source", ds.source, datasets.SOURCE_KINDS)
  _choice("dataset.imb_type", ds.imb_type, longtail.SUBSET_TYPES)
  if ds.img_max is not None:
    prepare.check_smallest_class(ds, ds.img_max)
  if ds.name == "npz" and not ds.npz_path:
    raise ConfigError("dataset.npz_path is required when dataset.name='npz' (an .npz holding "
                      "x_train, y_train, x_test, y_test).")
  _choice("augment.name", config.augment.name, augment.AUGMENTS)
  _choice("dataset.feed", ds.feed, FEEDS)
  if ds.feed == "host":
    _validate_host_feed(config)

  _choice("model.name", config.model.name, MODELS)
  _choice("model.head", config.model.head, HEADS)
  _choice("model.dtype", config.model.dtype, DTYPES)
  _choice("model.conv_impl", config.model.conv_impl, CONV_IMPLS)
  _choice("loss.name", config.loss.name, objective.LOSSES)

  _choice("train.rule", tr.rule, objective.RULES)
  _choice("train.sampler", tr.sampler, samplers.config_samplers())
  if config.model.head == "lws" and not (config.model.init_from and config.model.init_head):
    raise ConfigError("model.head='lws' scales a trained classifier: it needs model.init_from "
                      "and model.init_head=True (decouple.methods=('lws',) sets both).")
  if objective.RULES[tr.rule].sampler and tr.sampler != "instance":
    raise ConfigError(f"train.rule={tr.rule!r} brings its own sampler but train.sampler="
                      f"{tr.sampler!r}; set train.sampler='instance' or train.rule='none'.")
  _choice("train.select_on", tr.select_on, results.SELECT_ON)
  if not datasets.get(ds.name).host_fed:
    prepare.check_validation_source(ds, own_val=results.has_own_val(config))
  if tr.select_on == "val" and ds.val_per_class == 0 and not results.has_own_val(config):
    raise ConfigError("train.select_on='val' needs a validation split: set "
                      "dataset.val_per_class > 0 (or select_on='auto').")

  _choice("optim.schedule", op.schedule, optim.SCHEDULES)
  if len(op.decay_epochs) != len(op.decay_factors):
    raise ConfigError(f"optim.decay_epochs {tuple(op.decay_epochs)} and optim.decay_factors "
                      f"{tuple(op.decay_factors)} must have the same length.")
  epochs = tuple(op.decay_epochs)
  if list(epochs) != sorted(set(epochs)):
    raise ConfigError(f"optim.decay_epochs={epochs} must be increasing whole epochs >= 0, "
                      "e.g. (160, 180).")

  _choice("task", config.task, TASKS)
  _validate_semi(config)
  _validate_pretrain(config)
  _validate_grid(config)
  _validate_decouple(config)
  if datasets.get(ds.name).host_fed:
    _validate_list_dataset(config)

  if check_data:
    _check_drw(config)
    _warn_if_unusual(config)
    if datasets.get(ds.name).host_fed:
      _check_lists_present(ds)
    else:
      datasets.check_available(ds.name, ds.data_dir, ds.source, **prepare.source_options(ds))
    _check_workdir_fields(config)


FEEDS = ("auto", "host")


def _validate_host_feed(config) -> None:
  """dataset.feed='host' reads an image folder's files a batch at a time."""
  ds = config.dataset
  if ds.name not in datasets.feedable():
    kind = ("is always fed from the host; leave dataset.feed='auto'"
            if datasets.get(ds.name).host_fed else "is read into arrays only")
    raise ConfigError(f"dataset.feed='host': dataset.name={ds.name!r} {kind} (dataset.feed="
                      f"'host' serves {', '.join(datasets.feedable())}).")


def _validate_list_dataset(config) -> None:
  """imagenet_lt / inat18 / image_lists stream from the host (data/image_pipeline.py): its
  lists, its orders, its transforms and its pools."""
  ds, tr, name = config.dataset, config.train, config.dataset.name
  for field, fix in (("lists_dir", "the folder holding the split lists (ImageNet_LT_train.txt "
                                   "...; docs/DATA.md says where to get them)"),
                     ("data_dir", "the image root the lists' paths are relative to")):
    if not ds[field]:
      raise ConfigError(f"dataset.{field} is required for dataset.name={name!r}: {fix}.")
  if ds.source != "files":
    raise ConfigError(f"dataset.source={ds.source!r}: dataset.name={name!r} reads image "
                      "files through its split lists; set dataset.source='files'.")
  sampler = objective.sampler_for(tr.rule, tr.sampler)
  if samplers.SAMPLERS[sampler].host is None:
    raise ConfigError(f"train.sampler={sampler!r} has no host pipeline for "
                      f"dataset.name={name!r}; choose one of {samplers.host_samplers()}.")
  if ds.val_per_class:
    raise ConfigError(f"dataset.val_per_class={ds.val_per_class}: dataset.name={name!r} has "
                      "its own validation list; set dataset.val_per_class=0.")
  if ds.resize_size < ds.image_size:
    raise ConfigError(f"dataset.resize_size={ds.resize_size} must be at least "
                      f"dataset.image_size={ds.image_size} (evaluation resizes, then crops).")
  if ds.num_workers < 0:
    raise ConfigError(f"dataset.num_workers={ds.num_workers} must be >= 0 (0: in-process).")
  semi = config.semi
  if semi.enabled or semi.pseudo_labels:
    if not unlabeled.POOLS[semi.pool_source].host_fed:
      raise ConfigError(f"semi.pool_source={semi.pool_source!r} is an array pool; the "
                        f"host-fed dataset.name={name!r} draws from image files: choose one of "
                        f"{unlabeled.host_fed_pools()}.")


def _check_lists_present(ds) -> None:
  """The split lists and the image root exist (their lines and images are checked when the
  stage reads them, before training)."""
  spec = datasets.get(ds.name)
  for split in image_lists.present_splits(ds.lists_dir, spec):
    image_lists.list_path(ds.lists_dir, spec, split)
  root = os.path.expanduser(ds.data_dir)
  if not os.path.isdir(root):
    raise DataError(f"dataset.data_dir={ds.data_dir!r} does not exist; it must be the image "
                    f"folder that the paths in the {ds.name} lists are relative to.")


def _check_drw(config) -> None:
  """DRW at or past the last epoch never switches to class-balanced weights: plain CE. A run
  stops; a grid's DRW members are only warned about (they share the schedule of the rest)."""
  tr = config.train  # train.drw_epoch is a whole epoch >= 0 (lt_jax/ranges.py).
  drw = [m for m in config.grid.methods if methods.METHODS[m].get("train.rule") == "drw"]
  if tr.drw_epoch < tr.num_epochs or not (tr.rule == "drw" or drw):
    return
  why = f"grid.methods has {', '.join(drw)}" if drw else "train.rule='drw'"
  message = (f"{why} but train.drw_epoch={tr.drw_epoch} is not below train.num_epochs="
             f"{tr.num_epochs}, so DRW would never switch to class-balanced weights; set "
             f"train.drw_epoch below {tr.num_epochs} (the reference switches at 80% of the "
             f"epochs: {int(0.8 * tr.num_epochs)}).")
  if not drw:
    raise ConfigError(message)
  _warn(message)


def _warn_if_unusual(config) -> None:
  """Legal settings that make a run other than its author likely meant: one line each."""
  tr, op, loss = config.train, config.optim, config.loss
  late = [e for e in op.decay_epochs if e >= tr.num_epochs]
  if op.schedule == "step" and late:
    _warn(f"optim.decay_epochs={tuple(op.decay_epochs)}: the decay at epoch "
          f"{', '.join(map(str, late))} is not before train.num_epochs={tr.num_epochs}, so it "
          "never happens; scale the schedule with the run (the reference decays at 80% and 90% "
          "of its epochs).")
  if op.warmup_epochs > tr.num_epochs:
    _warn(f"optim.warmup_epochs={op.warmup_epochs} is longer than train.num_epochs="
          f"{tr.num_epochs}: the run ends before its learning rate reaches optim.lr.")
  head = objective.LOSSES[loss.name].head
  if head and config.model.head != head:
    _warn(f"loss.name={loss.name!r} with model.head={config.model.head!r}: the reference pairs "
          f"this loss with the {head} head, whose logits its settings are made for; set "
          f"model.head={head!r} (the methods of lt_jax/methods.py that use it do).")


def _warn(message: str) -> None:
  """One line for a legal but unusual setting; the run goes on."""
  print(f"warning: {message}", flush=True)


def _check_workdir_fields(config) -> None:
  """Fields naming another run's folder: missing ones fail here, before the data loads."""
  if config.model.init_from:
    transfer.check_init_from(config)
  if config.semi.enabled and config.semi.base_workdir:
    workdir_lib.finished_results(os.path.expanduser(config.semi.base_workdir),
                                 "semi.base_workdir")
  if config.decouple.methods and config.decouple.stage1_workdir:
    workdir_lib.finished_results(os.path.expanduser(config.decouple.stage1_workdir),
                                 "decouple.stage1_workdir")


def _validate_semi(config) -> None:
  semi = config.semi
  if not (semi.enabled or semi.pseudo_labels):
    return
  _choice("semi.pool_source", semi.pool_source, unlabeled.POOLS)
  _choice("semi.pool_draw_on", semi.pool_draw_on, unlabeled.DRAW_RULES)
  _choice("semi.short_class_policy", semi.short_class_policy, unlabeled.SHORT_CLASS_POLICIES)
  unlabeled.check_direction(semi.unlabeled_direction, semi.unlabeled_ratio)
  source, pool = semi.pool_source, unlabeled.POOLS[semi.pool_source]
  if semi.pool_draw_on == "labels" and not pool.labeled:
    raise ConfigError(f"semi.pool_draw_on='labels' but semi.pool_source={source!r} "
                      "has no labels; set semi.pool_draw_on='predictions' (or 'auto').")
  if pool.dataset and config.dataset.name != pool.dataset[0]:
    raise ConfigError(f"semi.pool_source={source!r} needs dataset.name={pool.dataset[0]!r}"
                      f"{pool.dataset[1]}.")
  if pool.field and not ranges.lookup(config, pool.field[0]):
    raise ConfigError(f"semi.pool_source={source!r} needs {pool.field[0]}, {pool.field[1]}.")
  if pool.check is not None:
    pool.check(config)
  _choice("semi.base_checkpoint", semi.base_checkpoint, ("last", "best"))
  sampler = objective.sampler_for(config.train.rule, config.train.sampler)
  if semi.unlabeled_batch_fraction and sampler != "instance":
    raise ConfigError(f"semi.unlabeled_batch_fraction={semi.unlabeled_batch_fraction} draws "
                      f"its own mixed batches, so the final stage cannot also use the sampler "
                      f"{sampler!r}; leave the fraction unset, or use train.sampler='instance' "
                      "and train.rule other than 'resample'.")
  if semi.enabled and config.pretrain.method != "none":
    raise ConfigError("semi.enabled and pretrain.method are both set; run one pipeline at a "
                      "time (pass the SSP run's workdir as model.init_from to combine them).")


def _validate_pretrain(config) -> None:
  pre = config.pretrain
  _choice("pretrain.method", pre.method, PRETRAIN_METHODS)
  if pre.method == "none":
    return
  if config.model.init_from:
    raise ConfigError("model.init_from and pretrain.method are both set; the pipeline fills "
                      "model.init_from from its own pre-training stage. Unset one.")
  if pre.method in ("moco", "simclr"):
    scale = tuple(pre.crop_scale)
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
      raise ConfigError(f"pretrain.crop_scale={scale} must be (low, high) with 0 < low <= high "
                        "<= 1: the area range of the random resized crop, e.g. (0.2, 1.0).")
  if pre.method == "moco":  # Both need the global batch, known here.
    batch = pre.batch_size or config.train.batch_size
    contrastive.check_queue_size(pre.queue_size, batch)
    contrastive.resolve_bn_groups(batch, pre.bn_groups)



GRID_SETTINGS = ("scratch", "ssp", "semi")


def _validate_grid(config) -> None:
  g = config.grid
  if not g.methods:
    return
  for name in g.methods:
    methods.check_method(name)
  _unique("grid.methods", g.methods)
  if not g.seeds:
    raise ConfigError("grid.seeds is empty; give the seeds to train, e.g. (0, 1, 2).")
  _unique("grid.seeds", g.seeds)
  if not g.settings:
    raise ConfigError(f"grid.settings is empty; choose from {GRID_SETTINGS}.")
  for name in g.settings:
    _choice("grid.settings", name, GRID_SETTINGS)
  _unique("grid.settings", g.settings)
  members.check_member_map(g.member_map, split=g.devices_per_model > 0)
  if config.semi.enabled:
    raise ConfigError("semi.enabled is set in a grid config; add 'semi' to grid.settings "
                      "instead (the semi.* fields describe its pool) and unset semi.enabled.")
  if "ssp" in g.settings and config.pretrain.method == "none":
    raise ConfigError("grid.settings has 'ssp' but pretrain.method='none'; set "
                      "pretrain.method to rotation, moco or simclr.")
  if "semi" in g.settings:
    _validate_semi(_with_semi_enabled(config))
    for name in g.methods:  # Each member's final stage, before any of them trains.
      _validate_semi(_with_semi_enabled(methods.apply_method(config, name)))


DECOUPLE_METHODS = ("crt", "lws", "tau_norm", "logit_adjust")


def _validate_decouple(config) -> None:
  d = config.decouple
  if not d.methods:
    return
  for name in d.methods:
    _choice("decouple.methods", name, DECOUPLE_METHODS)
  _unique("decouple.methods", d.methods)
  if config.grid.methods:
    raise ConfigError("grid.methods and decouple.methods are both set; run the grid, then "
                      "decouple one of its members (decouple.stage1_workdir=<member workdir>).")
  if config.model.head != "linear" and {"lws", "tau_norm"} & set(d.methods):
    raise ConfigError(f"decouple.methods {tuple(d.methods)}: LWS and tau-norm act on a linear "
                      f"classifier but stage 1 has model.head={config.model.head!r}; use crt "
                      "or logit_adjust, or a linear stage 1.")
  _choice("decouple.stage1_checkpoint", d.stage1_checkpoint, ("auto", "best", "last"))
  _choice("decouple.tune_on", d.tune_on, ("val", "test"))
  if {"tau_norm", "logit_adjust"} & set(d.methods):
    if not d.taus:
      raise ConfigError("decouple.taus is empty; give the taus to score, e.g. (0.0, 0.5, 1.0).")
    if d.tune_on == "val":
      _check_validation_split(config)


def _check_validation_split(config) -> None:
  """decouple.tune_on='val' chooses tau on a split apart from test: the data's own
  (`results.has_own_val`: ImageNet-LT's validation list, an image folder's val/; iNaturalist
  2018 has none, its val list is the test set), or the dataset.val_per_class images per class
  held out of a device-resident training set."""
  ds = config.dataset
  if ds.val_per_class or results.has_own_val(config):
    return
  flagged = "decouple.tune_on='test' (optimistic, flagged in results.json)"
  if datasets.get(ds.name).host_fed:
    raise ConfigError(f"decouple.tune_on='val' needs a validation split to choose tau, but "
                      f"dataset.name={ds.name!r} has none apart from its test split; "
                      f"set {flagged}.")
  raise ConfigError("decouple.tune_on='val' needs a validation split to choose tau: set "
                    f"dataset.val_per_class > 0, or {flagged}.")


def _unique(field: str, values) -> None:
  repeated = sorted({str(v) for v in values if list(values).count(v) > 1})
  if repeated:
    raise ConfigError(f"{field} repeats {', '.join(repeated)}; list each once.")


def _with_semi_enabled(config):
  return override(config, **{"semi.enabled": True, "pretrain.method": "none"})


def divergence_suspects(config: ml_collections.ConfigDict) -> str:
  """The settings that most often make a run diverge, each with the value it had: what the
  one-line report of a divergence names besides the step and the last good checkpoint."""
  op = config.optim
  out = [f"optim.lr={op.lr:g}", f"optim.warmup_epochs={op.warmup_epochs}"]
  for field in (objective.LOSSES[config.loss.name].knobs
                + objective.RULES[config.train.rule].knobs):
    section, name = field.split(".")
    out.append(f"{field}={config[section][name]:g}")
  if config.model.dtype != "float32":
    out.append(f"model.dtype={config.model.dtype!r}")
  if config.pretrain.method != "none":
    out.append(f"pretrain.lr={config.pretrain.lr:g}")
  return ", ".join(out)
