"""CIFAR-100-LT (rho 100), ResNet-32, cross-entropy.

  python run.py --config=configs/cifar100lt_ce.py

Needs the CIFAR-100 python archive under ~/.lt_jax/data (or dataset.source='tfds'). 10,847
training images; the paper reports 61.68% top-1 error (CE, rho 100).

Runtime: 200 epochs of 85 steps at batch 128, an accelerator job, not measured yet.
Paper: 61.68% top-1 error (CE, rho 100).
"""

from lt_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.dataset.name = "cifar100"
  return c
