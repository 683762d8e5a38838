"""The contrastive pre-training stage (MoCo v2 or SimCLR) of an SSP run.

The imbalanced training images live on the device as uint8; the stage's pure step samples a
batch (a permutation per epoch, labels unused), draws two augmented views per image, normalises
them and takes a MoCo or SimCLR step, with the same key scheme and normalisation as the
supervised step (`train.step.step_keys`, `data.augment.standardize`). The driver runs it:
checkpoints hold the whole state (encoders, queue, step, key), so a cut-off stage resumes where
it stopped; the query encoder's backbone is what the next stage loads.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lt_jax import parallel
from lt_jax import workdir as workdir_lib
from lt_jax.data import augment as augment_lib
from lt_jax.data import prepare as prepare_lib
from lt_jax.data import samplers
from lt_jax.errors import ConfigError
from lt_jax.models import DTYPES, MODELS
from lt_jax.models.resnet_cifar import CifarResNetBackbone
from lt_jax.pretrain import augment as views_lib
from lt_jax.pretrain import contrastive
from lt_jax.train import driver
from lt_jax.train import step as step_lib


def backbone_fn(model_config: ml_collections.ConfigDict):
  """The backbone of `model.name` (its stage sizes and widths), `model.dtype` and
  `model.conv_impl`."""
  if model_config.name not in MODELS:
    raise ConfigError(f"model.name={model_config.name!r} is unknown; choose one of "
                      f"{sorted(MODELS)}.")
  keywords = MODELS[model_config.name].keywords
  kwargs = {k: keywords[k] for k in ("stage_sizes", "widths") if k in keywords}
  return functools.partial(CifarResNetBackbone, dtype=DTYPES[model_config.dtype],
                           conv_impl=model_config.conv_impl, **kwargs)


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


def epochs_and_batch(config: ml_collections.ConfigDict) -> tuple[int, int]:
  pre = config.pretrain
  return (pre.num_epochs or config.train.num_epochs), (pre.batch_size or config.train.batch_size)


def make_step(config: ml_collections.ConfigDict, data: prepare_lib.LongTailData, model, tx,
              schedule, batch_sharding) -> driver.StepFn:
  """The pure contrastive step `(state, images) -> (state, metrics)` (the driver jits it)."""
  pre = config.pretrain
  _, batch = epochs_and_batch(config)
  sampler = samplers.make_sampler("instance", data.train.labels, data.num_classes, batch)
  make_views = view_fn(config)
  if pre.method == "moco":
    update = functools.partial(
        contrastive.moco_train_step, model=model, tx=tx, temperature=pre.temperature,
        momentum=pre.encoder_momentum,
        bn_groups=contrastive.resolve_bn_groups(batch, pre.bn_groups),
        batch_sharding=batch_sharding)
  else:
    update = lambda state, a, b, key: contrastive.simclr_train_step(
        state, a, b, model=model, tx=tx, temperature=pre.temperature,
        batch_sharding=batch_sharding)

  def step(state, images):
    sample_key, step_key = step_lib.step_keys(state.rng, state.step)
    view_key, shuffle_key = jax.random.split(step_key)
    idx = sampler(sample_key, state.step)
    x = jax.lax.with_sharding_constraint(images[idx], batch_sharding).astype(jnp.float32) / 255
    a, b = views_lib.two_views(view_key, x, make_views)
    standardize = lambda v: augment_lib.standardize(v, data.mean, data.std)
    new_state, metrics = update(state, standardize(a), standardize(b), shuffle_key)
    return new_state, {"loss": metrics["loss"], "accuracy": metrics["accuracy"],
                       "lr": schedule(state.step)}
  return step


def create(config: ml_collections.ConfigDict, data: prepare_lib.LongTailData, mesh):
  """(state, pure step) of the contrastive stage for this config and data."""
  pre = config.pretrain
  epochs, batch = epochs_and_batch(config)
  parallel.check_batch_divides(batch, mesh, "pretrain.batch_size")
  spe = samplers.steps_per_epoch(len(data.train.labels), batch)
  schedule = cosine_per_epoch(pre.lr, epochs, spe)
  tx = optax.chain(optax.add_decayed_weights(pre.weight_decay),
                   optax.sgd(schedule, momentum=pre.momentum))
  model = contrastive.ContrastiveModel(backbone_fn(config.model), hidden=pre.proj_hidden,
                                       out=pre.proj_dim)
  replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  shape = data.train.images.shape[1:]
  if pre.method == "moco":
    contrastive.check_queue_size(pre.queue_size, batch)
    state = contrastive.create_moco_state(model, tx, shape, config.seed, pre.queue_size,
                                          pre.proj_dim, replicated)
  else:
    state = contrastive.create_simclr_state(model, tx, shape, config.seed, replicated)
  return state, make_step(config, data, model, tx, schedule, batch_sharding)


def pretrain_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                          data: prepare_lib.LongTailData) -> dict:
  """Runs (or resumes, or reads back) the contrastive stage; returns its results.json."""
  finished = workdir_lib.guard(workdir, config)
  if finished is not None:
    return finished
  method = config.pretrain.method
  epochs, batch = epochs_and_batch(config)
  mesh = parallel.make_mesh()
  state, step = create(config, data, mesh)
  replicated = parallel.replicated(mesh)
  tr = config.train
  plan = driver.Plan(num_epochs=epochs,
                     steps_per_epoch=samplers.steps_per_epoch(len(data.train.labels), batch),
                     batch_size=batch, steps_per_call=driver.steps_per_call(tr.steps_per_call),
                     log_every_steps=tr.log_every_steps,
                     checkpoint_every_epochs=tr.checkpoint_every_epochs, prefix="pretrain")
  trained = driver.train(workdir, state, step, parallel.put(data.train.images, replicated),
                         plan, state_sharding=replicated,
                         log=lambda line: print(line, flush=True))
  meta = trained.meta
  last = meta["history"][-1] if meta["history"] else {}
  out = {"method": method, "epochs": epochs, "batch_size": batch,
         "final_loss": last.get("pretrain/loss"),
         "final_instance_accuracy": None if not last else 100 * last["pretrain/accuracy"],
         "wall_time_s": meta["wall_time_s"],
         "train_images_per_s": driver.images_per_second(meta),
         "history": meta["history"]}
  workdir_lib.write_results(workdir, out)
  return out
