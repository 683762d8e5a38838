"""Fashion-MNIST-LT (rho 100), ResNet-32, LDAM-DRW.

  python run.py --config=configs/fmnistlt_ldam_drw.py

Runtime: 200 epochs take hours on 2 CPU cores; on an accelerator, not measured yet.
Paper: none: the paper has no Fashion-MNIST-LT runs; docs/RESULTS.md has measured ones at a CPU
  budget.
"""

from lt_jax.config import get_base_config
from lt_jax.methods import set_method


def get_config():
  c = get_base_config()
  c.dataset.name = "fashion_mnist"
  return set_method(c, "ldam_drw")
