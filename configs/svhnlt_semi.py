"""SVHN-LT semi-supervised: rho 50 (largest class 1000, class order 1..9,0), ResNet-32, CE; the
pool is drawn from SVHN's extra split (extra_32x32.mat), rho_U 1.

  python run.py --config=configs/svhnlt_semi.py

Needs train_32x32.mat, test_32x32.mat and extra_32x32.mat under ~/.lt_jax/data/svhn; compare
with the paper's Table 1.

Runtime: three 200-epoch stages, an accelerator job, not measured yet.
Paper: 13.07% top-1 error for CE + D_U@5x at rho 50, rho_U 1; 13.36, 13.16 and 14.54 at rho_U
  25, 50 and 100 (the reference README at 7cccaa2).
"""

from lt_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.dataset.name = "svhn"
  c.dataset.imbalance_ratio = 50.0
  c.semi.enabled = True
  c.semi.pool_source = "svhn_extra"
  c.train.batch_size = 256
  return c
