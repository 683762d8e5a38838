"""CIFAR-10-LT semi-supervised (the paper's Table 1 setting): rho 50, ResNet-32, CE; a base
model on D_L pseudo-labels a pool of 5 x |D_L| = 69,980 images (rho_U 1 by default) drawn from
the 80M TinyImages selection, as the reference does; then train again on both (batch 256).

  python run.py --config=configs/cifar10lt_semi.py
  python run.py --config=configs/cifar10lt_semi.py --config.semi.unlabeled_ratio=50

TinyImages was withdrawn by its authors, so lt_jax cannot fetch it: bring your own copy of the
reference's `ti_80M_selected.pickle` ('data' N x 32 x 32 x 3 uint8, 'extrapolated_targets')
and point semi.tinyimages_path at it. Without it the run stops at once and names the open
pools: cifar10lt_semi_cinic.py (CINIC-10's ImageNet images) and cifar10lt_semi_stl10.py
(STL-10's unlabelled split) run this same recipe. CIFAR-10's own training split cannot hold
this pool (the head class keeps all 5,000 of its images for D_L). Compare with the paper's
Table 1 (CE with and without pseudo-labels, rho 50). Three 200-epoch stages: an accelerator
job.

Runtime: three 200-epoch stages, an accelerator job, not measured yet.
Paper: 16.79% top-1 error for CE + D_U@5x at rho 50, rho_U 1; 16.88, 18.36 and 19.94 at rho_U
  25, 50 and 100 (the reference README at 7cccaa2).
"""

from lt_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.dataset.imbalance_ratio = 50.0
  c.semi.enabled = True
  c.semi.pool_source = "tinyimages"
  c.semi.tinyimages_path = "~/.lt_jax/data/ti_80M_selected.pickle"
  c.semi.unlabeled_ratio = 1.0
  c.train.batch_size = 256
  return c
