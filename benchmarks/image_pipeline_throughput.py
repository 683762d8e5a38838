"""Decoded-and-augmented images/s of the host input pipeline (lt_jax/data/image_pipeline.py), per
CPU core, on ImageNet-sized JPEGs written here.

  python benchmarks/image_pipeline_throughput.py --images=512 --workers=0,2

The images are stand-ins for photographs: smooth random colour fields with noise, 500x375
(ImageNet's median size), JPEG quality 90 (about 70 KB each; ImageNet's average is about
110 KB). Each row times a whole pass over them (a first pass warms the page cache and is not
timed; each pass starts its own worker processes, so with W > 0 a short pass understates the
steady rate: use more --images): the training transform (RandomResizedCrop(224) + flip + colour
jitter) and the evaluation transform (Resize(256) + CenterCrop(224)). With W workers the
pipeline uses W cores; W = 0 runs in the calling process (one core). The last column is how
many such cores feed a consumer of --target images/s (e.g. a ResNet-50 step on an accelerator).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cpu_step import cpu_model  # noqa: E402  (benchmarks/, this script's folder)

from lt_jax.data import image_lists, image_pipeline  # noqa: E402


def write_tree(root: str, count: int, seed: int = 0) -> image_lists.ImageList:
  rng = np.random.default_rng(seed)
  rows = []
  for i in range(count):
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((500, 375), Image.BICUBIC), np.int16)
    noisy = np.clip(field + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8)
    path = os.path.join(root, "train", f"c{i % 10}", f"{i}.JPEG")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(noisy).save(path, quality=90)
    rows.append(f"train/c{i % 10}/{i}.JPEG {i % 10}")
  lists = os.path.join(root, "ImageNet_LT_train.txt")
  with open(lists, "w") as f:
    f.write("\n".join(rows) + "\n")
  return image_lists.read_list(lists, root, num_classes=1000)


def images_per_second(make, count: int) -> float:
  for _ in make():  # Warm-up pass: page cache, worker start-up.
    pass
  start = time.perf_counter()
  seen = sum(len(batch["label"]) for batch in make())
  assert seen >= count
  return seen / (time.perf_counter() - start)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=512)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--workers", default="0", help="comma-separated worker counts")
  parser.add_argument("--target", type=float, default=3000.0,
                      help="images/s to feed (the cores column)")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as root:
    images = write_tree(root, args.images)
    size = sum(os.path.getsize(p) for p in images.paths) / len(images) / 1024
    print(f"{args.images} JPEGs of 500x375, {size:.0f} KB on average; "
          f"{os.cpu_count()} CPUs ({cpu_model()})")
    print("| transform | workers (cores) | images/s | images/s per core | cores for "
          f"{args.target:,.0f} images/s |")
    print("|---|---|---|---|---|")
    for workers in (int(w) for w in args.workers.split(",")):
      cores = max(workers, 1)
      rows = {
          "train (crop, flip, jitter)": lambda w=workers: image_pipeline.train_batches(
              images, batch_size=args.batch_size, num_epochs=1, seed=0, num_workers=w,
              augment=image_pipeline.Augment(color_jitter=True)),
          "eval (resize, centre crop)": lambda w=workers: image_pipeline.eval_batches(
              images, batch_size=args.batch_size, num_workers=w),
      }
      for name, make in rows.items():
        rate = images_per_second(make, args.images)
        print(f"| {name} | {workers} ({cores}) | {rate:,.0f} | {rate / cores:,.0f} | "
              f"{args.target / (rate / cores):.0f} |", flush=True)


if __name__ == "__main__":
  main()
