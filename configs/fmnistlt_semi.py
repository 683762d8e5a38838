"""Fashion-MNIST-LT semi-supervised: rho 100, ResNet-32, CE; the pool (5 x |D_L|, rho_U 1) is
drawn from the training images the labeled subset left.

  apt-get install -y dataset-fashion-mnist
  python run.py --config=configs/fmnistlt_semi.py

Fashion-MNIST has 6,000 training images per class, so the labeled subset keeps a largest class
of 2,500 (2,500 ... 25, 6,200 images) to leave room for a balanced pool of 3,100 per class.
200 epochs per stage take many hours on a CPU; docs/RESULTS.md gives the shortened budget used for
the measured comparison.

Runtime: three 200-epoch stages: many hours on a CPU; on an accelerator, not measured yet.
Paper: none: the paper has no Fashion-MNIST-LT runs; docs/RESULTS.md has measured ones at a CPU
  budget.
"""

from lt_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.dataset.name = "fashion_mnist"
  c.dataset.img_max = 2500
  c.semi.enabled = True
  c.semi.unlabeled_ratio = 1.0
  c.train.batch_size = 256
  return c
