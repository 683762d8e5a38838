"""Fashion-MNIST-LT (rho 100), ResNet-32, LDAM-DRW.

  python run.py --config=configs/fmnistlt_ldam_drw.py
"""

from lt_jax.config import get_base_config
from lt_jax.methods import set_method


def get_config():
  c = get_base_config()
  c.dataset.name = "fashion_mnist"
  return set_method(c, "ldam_drw")
