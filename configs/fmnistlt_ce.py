"""Fashion-MNIST-LT (rho 100, 28x28 grey), ResNet-32, cross-entropy.

  apt-get install -y dataset-fashion-mnist   # IDX files in /usr/share/datasets/fashion-mnist
  python run.py --config=configs/fmnistlt_ce.py

6000 images per class: the subset keeps 6000, 3596, ..., 60 (14,886 images). Random crop with
4-pixel padding and flip, as for CIFAR. 200 epochs take hours on 2 CPU cores; shorten with
--config.train.num_epochs (the schedule's epochs are in the config).

Runtime: 200 epochs take hours on 2 CPU cores; on an accelerator, not measured yet.
Paper: none: the paper has no Fashion-MNIST-LT runs; docs/RESULTS.md has measured ones at a CPU
  budget.
"""

from lt_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.dataset.name = "fashion_mnist"
  return c
