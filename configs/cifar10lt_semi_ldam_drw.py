"""CIFAR-10-LT semi-supervised with LDAM-DRW: cifar10lt_semi.py with the LDAM loss (cosine
head) and deferred re-weighting in both the base and the final stage.

  python run.py --config=configs/cifar10lt_semi_ldam_drw.py

Needs the TinyImages selection (see cifar10lt_semi.py); compare with the paper's Table 1.

Runtime: three 200-epoch stages, an accelerator job, not measured yet.
Paper: see the paper's Table 1 (LDAM-DRW with and without D_U, rho 50); the reference README
  quotes only CE, 16.79% with D_U at rho_U 1.
"""

from configs import cifar10lt_semi
from lt_jax.methods import set_method


def get_config():
  c = cifar10lt_semi.get_config()
  return set_method(c, "ldam_drw")
