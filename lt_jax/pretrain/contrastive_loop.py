"""The contrastive pre-training stage (MoCo v2 or SimCLR) of an SSP run.

Same shape as the supervised loop: the imbalanced training images live on the device as uint8;
one jitted step samples a batch (a permutation per epoch, labels unused), draws two augmented
views per image with per-image keys from fold_in(rng, step), normalises them and takes a MoCo
or SimCLR step. Checkpoints hold the whole state (encoders, queue, step, key), so a cut-off
stage resumes where it stopped; the query encoder's backbone is what the next stage loads.
"""

from __future__ import annotations

import functools
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lt_jax import parallel, results
from lt_jax.checkpoint import Checkpoints
from lt_jax.data import prepare as prepare_lib
from lt_jax.data import samplers
from lt_jax.errors import ConfigError
from lt_jax.models import MODELS
from lt_jax.models.resnet_cifar import CifarResNetBackbone
from lt_jax.pretrain import augment as views_lib
from lt_jax.pretrain import contrastive
from lt_jax.train import writers


def backbone_fn(model_name: str):
  """The backbone of `model.name` (its stage sizes and widths), for the contrastive model."""
  if model_name not in MODELS:
    raise ConfigError(f"model.name={model_name!r} is unknown; choose one of {sorted(MODELS)}.")
  keywords = MODELS[model_name].keywords
  kwargs = {k: keywords[k] for k in ("stage_sizes", "widths") if k in keywords}
  return functools.partial(CifarResNetBackbone, **kwargs)


