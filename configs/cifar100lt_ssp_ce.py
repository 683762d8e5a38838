"""CIFAR-100-LT SSP: rotation pre-training (rho 100), then ResNet-32 + CE from the backbone.

  python run.py --config=configs/cifar100lt_ssp_ce.py

Runtime: three stages of 200, 30 and 200 epochs, an accelerator job, not measured yet.
Paper: 59.60% top-1 error for CE + SSP at rho 100 (the reference README at 7cccaa2).
"""

from configs import cifar10lt_ssp_ce


def get_config():
  c = cifar10lt_ssp_ce.get_config()
  c.dataset.name = "cifar100"
  return c
