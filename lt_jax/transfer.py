"""Starting a classifier from a pre-trained backbone (SSP's second stage, `model.init_from`).

Every backbone parameter and BatchNorm statistic is restored; the head keeps its fresh
initialisation (the pretext head predicts rotations or projects for a contrastive loss, and
has no use downstream). Shapes are checked leaf by leaf so a mismatch fails naming the leaves.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lt_jax import checkpoint
from lt_jax import workdir as workdir_lib
from lt_jax.data import datasets, prepare
from lt_jax.errors import ConfigError, DataError
from lt_jax.models import create_model


def _checkpoint_dir(path: str) -> str:
  """A workdir, its checkpoints/last folder, or a pre-training pipeline's workdir; refused
  when it changed after its run finished."""
  path = os.path.abspath(os.path.expanduser(path))
  for candidate in (workdir_lib.checkpoint_dir(path),
                    workdir_lib.checkpoint_dir(workdir_lib.stage_dir(path, "pretrain")), path):
    if checkpoint.latest_step(candidate) is not None:
      workdir_lib.check_checkpoint(candidate)  # Before check_init_from reads its shapes.
      return candidate
  raise DataError(f"model.init_from={path!r} holds no checkpoint: expected a workdir with "
                  "checkpoints/last (or that folder itself); run the pre-training stage first.")


def load_backbone(path: str) -> tuple[Any, Any]:
  """(params, batch_stats) of the backbone saved under `path` (a classifier's or a
  contrastive model's query encoder)."""
  state, _ = checkpoint.restore_saved(_checkpoint_dir(path))
  for params_key, stats_key in (("params", "batch_stats"), ("params_q", "batch_stats_q")):
    if params_key in state and "backbone" in state[params_key]:
      stats = state.get(stats_key) or {}
      return state[params_key]["backbone"], stats.get("backbone", {})
  raise DataError(f"the checkpoint under {path!r} has no backbone parameters (top-level keys: "
                  f"{sorted(state)}).")


def check_init_from(config) -> None:
  """Fails before any data loads or model compiles when model.init_from holds no checkpoint,
  or one whose backbone does not fit model.name on this dataset's images: compares the saved
  shapes (read from the checkpoint's metadata) with the model's (traced, not computed)."""
  path = config.model.init_from
  shapes = checkpoint.saved_shapes(_checkpoint_dir(path))
  for params_key, stats_key in (("params", "batch_stats"), ("params_q", "batch_stats_q")):
    if "backbone" in shapes.get(params_key, {}):
      saved = {"params": shapes[params_key]["backbone"],
               "batch_stats": (shapes.get(stats_key) or {}).get("backbone", {})}
      break
  else:
    raise DataError(f"model.init_from={path!r}: its checkpoint has no backbone parameters "
                    f"(top-level keys: {sorted(shapes)}); point it at a classifier's or a "
                    "pre-training run's workdir.")
  ds = config.dataset
  channels = (datasets.get(ds.name).channels if datasets.get(ds.name).host_fed
              else datasets.image_channels(ds.name, ds.data_dir, **prepare.source_options(ds)))
  model = create_model(config.model.name, num_classes=2, head="linear",
                       conv_impl=config.model.conv_impl)
  variables = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 8, 8, channels), jnp.float32), train=False))
  shape_of = lambda x: np.broadcast_to(np.zeros((), np.uint8), x)
  want = jax.tree.map(lambda x: shape_of(x.shape), {
      "params": variables["params"]["backbone"],
      "batch_stats": variables.get("batch_stats", {}).get("backbone", {})})
  check_compatible(want["params"], jax.tree.map(shape_of, saved["params"], is_leaf=_is_shape),
                   "backbone parameters")
  if want["batch_stats"]:
    check_compatible(want["batch_stats"],
                     jax.tree.map(shape_of, saved["batch_stats"], is_leaf=_is_shape),
                     "BatchNorm statistics")


def _is_shape(x) -> bool:
  return isinstance(x, tuple) and all(isinstance(d, int) for d in x)


def _leaves(tree) -> dict[str, tuple]:
  return {jax.tree_util.keystr(p): np.shape(v)
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_compatible(target, source, what: str) -> None:
  """Raises ConfigError listing missing, unexpected and mis-shaped leaves."""
  want, have = _leaves(target), _leaves(source)
  missing = sorted(set(want) - set(have))
  unexpected = sorted(set(have) - set(want))
  shapes = sorted(f"{k}: checkpoint {have[k]} vs model {want[k]}"
                  for k in set(want) & set(have) if want[k] != have[k])
  if missing or unexpected or shapes:
    parts = []
    if missing:
      parts.append(f"missing from the checkpoint: {', '.join(missing[:10])}")
    if unexpected:
      parts.append(f"not in the model: {', '.join(unexpected[:10])}")
    if shapes:
      parts.append(f"shape mismatch: {'; '.join(shapes[:10])}")
    raise ConfigError(f"model.init_from: the pre-trained {what} do not fit model.name (the "
                      "architecture and the input channels must match: set model.name to the "
                      "checkpoint's model, or point model.init_from at a run of this model on "
                      "images like these). " + " | ".join(parts))


def load_head(path: str) -> dict:
  """The linear classifier (kernel, bias) of the classifier saved under `path`."""
  state, _ = checkpoint.restore_saved(_checkpoint_dir(path))
  head = state.get("params", {}).get("head", {})
  if not {"kernel", "bias"} <= set(head):
    raise ConfigError(f"model.init_head: the checkpoint under {path!r} has no linear classifier "
                      f"(its head holds {sorted(head)}); LWS needs a stage 1 with "
                      "model.head='linear'.")
  return {"kernel": head["kernel"], "bias": head["bias"]}


def init_backbone_from(state, path: str, sharding, head: bool = False):
  """The state with its backbone parameters and statistics replaced by those under `path`,
  and with `head` its classifier's kernel and bias too (other head parameters, LWS's scales,
  keep their initial values)."""
  params, stats = load_backbone(path)
  check_compatible(state.params["backbone"], params, "backbone parameters")
  if "backbone" in state.batch_stats:
    check_compatible(state.batch_stats["backbone"], stats, "BatchNorm statistics")
  cast = lambda new, old: jax.device_put(np.asarray(new, dtype=old.dtype), sharding)
  new_params = dict(state.params, backbone=jax.tree.map(cast, params, state.params["backbone"]))
  if head:
    classifier = load_head(path)
    mine = {k: state.params["head"][k] for k in classifier}
    check_compatible(mine, classifier, "classifier")
    new_params["head"] = dict(state.params["head"], **jax.tree.map(cast, classifier, mine))
  new_stats = dict(state.batch_stats)
  if "backbone" in state.batch_stats:
    new_stats["backbone"] = jax.tree.map(cast, stats, state.batch_stats["backbone"])
  return state.replace(params=new_params, batch_stats=new_stats)
