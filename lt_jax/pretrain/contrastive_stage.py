"""The contrastive pre-training stage (MoCo v2 or SimCLR) of an SSP run, on either input.

On a `DeviceInput` the imbalanced training images live on the device as uint8; the stage's pure
step samples a batch (a permutation per epoch, labels unused), draws two augmented views per
image, normalises them and takes a MoCo or SimCLR step, with the same key scheme and
normalisation as the supervised step (`train.step.step_keys`, `data.augment.standardize`). On a
`HostInput` (ImageNet-LT, iNaturalist, a user's lists) the host decodes each image once and
crops it twice (`inputs.HostInput.pretrain_data`), and `make_batch_step` draws the rest of each
view on the device, with the keys the device-resident step gives its views; both steps share
everything after the views (`make_views_step`). The driver runs it: checkpoints hold the whole
state (encoders, queue, step, key) and the feed's position, so a cut-off stage resumes to the
same parameters and queue; the query encoder's backbone is what the next stage loads (for the
ImageNet-style ResNet-10 / 50 too).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lt_jax import inputs, parallel
from lt_jax import workdir as workdir_lib
from lt_jax.data import augment as augment_lib
from lt_jax.data import prepare as prepare_lib
from lt_jax.data import samplers
from lt_jax.errors import ConfigError
from lt_jax.models import DTYPES, MODELS
from lt_jax.models.resnet_cifar import CifarResNetBackbone
from lt_jax.models.resnet_imagenet import ImageNetResNet, ImageNetResNetBackbone
from lt_jax.pretrain import augment as views_lib
from lt_jax.pretrain import contrastive
from lt_jax.train import driver, optim
from lt_jax.train import step as step_lib


def backbone_fn(model_config: ml_collections.ConfigDict):
  """The backbone of `model.name` (its stage sizes and widths: the CIFAR ResNets, or the
  ImageNet-style ResNet-10 / 50 with their bottlenecks), `model.dtype` and `model.conv_impl`,
  so the query encoder's backbone drops into that classifier."""
  if model_config.name not in MODELS:
    raise ConfigError(f"model.name={model_config.name!r} is unknown; choose one of "
                      f"{sorted(MODELS)}.")
  model = MODELS[model_config.name]
  imagenet = issubclass(model.func, ImageNetResNet)
  names = ("stage_sizes", "widths") + (("bottleneck",) if imagenet else ())
  kwargs = {k: model.keywords[k] for k in names if k in model.keywords}
  backbone = ImageNetResNetBackbone if imagenet else CifarResNetBackbone
  return functools.partial(backbone, dtype=DTYPES[model_config.dtype],
                           conv_impl=model_config.conv_impl, **kwargs)


def view_fn(config: ml_collections.ConfigDict, crop: bool = True):
  """pretrain.method's view recipe; `crop=False` leaves the random resized crop to the host
  (host-fed inputs: see data/image_pipeline.TwoCrops)."""
  pre = config.pretrain
  if pre.method == "moco":
    return functools.partial(views_lib.moco_v2_view, crop_scale=tuple(pre.crop_scale),
                             blur_p=0.5 if pre.blur else 0.0, crop=crop)
  return functools.partial(views_lib.simclr_view, crop_scale=tuple(pre.crop_scale), crop=crop)


def step_keys(state) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(sampler key, view key, shuffle key) of the state's step, from `train.step.step_keys`."""
  sample_key, step_key = step_lib.step_keys(state.rng, state.step)
  view_key, shuffle_key = jax.random.split(step_key)
  return sample_key, view_key, shuffle_key


def make_views_step(config: ml_collections.ConfigDict, model, tx, schedule, mean, std,
                    batch_sharding):
  """`(state, views_a, views_b, shuffle_key) -> (state, metrics)`: what every contrastive
  step does once its two views exist (floats in [0, 1], [B, H, W, C]): normalise, then one
  MoCo or SimCLR update. Metrics: loss, accuracy (instance discrimination), lr."""
  pre = config.pretrain
  _, batch = inputs.pretrain_epochs_and_batch(config)
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

  def on_views(state, a, b, shuffle_key):
    standardize = lambda v: augment_lib.standardize(v, mean, std)
    new_state, metrics = update(state, standardize(a), standardize(b), shuffle_key)
    return new_state, {"loss": metrics["loss"], "accuracy": metrics["accuracy"],
                       "lr": schedule(state.step)}
  return on_views


def make_step(config: ml_collections.ConfigDict, data: prepare_lib.LongTailData, model, tx,
              schedule, batch_sharding, fed: bool = False) -> driver.StepFn:
  """The pure device-resident step `(state, images) -> (state, metrics)`: sample a batch of
  the uint8 training images, draw both views on the device (the driver jits it). `fed`: the
  host already read the sampled batch ({'image'}: `inputs.StreamedInput.pretrain_data`)."""
  _, batch = inputs.pretrain_epochs_and_batch(config)
  sampler = inputs.pretrain_sampler(config, data)
  make_views = view_fn(config)
  on_views = make_views_step(config, model, tx, schedule, data.mean, data.std, batch_sharding)

  def step(state, images):
    sample_key, view_key, shuffle_key = step_keys(state)
    picked = images["image"] if fed else images[sampler(sample_key, state.step)]
    x = jax.lax.with_sharding_constraint(picked, batch_sharding).astype(jnp.float32) / 255
    a, b = views_lib.two_views(view_key, x, make_views)
    return on_views(state, a, b, shuffle_key)
  return step


