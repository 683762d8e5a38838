"""digits-LT semi-supervised: base model on 159 labeled images (rho 10), pseudo-label a
balanced pool of 790 unlabeled digits (5x, rho_U 1) drawn from the training images the labeled
subset left, retrain on both.

  python run.py --config=configs/digits_lt_semi.py

Needs no download; about 2.5 minutes on a 2-core AMD EPYC (AVX2, no AVX-512) for all three
stages. results.json holds stages.base, stages.pseudo_labels and stages.final.

Runtime: 78 s on a 2-core AMD EPYC with AVX-512 (2026-12-07); 1 min 34 s to 3 min on other
  2-core CPUs (docs/PERFORMANCE.md).
Paper: none: the paper has no digits-LT runs. The README's quick start gives this run's spread
  over seeds.
"""

from configs import digits_lt_ce


def get_config():
  c = digits_lt_ce.get_config()
  # The digits training split holds ~126 images per class: a labeled largest class of 40
  # leaves every class at least 85 for a pool of 79 per class.
  c.dataset.img_max = 40
  c.semi.enabled = True
  c.semi.unlabeled_ratio = 1.0
  c.semi.unlabeled_factor = 5
  c.semi.base_batch_size = 64
  c.train.batch_size = 128  # Final stage: D_L + D_U, twice the base batch as in the reference.
  return c
