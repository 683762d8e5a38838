"""CIFAR-10-LT (rho 100), ResNet-32, LDAM loss with deferred re-weighting (LDAM-DRW).

  python run.py --config=configs/cifar10lt_ldam_drw.py

Cosine (normalised) head, margins max 0.5, s 30; class-balanced weights (beta 0.9999) from
epoch 160. The paper reports 22.97% top-1 error for LDAM-DRW at rho 100.

Runtime: 200 epochs of 97 steps at batch 128, an accelerator job, not measured yet.
Paper: 22.97% top-1 error (LDAM-DRW, rho 100).
"""

from lt_jax.config import get_base_config
from lt_jax.methods import set_method


def get_config():
  c = get_base_config()
  return set_method(c, "ldam_drw")
