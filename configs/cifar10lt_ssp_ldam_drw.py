"""CIFAR-10-LT SSP + LDAM-DRW: rotation pre-training, then LDAM-DRW from the backbone.

  python run.py --config=configs/cifar10lt_ssp_ldam_drw.py
"""

from configs import cifar10lt_ssp_ce
from lt_jax.methods import set_method


def get_config():
  c = cifar10lt_ssp_ce.get_config()
  return set_method(c, "ldam_drw")
