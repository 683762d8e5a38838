"""SVHN-LT (rho 100, largest class 1000 images, class order 1..9,0), ResNet-32, CE.

  python run.py --config=configs/svhnlt_ce.py

Needs train_32x32.mat and test_32x32.mat under ~/.lt_jax/data/svhn. The reference normalises
SVHN with mean and std 0.5. 200 epochs: an accelerator job.

Runtime: 200 epochs, an accelerator job, not measured yet.
Paper: none for CE alone in the reference README; its SVHN-LT numbers are semi-supervised
  (svhnlt_semi.py).
"""

from lt_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.dataset.name = "svhn"
  return c
