"""CIFAR-10-LT SSP + LDAM-DRW: rotation pre-training, then LDAM-DRW from the backbone.

  python run.py --config=configs/cifar10lt_ssp_ldam_drw.py

Runtime: three stages of 200, 30 and 200 epochs, an accelerator job, not measured yet.
Paper: 22.17% top-1 error for LDAM-DRW + SSP at rho 100 (LDAM-DRW alone 22.97%).
"""

from configs import cifar10lt_ssp_ce
from lt_jax.methods import set_method


def get_config():
  c = cifar10lt_ssp_ce.get_config()
  return set_method(c, "ldam_drw")
