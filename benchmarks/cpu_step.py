"""ResNet-32 train step and evaluation on the CPU: lt_jax (both conv_impl) against PyTorch.

Times, in one run on the same random batch (32x32x3 images, 10 classes, no data loading):
the train step (forward, backward, SGD update with momentum 0.9 and weight decay 2e-4; BatchNorm
in training mode) and the evaluation forward pass (BatchNorm on running statistics), for lt_jax
with `model.conv_impl=xla` and `cpu_fast`, and for a hand-written PyTorch ResNet-32 of the same
architecture (the reference's `resnet_cifar.py`: option-A shortcut, 16/32/64 channels). Prints a
markdown table of images/s and the ratio to PyTorch, and the CPU model.

  python benchmarks/cpu_step.py --batch 128 --steps 10

Each measurement is the median of `--steps` timed calls after `--warmup` untimed ones (the first
compiles). The timed calls are interleaved (one train step of each model in turn, then one
evaluation of each), so a machine shared with other work slows every row alike. PyTorch is an
optional extra (`pip install torch`, CPU build), imported only here: without it the lt_jax rows
are printed alone. PyTorch runs on as many threads as the process may use
(`os.sched_getaffinity`), which is also the size of XLA:CPU's thread pool.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lt_jax.models import create_model

NUM_CLASSES = 10
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 2e-4


def parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--steps", type=int, default=10, help="timed calls per measurement")
  parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
  parser.add_argument("--impls", nargs="+", default=["xla", "cpu_fast"],
                      help="lt_jax model.conv_impl values to time")
  parser.add_argument("--no_torch", action="store_true", help="skip PyTorch even if installed")
  return parser.parse_args()


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def cpu_flags() -> str:
  """The vector extensions that decide the matmul kernels: AVX2, FMA, AVX-512."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("flags"):
          flags = set(line.split(":", 1)[1].split())
          wanted = ("avx2", "fma", "avx512f")
          return ", ".join(f for f in wanted if f in flags) or "none of avx2/fma/avx512f"
  except OSError:
    pass
  return "unknown"


def interleaved_medians(fns: list, steps: int, warmup: int) -> list[float]:
  """Median seconds of each of `fns`, timed in turn `steps` times after `warmup` calls each."""
  for fn in fns:
    for _ in range(warmup):
      fn()
  times = [[] for _ in fns]
  for _ in range(steps):
    for fn, record in zip(fns, times):
      start = time.perf_counter()
      fn()
      record.append(time.perf_counter() - start)
  return [statistics.median(record) for record in times]


# --- lt_jax -----------------------------------------------------------------------------------


def lt_jax_runners(conv_impl: str, images: np.ndarray, labels: np.ndarray):
  """(one train step, one evaluation batch) of lt_jax's ResNet-32, each blocking until done."""
  model = create_model("resnet32", num_classes=NUM_CLASSES, conv_impl=conv_impl)
  variables = jax.jit(lambda key: model.init(key, jnp.zeros((1, 32, 32, 3)), train=False))(
      jax.random.key(0))
  params, batch_stats = variables["params"], variables["batch_stats"]
  # The reference's SGD: coupled weight decay, then momentum (lt_jax.train.optim's chain).
  tx = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY), optax.sgd(LR, momentum=MOMENTUM))
  opt_state = tx.init(params)

  def train_step(params, batch_stats, opt_state, x, y):
    def loss_fn(params):
      (logits, _), updates = model.apply({"params": params, "batch_stats": batch_stats}, x,
                                         train=True, mutable=["batch_stats"])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, updates["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  def eval_step(params, batch_stats, x):
    logits, _ = model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
    return jnp.argmax(logits, axis=-1)

  train = jax.jit(train_step, donate_argnums=(0, 1, 2))
  evaluate = jax.jit(eval_step)
  x, y = jnp.asarray(images), jnp.asarray(labels)
  state = [params, batch_stats, opt_state]

  def one_train_step():
    *new_state, loss = train(*state, x, y)
    state[:] = new_state
    jax.block_until_ready(loss)

  def one_eval():
    jax.block_until_ready(evaluate(state[0], state[1], x))

  return one_train_step, one_eval


# --- PyTorch ----------------------------------------------------------------------------------


def torch_runners(torch, images: np.ndarray, labels: np.ndarray):
  """(one train step, one evaluation batch) of the PyTorch ResNet-32 (NCHW)."""
  from torch_reference import torch_resnet32  # Beside this file; it imports torch.
  model = torch_resnet32(NUM_CLASSES)
  optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM,
                              weight_decay=WEIGHT_DECAY)
  x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
  y = torch.from_numpy(labels.astype(np.int64))

  def one_train_step():
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()

  def one_eval():
    model.eval()
    with torch.no_grad():
      model(x).argmax(dim=1)

  return one_train_step, one_eval


# --- report -----------------------------------------------------------------------------------


def main() -> None:
  args = parse_args()
  threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  rng = np.random.default_rng(0)
  images = rng.standard_normal((args.batch, 32, 32, 3)).astype(np.float32)
  labels = rng.integers(0, NUM_CLASSES, args.batch).astype(np.int32)

  names, runners = [], []
  for impl in args.impls:
    names.append(f"lt_jax, conv_impl={impl}")
    runners.append(lt_jax_runners(impl, images, labels))

  with_torch = False
  if not args.no_torch:
    try:
      import torch
    except ImportError:
      print("PyTorch is not installed (pip install torch): printing the lt_jax rows only.")
    else:
      torch.set_num_threads(threads)
      torch.manual_seed(0)
      names.append(f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads)")
      runners.append(torch_runners(torch, images, labels))
      with_torch = True

  train_s = interleaved_medians([r[0] for r in runners], args.steps, args.warmup)
  eval_s = interleaved_medians([r[1] for r in runners], args.steps, args.warmup)
  rows = list(zip(names, train_s, eval_s))
  torch_row = rows[-1] if with_torch else None

  print(f"\nCPU: {cpu_model()} ({threads} usable cores; {cpu_flags()}); JAX {jax.__version__} "
        f"on {jax.default_backend()}; ResNet-32, batch {args.batch}, 32x32x3, median of "
        f"{args.steps} after {args.warmup} warm-up\n")
  print("| model | train images/s | train vs PyTorch | eval images/s | eval vs PyTorch |")
  print("|---|---|---|---|---|")
  for name, train_s, eval_s in rows:
    train_ips, eval_ips = args.batch / train_s, args.batch / eval_s
    if torch_row is None:
      vs_train = vs_eval = "-"
    else:
      vs_train = f"{torch_row[1] / train_s:.2f}x"
      vs_eval = f"{torch_row[2] / eval_s:.2f}x"
    print(f"| {name} | {train_ips:.1f} | {vs_train} | {eval_ips:.1f} | {vs_eval} |")


if __name__ == "__main__":
  main()
