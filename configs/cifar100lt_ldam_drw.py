"""CIFAR-100-LT (rho 100), ResNet-32, LDAM-DRW.

  python run.py --config=configs/cifar100lt_ldam_drw.py

The paper reports 57.96% top-1 error for LDAM-DRW at rho 100.

Runtime: 200 epochs of 85 steps at batch 128, an accelerator job, not measured yet.
Paper: 57.96% top-1 error (LDAM-DRW, rho 100).
"""

from lt_jax.config import get_base_config
from lt_jax.methods import set_method


def get_config():
  c = get_base_config()
  c.dataset.name = "cifar100"
  return set_method(c, "ldam_drw")
