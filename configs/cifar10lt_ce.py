"""CIFAR-10-LT (rho 100), ResNet-32, cross-entropy: the reference's baseline.

  python run.py --config=configs/cifar10lt_ce.py

Needs the CIFAR-10 python archive under ~/.lt_jax/data (or dataset.source='tfds'). 200 epochs
of 97 steps at batch 128: an accelerator job. The paper reports 29.64% top-1 error (CE, rho 100).

Runtime: 200 epochs of 97 steps at batch 128, an accelerator job, not measured yet with the
  current training loop (an H200 took 207 s with an earlier one, docs/PERFORMANCE.md).
Paper: 29.64% top-1 error (CE, rho 100).
"""

from lt_jax.config import get_base_config


def get_config():
  return get_base_config()  # The base config is this experiment.
