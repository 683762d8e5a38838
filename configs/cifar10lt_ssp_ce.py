"""CIFAR-10-LT SSP: rotation-prediction pre-training on the same imbalanced images (rho 100,
labels unused), a linear probe of the frozen backbone, then ResNet-32 + CE fine-tuned from the
pre-trained backbone (every layer; the head re-initialised).

  python run.py --config=configs/cifar10lt_ssp_ce.py

Three stages of 200 / 30 / 200 epochs: an accelerator job. Compare with the paper's Table 3
(CE with and without SSP).

Runtime: three stages of 200, 30 and 200 epochs, an accelerator job, not measured yet.
Paper: 26.50% top-1 error for CE + SSP at rho 100 (the reference README at 7cccaa2; CE alone
  29.64%).
"""

from lt_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.pretrain.method = "rotation"
  return c
