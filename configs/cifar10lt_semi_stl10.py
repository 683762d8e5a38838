"""CIFAR-10-LT semi-supervised on STL-10: cifar10lt_semi.py's recipe (rho 50, ResNet-32, CE, a
pool of 5 x |D_L| = 69,980 images, rho_U 1, final batch 256) with the pool drawn from STL-10's
100,000 unlabelled images (96x96, box-averaged to 32x32) instead of the withdrawn TinyImages.

  python run.py --config=configs/cifar10lt_semi_stl10.py

Prepare it once (2.46 GiB download): `tfds build stl10 --file_format=array_record` (set
semi.tfds_data_dir when not TFDS's default folder). The split has no labels, so the per-class
rho_U draw runs on the classes the frozen base model predicts, in the pseudo-label stage; the
pseudo-label report then has no accuracy. STL-10 has monkey where CIFAR-10 has frog, and its
unlabelled images include other animals and vehicles, so a rarely predicted class can fall
short of its count: the run then stops after labeling, before the final stage, naming the
short classes, what factor or rho_U fits, and how to reuse the trained base model.
Three 200-epoch stages: an accelerator job.

Runtime: three 200-epoch stages, an accelerator job, not measured yet.
Paper: none for this pool; the paper's TinyImages pool gives 16.79% (cifar10lt_semi.py).
"""

from configs import cifar10lt_semi


def get_config():
  c = cifar10lt_semi.get_config()
  c.semi.pool_source = "stl10_unlabeled"
  c.semi.tinyimages_path = None
  return c
