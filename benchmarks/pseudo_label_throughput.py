"""Throughput of `lt_jax.pseudo_label.predict` against a plain jitted forward pass.

Labels N random 32x32x3 uint8 images with a randomly initialised ResNet-32 (10 classes) and
prints a small table: predict's wall time and images/s (host batches padded, sent, labeled and
read back), and, measured in the same run, the images/s of a plain jitted forward over one
device-resident batch of the same size (no host traffic: the ceiling), and their ratio.

  python benchmarks/pseudo_label_throughput.py                # N=500000 on an accelerator
  python benchmarks/pseudo_label_throughput.py --num 20000    # a CPU-sized run

Compilation is excluded from both: each is run once on one batch before it is timed.
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from lt_jax import parallel, predict
from lt_jax import pseudo_label as pl
from lt_jax.config import get_base_config
from lt_jax.data import augment
from lt_jax.models import create_model

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
NUM_CLASSES = 10


def parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num", type=int, default=None,
                      help="images to label (default 500000 on an accelerator, 20000 on CPU)")
  parser.add_argument("--batch_size", type=int, default=1024,
                      help="global batch (semi.label_batch_size), split over every device")
  parser.add_argument("--seed", type=int, default=0)
  return parser.parse_args()


def frozen_resnet32(seed: int) -> predict.FrozenModel:
  """ResNet-32 with random weights, as load_frozen would return a trained one."""
  config = get_base_config()
  model = create_model("resnet32", num_classes=NUM_CLASSES, head=config.model.head)
  init = jax.jit(lambda key: model.init(key, jnp.zeros((1, 32, 32, 3)), train=False))
  variables = jax.tree.map(np.asarray, dict(init(jax.random.key(seed))))
  return predict.FrozenModel(model=model, variables=variables, num_classes=NUM_CLASSES,
                        config=config)


def time_predict(frozen, images, batch_size: int, mesh) -> float:
  pl.predict(frozen, images[:batch_size], CIFAR_MEAN, CIFAR_STD, batch_size=batch_size,
             mesh=mesh)  # Compiles.
  start = time.perf_counter()
  pred, _ = pl.predict(frozen, images, CIFAR_MEAN, CIFAR_STD, batch_size=batch_size, mesh=mesh)
  seconds = time.perf_counter() - start
  assert len(pred) == len(images)
  return seconds


def time_forward(frozen, images, batch_size: int, mesh) -> float:
  """The same number of batches through a bare jitted forward on one device-resident batch."""
  model = frozen.model
  forward = jax.jit(lambda v, x: jnp.argmax(
      model.apply(v, augment.normalize(x, CIFAR_MEAN, CIFAR_STD), train=False)[0], -1))
  variables = jax.tree.map(lambda v: parallel.put(v, parallel.replicated(mesh)),
                           frozen.variables)
  first = np.zeros((batch_size, *images.shape[1:]), np.uint8)
  first[:min(batch_size, len(images))] = images[:batch_size]
  batch = parallel.put(first, parallel.batch_sharded(mesh))
  forward(variables, batch).block_until_ready()  # Compiles.
  num_batches = math.ceil(len(images) / batch_size)
  start = time.perf_counter()
  outs = [forward(variables, batch) for _ in range(num_batches)]
  jax.block_until_ready(outs)
  return time.perf_counter() - start


def print_table(num: int, batch_size: int, predict_s: float, forward_s: float) -> None:
  rows = [("pseudo_label.predict", predict_s), ("jitted forward (device batch)", forward_s)]
  print(f"\n{num} images, batch {batch_size}, {jax.device_count()} x "
        f"{jax.devices()[0].device_kind} ({jax.default_backend()})")
  print("| what | wall s | images/s | vs forward |")
  print("|---|---|---|---|")
  for name, seconds in rows:
    print(f"| {name} | {seconds:.2f} | {num / seconds:,.0f} | {forward_s / seconds:.2f} |")


def main() -> None:
  args = parse_args()
  num = args.num or (20_000 if jax.default_backend() == "cpu" else 500_000)
  mesh = parallel.make_mesh()
  parallel.check_batch_divides(args.batch_size, mesh, "semi.label_batch_size")
  images = np.random.default_rng(args.seed).integers(0, 256, (num, 32, 32, 3), np.uint8)
  frozen = frozen_resnet32(args.seed)
  predict_s = time_predict(frozen, images, args.batch_size, mesh)
  forward_s = time_forward(frozen, images, args.batch_size, mesh)
  print_table(num, args.batch_size, predict_s, forward_s)


if __name__ == "__main__":
  main()
