"""CIFAR-10-LT semi-supervised on CINIC-10: cifar10lt_semi.py's recipe (rho 50, ResNet-32, CE,
a pool of 5 x |D_L| = 69,980 images, rho_U 1, final batch 256) with the pool drawn from
CINIC-10's 210,000 ImageNet-derived images instead of the withdrawn TinyImages.

  python run.py --config=configs/cifar10lt_semi_cinic.py
  python run.py --config=configs/cifar10lt_semi_cinic.py --config.semi.unlabeled_ratio=20

Download CINIC-10.tar.gz (about 690 MB) from https://doi.org/10.7488/ds/2448 and extract it into
~/.lt_jax/data/cinic10 (or set semi.cinic10_dir). Only the `n<wnid>_*.png` files are read, never
the CIFAR-10-derived ones, so the pool shares no image with CIFAR-10's test set. The per-class
draw runs on the class folders (semi.pool_draw_on auto), as the reference's runs on its pool's
labels; they also measure pseudo-label accuracy. CINIC-10 holds 21,000 such images per class:
at factor 5, rho_U up to 20 fits. Three 200-epoch stages: an accelerator job.

Runtime: three 200-epoch stages, an accelerator job, not measured yet.
Paper: none for this pool; the paper's TinyImages pool gives 16.79% (cifar10lt_semi.py).
"""

from configs import cifar10lt_semi


def get_config():
  c = cifar10lt_semi.get_config()
  c.semi.pool_source = "cinic10"
  c.semi.tinyimages_path = None
  return c
