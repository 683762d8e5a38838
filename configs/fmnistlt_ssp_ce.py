"""Fashion-MNIST-LT SSP: rotation pre-training on the imbalanced images (rho 100), a linear
probe, then ResNet-32 + CE from the backbone.

  apt-get install -y dataset-fashion-mnist
  python run.py --config=configs/fmnistlt_ssp_ce.py

200 epochs per stage take many hours on a CPU; docs/RESULTS.md gives the shortened budget used for
the measured comparison.

Runtime: three stages of 200, 30 and 200 epochs: many hours on a CPU; on an accelerator, not
  measured yet.
Paper: none: the paper has no Fashion-MNIST-LT runs; docs/RESULTS.md has measured ones at a CPU
  budget.
"""

from lt_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.dataset.name = "fashion_mnist"
  c.pretrain.method = "rotation"
  return c
