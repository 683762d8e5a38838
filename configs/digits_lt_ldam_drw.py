"""digits-LT (rho 10), ResNet-32, LDAM-DRW: the digits_lt_ce.py run with LDAM and DRW.

  python run.py --config=configs/digits_lt_ldam_drw.py

Needs no download; about as long as digits_lt_ce.py (2 minutes on a 2-core AMD EPYC).

Runtime: about as long as digits_lt_ce.py (2 minutes on a 2-core AMD EPYC without AVX-512).
Paper: none: the paper has no digits-LT runs.
"""

from configs import digits_lt_ce
from lt_jax.methods import set_method


def get_config():
  c = digits_lt_ce.get_config()
  return set_method(c, "ldam_drw")