def cosine_per_epoch(lr: float, num_epochs: int, steps_per_epoch: int):
  """MoCo's schedule: lr * 0.5 * (1 + cos(pi * epoch / epochs)), set once per epoch."""
  def schedule(step):
    epoch = jnp.minimum(step // steps_per_epoch, num_epochs - 1)
    return lr * 0.5 * (1.0 + jnp.cos(jnp.pi * epoch / num_epochs))
  return schedule


def view_fn(config: ml_collections.ConfigDict):
  pre = config.pretrain
  if pre.method == "moco":
    return functools.partial(views_lib.moco_v2_view, crop_scale=tuple(pre.crop_scale),
                             blur_p=0.5 if pre.blur else 0.0)
  return functools.partial(views_lib.simclr_view, crop_scale=tuple(pre.crop_scale))


def pretrain_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or resumes, or reads back) the contrastive stage; returns its results.json."""
  from lt_jax.train.loop import guard_workdir  # The loop imports this package.

  finished = guard_workdir(workdir, config)
  if finished is not None:
    return finished
  start_time = time.time()
  pre, method = config.pretrain, config.pretrain.method
  data = prepare_lib.prepare(config.dataset)
  epochs = pre.num_epochs or config.train.num_epochs
  batch = pre.batch_size or config.train.batch_size
  mesh = parallel.make_mesh()
  parallel.check_batch_divides(batch, mesh, "pretrain.batch_size")
  n = len(data.train.labels)
  spe = samplers.steps_per_epoch(n, batch)
  schedule = cosine_per_epoch(pre.lr, epochs, spe)
  tx = optax.chain(optax.add_decayed_weights(pre.weight_decay),
                   optax.sgd(schedule, momentum=pre.momentum))
  backbone = functools.partial(backbone_fn(config.model.name), conv_impl=config.model.conv_impl)
  model = contrastive.ContrastiveModel(backbone, hidden=pre.proj_hidden,
                                       out=pre.proj_dim)
  replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  shape = data.train.images.shape[1:]
  if method == "moco":
    contrastive.check_queue_size(pre.queue_size, batch)
    state = contrastive.create_moco_state(model, tx, shape, config.seed, pre.queue_size,
                                          pre.proj_dim, replicated)
    step_fn = functools.partial(
        contrastive.moco_train_step, model=model, tx=tx, temperature=pre.temperature,
        momentum=pre.encoder_momentum,
        bn_groups=contrastive.resolve_bn_groups(batch, pre.bn_groups),
        batch_sharding=batch_sharding)
  else:
    state = contrastive.create_simclr_state(model, tx, shape, config.seed, replicated)
    step_fn = functools.partial(contrastive.simclr_train_step, model=model, tx=tx,
                                temperature=pre.temperature, batch_sharding=batch_sharding)

  sampler = samplers.make_sampler("instance", data.train.labels, data.num_classes, batch)
  make_views = view_fn(config)

  def full_step(state, images):
    rng = jax.random.wrap_key_data(state.rng)
    idx = sampler(jax.random.fold_in(rng, 0), state.step)
    view_key = jax.random.fold_in(jax.random.fold_in(rng, 1), state.step)
    x = jax.lax.with_sharding_constraint(images[idx], batch_sharding).astype(jnp.float32) / 255
    a, b = views_lib.two_views(view_key, x, make_views)
    norm = lambda v: (v - jnp.asarray(data.mean)) / jnp.asarray(data.std)
    new_state, metrics = step_fn(state, norm(a), norm(b))
    metrics = {k: v for k, v in metrics.items() if k in ("loss", "accuracy")}
    return new_state, dict(metrics, lr=schedule(state.step))

  train_step = jax.jit(full_step, donate_argnums=0, out_shardings=(replicated, None))
  images = parallel.put(data.train.images, replicated)

  ckpt = Checkpoints(os.path.join(workdir, "checkpoints", "last"))
  meta = {"history": [], "wall_time_s": 0.0, "train_seconds": 0.0, "train_images": 0}
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(state)
    print(f"resumed from {ckpt.directory} at step {int(state.step)}", flush=True)
  start_step = int(state.step)
  writer = writers.MetricWriter(workdir, resume_step=start_step)
  progress = writers.Progress(spe * epochs, batch, start_step)
  log_every = config.train.log_every_steps
  try:
    for epoch in range(start_step // spe, epochs):
      progress.restart_window(epoch * spe)
      epoch_start = time.perf_counter()
      sums = {"loss": 0.0, "accuracy": 0.0}
      for _ in range(spe):
        state, metrics = train_step(state, images)
        step = int(state.step)
        if step % log_every == 0 or step % spe == 0:
          scalars = {k: float(v) for k, v in metrics.items()}
          if not math.isfinite(scalars["loss"]):
            raise FloatingPointError(f"{method} loss is {scalars['loss']} at step {step}; lower "
                                     "pretrain.lr or check the data.")
          if step % log_every == 0:
            progress.report(epoch, epochs, step, scalars)
            writer.write(step, {f"pretrain_step/{k}": v for k, v in scalars.items()})
        sums = jax.tree.map(lambda s, v: s + v, sums, {k: metrics[k] for k in sums})
      sums = {k: float(v) / spe for k, v in sums.items()}
      seconds = time.perf_counter() - epoch_start
      if epoch > 0 or epochs == 1:
        meta["train_seconds"] += seconds
        meta["train_images"] += spe * batch
      record = {"epoch": epoch + 1, **{f"pretrain/{k}": v for k, v in sums.items()}}
      print(f"epoch {epoch + 1}/{epochs}: {method} loss {sums['loss']:.4f}, instance "
            f"accuracy {100 * sums['accuracy']:.1f}%", flush=True)
      writer.write(int(state.step), record)
      meta["history"].append(record)
      if (epoch + 1) % config.train.checkpoint_every_epochs == 0 or epoch + 1 == epochs:
        meta["wall_time_s"] += time.time() - start_time
        start_time = time.time()
        ckpt.save(int(state.step), state, meta)
    ckpt.wait()
  finally:
    writer.close()
    ckpt.close()
  meta["wall_time_s"] += time.time() - start_time
  last = meta["history"][-1] if meta["history"] else {}
  out = {"method": method, "epochs": epochs, "batch_size": batch,
         "final_loss": last.get("pretrain/loss"),
         "final_instance_accuracy": None if not last else 100 * last["pretrain/accuracy"],
         "wall_time_s": meta["wall_time_s"],
         "train_images_per_s": (meta["train_images"] / meta["train_seconds"]
                                if meta["train_seconds"] else None),
         "history": meta["history"]}
  results.write_results(workdir, out)
  return out
