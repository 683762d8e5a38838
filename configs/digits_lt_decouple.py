"""digits-LT (rho 10): plain CE as stage 1, then cRT, LWS, tau-norm and post-hoc logit
adjustment on its frozen representation (Kang et al. 2020). Needs no download.

  python run.py --config=configs/digits_lt_decouple.py
  # stage 1 from a rotation-pre-trained backbone (SSP, then CE):
  python run.py --config=configs/digits_lt_decouple.py --config.pretrain.method=rotation

A largest class of 100 leaves 10 images per class for a balanced validation split (100 images),
on which tau is chosen and stage 1's best epoch selected (the one the second stages start
from). cRT (10 epochs) and LWS (5) use class-aware batches of 64 (an epoch is ceil(403 / 64) =
7 steps over the 403 training images), lr 0.2, cosine.

Runtime: 74 s with the compilation cache off (stage 1, cRT, LWS, tau-norm and logit adjustment)
  on a 2-core AMD EPYC with AVX-512 (2026-12-07).
Paper: none: the paper has no digits-LT runs.
"""

from configs import digits_lt_ce


def get_config():
  c = digits_lt_ce.get_config()
  c.dataset.img_max = 100
  c.dataset.val_per_class = 10
  c.decouple.methods = ("crt", "lws", "tau_norm", "logit_adjust")
  c.decouple.batch_size = 64
  return c
