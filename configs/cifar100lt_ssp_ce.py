"""CIFAR-100-LT SSP: rotation pre-training (rho 100), then ResNet-32 + CE from the backbone.

  python run.py --config=configs/cifar100lt_ssp_ce.py
"""

from configs import cifar10lt_ssp_ce


def get_config():
  c = cifar10lt_ssp_ce.get_config()
  c.dataset.name = "cifar100"
  return c