def make_batch_step(config: ml_collections.ConfigDict, model, tx, schedule, mean, std,
                    batch_sharding) -> driver.StepFn:
  """The pure host-fed step `(state, batch) -> (state, metrics)`: `batch` holds the host's two
  random resized crops of every image ({'view_a', 'view_b'}: uint8 [B, S, S, 3]); the rest
  of each view (jitter, grayscale, blur, flip) is drawn here, with the keys the
  device-resident step gives its views."""
  photometric = view_fn(config, crop=False)
  on_views = make_views_step(config, model, tx, schedule, mean, std, batch_sharding)

  def step(state, batch):
    _, view_key, shuffle_key = step_keys(state)
    floats = lambda v: jax.lax.with_sharding_constraint(v, batch_sharding).astype(
        jnp.float32) / 255
    a, b = views_lib.paired_views(view_key, floats(batch["view_a"]), floats(batch["view_b"]),
                                  photometric)
    return on_views(state, a, b, shuffle_key)
  return step


def create_parts(config: ml_collections.ConfigDict, num_images: int, input_shape, mesh,
                 epoch_length: Callable[[int, int], int] = samplers.steps_per_epoch):
  """(state, model, tx, schedule, steps per epoch) of the contrastive stage on `num_images`
  training images of `input_shape`: the encoder(s) and, for MoCo, the queue. An epoch is
  `epoch_length(images, batch)` steps."""
  pre = config.pretrain
  epochs, batch = inputs.pretrain_epochs_and_batch(config)
  parallel.check_batch_divides(batch, mesh, "pretrain.batch_size")
  spe = epoch_length(num_images, batch)
  schedule = optim.cosine_schedule(pre.lr, epochs, spe)  # MoCo's adjust_learning_rate.
  tx = optax.chain(optax.add_decayed_weights(pre.weight_decay),
                   optax.sgd(schedule, momentum=pre.momentum))
  model = contrastive.ContrastiveModel(backbone_fn(config.model), hidden=pre.proj_hidden,
                                       out=pre.proj_dim)
  replicated = parallel.replicated(mesh)
  if pre.method == "moco":
    contrastive.check_queue_size(pre.queue_size, batch)
    state = contrastive.create_moco_state(model, tx, input_shape, config.seed, pre.queue_size,
                                          pre.proj_dim, replicated)
  else:
    state = contrastive.create_simclr_state(model, tx, input_shape, config.seed, replicated)
  return state, model, tx, schedule, spe


def plan(config: ml_collections.ConfigDict, steps_per_epoch: int) -> driver.Plan:
  """The driver's plan of a pre-training: pretrain.num_epochs x pretrain.batch_size."""
  epochs, batch = inputs.pretrain_epochs_and_batch(config)
  tr = config.train
  return driver.Plan(num_epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch,
                     steps_per_call=driver.steps_per_call(tr.steps_per_call),
                     log_every_steps=tr.log_every_steps,
                     checkpoint_every_epochs=tr.checkpoint_every_epochs, prefix="pretrain")


def write_results(config: ml_collections.ConfigDict, workdir: str, trained: driver.Trained
                  ) -> dict:
  """The stage's results.json: the last epoch's loss and instance accuracy, speed, history."""
  epochs, batch = inputs.pretrain_epochs_and_batch(config)
  meta = trained.meta
  last = meta["history"][-1] if meta["history"] else {}
  out = {"method": config.pretrain.method, "epochs": epochs, "batch_size": batch,
         "final_loss": last.get("pretrain/loss"),
         "final_instance_accuracy": None if not last else 100 * last["pretrain/accuracy"],
         "wall_time_s": meta["wall_time_s"],
         "train_images_per_s": driver.images_per_second(meta),
         "history": meta["history"]}
  workdir_lib.write_results(workdir, out)
  return out


def pretrain_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                          inp: inputs.Input) -> dict:
  """Runs (or resumes, or reads back) the contrastive stage on `inp`'s training images;
  returns its results.json."""
  finished = workdir_lib.guard(workdir, config)
  if finished is not None:
    return finished
  mesh = parallel.make_mesh()
  replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  data = inp.pretrain_data(config, mesh)
  state, model, tx, schedule, spe = create_parts(
      config, inp.facts.train_size, inp.image_shape, mesh,
      lambda images, batch: inp.steps_per_epoch(batch))
  if isinstance(inp, inputs.DeviceInput):
    step = make_step(config, inp.data, model, tx, schedule, batch_sharding,
                     fed=isinstance(inp, inputs.StreamedInput))
  else:
    step = make_batch_step(config, model, tx, schedule, inp.mean, inp.std, batch_sharding)
  trained = driver.train(workdir, state, step, data, plan(config, spe),
                         state_sharding=replicated, log=lambda line: print(line, flush=True))
  return write_results(config, workdir, trained)
