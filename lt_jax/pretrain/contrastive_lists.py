"""Contrastive pre-training (MoCo v2, SimCLR) on ImageNet-LT and iNaturalist 2018: the SSP
stage for images streamed from the host.

The training list's images (labels unused) stream through the host feed in instance order
(train.feed.HostFeed over data/image_pipeline.py, as the supervised list stage), each decoded
once and cropped twice on the host (`TwoCrops`: RandomResizedCrop(image_size, scale
pretrain.crop_scale), keyed by (seed, stream position)). The jitted step
(`contrastive_stage.make_batch_step`) draws the rest of both views on the device (colour
jitter, grayscale, blur, flip, keyed by the step) and takes the same MoCo or SimCLR update as
the device-resident stage. The driver checkpoints the whole state (both encoders, the queue)
with the feed's position, so a stage stopped mid-epoch resumes to the same parameters and
queue. The query encoder's backbone (an ImageNet-style ResNet for resnet10 / resnet50) is what
the probe and final stages load through `model.init_from`.
"""

from __future__ import annotations

import ml_collections

from lt_jax import inputs, parallel
from lt_jax import workdir as workdir_lib
from lt_jax.config import override
from lt_jax.data import datasets, image_pipeline
from lt_jax.errors import ConfigError
from lt_jax.pretrain import contrastive_stage
from lt_jax.train import driver


def feed_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config whose training stream the feed reads: instance order over the training list,
  pretrain.batch_size x pretrain.num_epochs."""
  epochs, batch = contrastive_stage.epochs_and_batch(config)
  return override(config, **{"train.sampler": "instance", "train.batch_size": batch,
                             "train.num_epochs": epochs})


def host_crops(config: ml_collections.ConfigDict) -> image_pipeline.TwoCrops:
  """The host's half of each pair of views."""
  return image_pipeline.TwoCrops(size=config.dataset.image_size,
                                 scale=tuple(config.pretrain.crop_scale))


def pretrain_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or resumes, or reads back) the contrastive stage on the training list; returns its
  results.json (contrastive_stage.write_results)."""
  finished = workdir_lib.guard(workdir, config)
  if finished is not None:
    return finished
  ds = config.dataset
  spec = datasets.get(ds.name)
  images = inputs.read_splits(ds)["train"]
  _, batch = contrastive_stage.epochs_and_batch(config)
  if batch > len(images):
    raise ConfigError(f"pretrain.batch_size={batch} is larger than the training list "
                      f"({len(images)} images), so every batch would repeat images; set it "
                      f"to at most {len(images)}.")
  mesh = parallel.make_mesh()
  replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  size = ds.image_size
  state, model, tx, schedule, spe = contrastive_stage.create_parts(
      config, len(images), (size, size, 3), mesh, image_pipeline.steps_per_epoch)
  step = contrastive_stage.make_batch_step(config, model, tx, schedule, spec.mean, spec.std,
                                           batch_sharding)
  feed = inputs.train_feed(feed_config(config), images, batch_sharding,
                           transform=host_crops(config))
  trained = driver.train(workdir, state, step, feed, contrastive_stage.plan(config, spe),
                         state_sharding=replicated, log=lambda line: print(line, flush=True))
  return contrastive_stage.write_results(config, workdir, trained)
