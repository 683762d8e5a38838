"""Decoupled classifiers (Kang et al., ICLR 2020): keep stage 1's representation, change only
the classifier.

Stage 1 is any finished classifier run (plain, SSP or semi-supervised). Its backbone stays as
it is; what follows re-balances the classifier alone:

- crt: a new linear classifier trained with class-aware sampling (the reference's
  ClassAwareSampler, `train.samples_per_class` images per class visit), cosine schedule, plain
  CE. The backbone is frozen and, by default, so are its BatchNorm statistics; the reference
  keeps its backbone in train mode, so its statistics follow the re-balanced batches
  (`decouple.update_bn_stats=True` reproduces that).
- lws: stage 1's linear classifier kept, one learned scale per class (same sampling).
- tau_norm: logits_j = f . w_j / ||w_j||^tau, no bias. tau = 0 is stage 1's classifier without
  its bias; tau = 1 scores every class by a unit-norm weight.
- logit_adjust: post-hoc logit adjustment (Menon et al., ICLR 2021), logits_j - tau log pi_j,
  with pi stage 1's training class prior.

The two post-hoc methods need no training: stage 1's logits and features of the evaluation
splits are computed once (from the device-resident arrays, or from the host-fed evaluation
batches of ImageNet-LT and iNaturalist 2018), every tau in `decouple.taus` is scored, and the
tau with the best top-1 accuracy on `decouple.tune_on` (the balanced validation split; the test
split only when asked, and then flagged) is reported with the whole curve.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from lt_jax import checkpoint, inputs, io_utils, losses, predict, results  # noqa: E402
from lt_jax import metrics as lt_metrics  # noqa: E402
from lt_jax import workdir as workdir_lib  # noqa: E402
from lt_jax.config import override  # noqa: E402
from lt_jax.errors import DataError  # noqa: E402

TRAINED = ("crt", "lws")
POST_HOC = ("tau_norm", "logit_adjust")
LABELS = {"crt": "cRT", "lws": "LWS", "tau_norm": "tau-norm", "logit_adjust": "post-hoc LA"}
CURVE_PLOT_FILE = "tau_curve.png"


def classifier_dir(stage1_dir: str) -> str:
  """The workdir holding stage 1's classifier: its `final` stage for a pipeline (SSP or
  semi-supervised), else the run itself."""
  final = workdir_lib.stage_dir(stage1_dir, "final")
  if os.path.isdir(workdir_lib.checkpoint_dir(final)):
    return final
  return stage1_dir


@dataclasses.dataclass(frozen=True)
class Stage1Checkpoint:
  """The stage-1 checkpoint a second stage starts from, and why that one."""
  which: str  # best | last
  folder: str  # <stage-1 classifier>/checkpoints/<which>
  note: str

  def as_json(self) -> dict:
    return {"which": self.which, "folder": self.folder, "note": self.note}


def stage1_checkpoint(config: ml_collections.ConfigDict, classifier: str) -> Stage1Checkpoint:
  """Which checkpoint of stage 1's classifier cRT, LWS, tau-norm and post-hoc LA start from.

  The references start from the best-on-validation weights: classifier-balancing (22370c6)
  `run_networks.py` `load_model` reads `state_dict_best`, and so does its `tau_norm.py`.
  decouple.stage1_checkpoint='auto' does the same where stage 1 chose its best on a
  validation split. Where there is none (iNaturalist 2018, whose validation list is its test
  set, or dataset.val_per_class 0) that best was chosen on test, so 'auto' takes the last.
  """
  choice = config.decouple.stage1_checkpoint
  selected_on = (workdir_lib.read_results(classifier) or {}).get("selected_on")
  best = workdir_lib.checkpoint_dir(classifier, "best")
  has_best = checkpoint.latest_step(best) is not None
  if choice == "auto":
    if selected_on == "val" and has_best:
      choice, note = "best", "stage 1's best epoch on the validation split, as the references"
    elif selected_on == "test":
      choice, note = "last", ("stage 1's last epoch: stage 1 selected on 'test' (it has no "
                              "validation split), so its best would leak the test set")
    else:
      choice, note = "last", f"stage 1's last epoch: stage 1 selected on {selected_on!r}"
  elif choice == "best" and not has_best:
    raise DataError(f"decouple.stage1_checkpoint='best' but {classifier} kept no best "
                    "checkpoint (it selected on the last epoch); set "
                    "decouple.stage1_checkpoint='last' or 'auto'.")
  else:
    note = f"set by decouple.stage1_checkpoint={choice!r}" + (
        "; stage 1 chose its best on test, so results from it are optimistic"
        if choice == "best" and selected_on == "test" else "")
  folder = workdir_lib.checkpoint_dir(classifier, choice)
  workdir_lib.check_checkpoint(folder)  # Before any second stage makes a folder.
  return Stage1Checkpoint(choice, folder, note)


def stage_config(config: ml_collections.ConfigDict, method: str, stage1_checkpoint_dir: str
                 ) -> ml_collections.ConfigDict:
  """The classifier run that cRT or LWS is: stage 1's backbone (from the checkpoint folder
  `stage1_checkpoint_dir`) frozen, class-aware batches of the labeled training set, the
  decouple.* schedule (LWS: decouple.lws_num_epochs), plain CE."""
  d = config.decouple
  epochs = d.lws_num_epochs if method == "lws" else d.num_epochs
  return override(config, **{
      "decouple.methods": (), "decouple.stage1_workdir": None, "pretrain.method": "none",
      "semi.enabled": False, "model.init_from": stage1_checkpoint_dir,
      "model.freeze_backbone": True, "model.frozen_bn_updates": bool(d.update_bn_stats),
      "model.head": "lws" if method == "lws" else "linear", "model.init_head": method == "lws",
      "loss.name": "ce", "train.rule": "none", "train.sampler": "class_aware",
      "train.num_epochs": epochs, "train.batch_size": d.batch_size,
      "train.eval_every_epochs": min(config.train.eval_every_epochs, epochs),
      "train.checkpoint_every_epochs": min(config.train.checkpoint_every_epochs, epochs),
      "optim.schedule": "cosine", "optim.cosine_offset": 1, "optim.warmup_epochs": 0,
      "optim.lr": d.lr,
      "optim.momentum": d.momentum, "optim.weight_decay": d.weight_decay})


@jax.jit
def tau_norm_logits(features, kernel, tau) -> jax.Array:
  """features @ (w_j / ||w_j||^tau) for each class column w_j of `kernel` [width, classes].
  Jitted: on the accelerator, where iNaturalist's 24,426 x 2,048 x 8,142 product per tau
  takes milliseconds."""
  norms = jnp.linalg.norm(kernel, axis=0, keepdims=True)
  return features @ (kernel / jnp.power(jnp.maximum(norms, 1e-12), tau))


def adjusted_logits(logits, class_counts, tau) -> jax.Array:
  """logits - tau log(prior), the prior being the training class frequencies (an empty class
  counts as the rarest present one, so it is boosted most but stays finite; the shared
  normalisation shifts every class alike and changes no prediction)."""
  counts = np.asarray(class_counts)
  prior = losses.log_priors(np.maximum(counts, counts[counts > 0].min()))
  return jnp.asarray(logits, jnp.float32) - tau * prior


_hits = jax.jit(lt_metrics.per_class_hits, static_argnames="num_classes")
_split_confusion = jax.jit(lt_metrics.split_confusion, static_argnames="num_classes")


@dataclasses.dataclass(frozen=True)
class Stage1Outputs:
  """Stage 1 on its evaluation splits: what the post-hoc classifiers re-score for every tau
  without running the model again, and the facts their results report."""

  outputs: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (logits, features)
  labels: dict[str, np.ndarray]
  kernel: np.ndarray  # Stage 1's linear classifier [width, classes].
  class_counts: list[int]  # The labeled training set's.
  report_counts: list[int]  # What Many / Medium / Few group by.
  title: str  # The dataset, for plot titles.
  # None: the test confusion matrices go into results.json; else the file beside it that
  # keeps them instead (1,000 or 8,142 classes square for the list datasets).
  confusion_file: str | None = None

  @property
  def num_classes(self) -> int:
    return len(self.class_counts)


def stage1_outputs(config: ml_collections.ConfigDict, start: Stage1Checkpoint) -> Stage1Outputs:
  """Stage 1's logits and features of each evaluation split of the labeled set, computed
  once, whichever input (device-resident arrays, host-decoded lists) it lives in."""
  frozen = predict.load_frozen(start.folder)
  inp = inputs.labeled(config)
  predictor = predict.Predictor.of(frozen, inp.mean, inp.std,
                                   batch_size=config.train.eval_batch_size)
  outs = {name: predictor.outputs(frozen.variables, split,
                                  log=lambda line: print(line, flush=True))
          for name, split in inp.eval_splits(config, predictor).items()}
  return Stage1Outputs(
      outputs={name: (out.logits, out.features) for name, out in outs.items()},
      labels={name: out.labels for name, out in outs.items()}, kernel=_kernel(frozen),
      class_counts=list(inp.facts.class_counts), report_counts=list(inp.facts.report_counts),
      title=inp.title, confusion_file=inp.confusion_file)


def _kernel(frozen: predict.FrozenModel) -> np.ndarray:
  return np.asarray(frozen.variables["params"]["head"]["kernel"], np.float32)


def post_hoc(config: ml_collections.ConfigDict, method: str, stage1_classifier: str,
             start: Stage1Checkpoint, workdir: str, outputs: Callable[[], Stage1Outputs]
             ) -> dict:
  """tau-norm or post-hoc logit adjustment of stage 1's classifier (the weights of `start`);
  results.json of the chosen tau, the whole curve and its plot. A finished workdir is read
  back without calling `outputs` (stage 1's outputs, shared by the methods of one
  pipeline)."""
  d = config.decouple
  stage_cfg = override(config, **{"decouple.methods": (method,)})
  finished = workdir_lib.guard(workdir, stage_cfg)
  if finished is not None:
    return finished
  started = time.time()
  s1 = outputs()
  stage1 = workdir_lib.read_results(stage1_classifier) or {}
  train_counts = stage1.get("class_counts", s1.class_counts)

  # On the default device (an accelerator where there is one): stage 1's outputs once, then
  # every tau's scores and counts there; only per-class counts come back.
  on_device = {name: (jnp.asarray(logits, jnp.float32), jnp.asarray(features, jnp.float32),
                      jnp.asarray(s1.labels[name], jnp.int32))
               for name, (logits, features) in s1.outputs.items()}
  kernel = jnp.asarray(s1.kernel, jnp.float32)

  def scores(name: str, tau: float) -> tuple[jax.Array, jax.Array]:
    logits, features, labels = on_device[name]
    tau = jnp.float32(tau)
    return (tau_norm_logits(features, kernel, tau) if method == "tau_norm"
            else adjusted_logits(logits, train_counts, tau)), labels

  def rescore(name: str, tau: float) -> dict:
    hits = jax.device_get(_hits(*scores(name, tau), num_classes=s1.num_classes))
    return lt_metrics.summarize_hits(hits["correct"], hits["count"], hits["top5"],
                                     s1.report_counts)

  def test_result(tau: float) -> tuple[dict, np.ndarray]:
    """The test summary at `tau` (the confusion matrix inside it unless it goes to a file of
    its own) and the matrix."""
    counts = jax.device_get(_split_confusion(*scores("test", tau), num_classes=s1.num_classes))
    summary = lt_metrics.summarize(counts["confusion"], counts["top5_correct"],
                                   s1.report_counts, with_confusion=not s1.confusion_file)
    return summary, np.asarray(counts["confusion"], np.int32)

  taus = [float(t) for t in d.taus]
  curve = [{"tau": t} | {f"{name}_{k}": s[k] for name in s1.outputs
                         for s in [rescore(name, t)] for k in ("top1_acc", "balanced_acc")}
           for t in taus]
  tuned = [row[f"{d.tune_on}_top1_acc"] for row in curve]
  tau = taus[int(np.argmax(tuned))]  # Ties: the smallest tau.
  chosen, chosen_matrix = test_result(tau)
  # tau 0: stage 1's logits (tau-norm: without the bias).
  untouched, untouched_matrix = test_result(0.0)
  if s1.confusion_file:  # Thousands of classes: the matrices beside results.json.
    io_utils.atomic_write(os.path.join(workdir, s1.confusion_file), lambda tmp: np.savez_compressed(
        tmp, test=chosen_matrix, test_tau_0=untouched_matrix))
  out = {
      "config": workdir_lib.config_json(stage_cfg),
      "method": method,
      "stage1": stage1_classifier,
      "stage1_checkpoint": start.as_json(),
      "tau": tau,
      "tuned_on": d.tune_on,
      "tuning_note": ("tau chosen on the test split: the reported accuracy is optimistic"
                      if d.tune_on == "test" else None),
      "curve": curve,
      "class_counts": s1.class_counts,
      # logit_adjust's prior: stage 1's training counts (pseudo-labels included after a
      # semi-supervised stage 1), which can differ from the labeled class_counts.
      "prior_counts": [int(c) for c in train_counts],
      "group_counts": s1.report_counts,
      "final": dict(chosen, tau=tau),
      "best": dict(chosen, tau=tau),
      "tau_0": untouched,
      "selected_on": d.tune_on,
      "wall_time_s": time.time() - started,
  }
  _plot_curve(os.path.join(workdir, CURVE_PLOT_FILE), curve, list(s1.outputs), tau,
              f"{LABELS[method]} of stage 1 ({os.path.basename(stage1_classifier)})")
  results.plot_per_class_accuracy(
      os.path.join(workdir, results.PLOT_FILE), s1.report_counts,
      {"stage 1 (tau 0)": untouched, f"{LABELS[method]}, tau {tau:g}": chosen},
      title=f"{s1.title}: {LABELS[method]}")
  workdir_lib.write_results(workdir, out)
  print(f"{LABELS[method]}: tau {tau:g} (best {d.tune_on} top-1 of {len(taus)} taus); test "
        f"top-1 {chosen['top1_acc']:.2f}% against {untouched['top1_acc']:.2f}% at tau 0",
        flush=True)
  return out


def _plot_curve(path: str, curve: list[dict], splits: list[str], tau: float, title: str
                ) -> None:
  fig, ax = plt.subplots(figsize=(6.4, 4.0))
  taus = [row["tau"] for row in curve]
  for name in splits:
    ax.plot(taus, [row[f"{name}_top1_acc"] for row in curve], marker="o", markersize=3,
            label=f"{name} top-1")
  ax.axvline(tau, color="grey", linestyle=":", label=f"chosen tau {tau:g}")
  ax.set_xlabel("tau")
  ax.set_ylabel("accuracy (%)")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(loc="best")
  fig.tight_layout()
  io_utils.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
  plt.close(fig)
