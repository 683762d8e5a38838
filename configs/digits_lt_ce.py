"""digits-LT (scikit-learn's bundled 8x8 digits, rho 10), ResNet-32, cross-entropy.

  python run.py --config=configs/digits_lt_ce.py

Needs no download. On a 2-core AMD EPYC with AVX-512 (2026-12-07): final (epoch 60) test top-1
96.10% (3.90% error), Few classes 89.6%; the best epoch, 16, chosen on the test set as the
reference does, 96.29%. Another CPU moves these by about as much as another seed does (an
earlier version on an EPYC without AVX-512: 95.18% final, Few 85.8%).

Runtime: 41 s from an empty compilation cache (the first training step at 9.3 s), 35 s from a
  filled one, on a 2-core AMD EPYC with AVX-512 (2026-12-07).
Paper: none: the paper has no digits-LT runs.
"""

from lt_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.dataset.name = "digits"
  c.dataset.imbalance_ratio = 10.0
  # 1258 training images in 10 classes (~126 per class, the smallest 122): a largest class of
  # 120 fits every class.
  c.dataset.img_max = 120
  c.augment.name = "none"  # 8x8 glyphs: a 4-pixel crop would cut half the digit away.
  c.train.num_epochs = 60
  c.train.batch_size = 64
  c.train.eval_batch_size = 100
  c.train.drw_epoch = 45
  c.train.checkpoint_every_epochs = 20
  c.train.log_every_steps = 100
  c.optim.warmup_epochs = 3
  c.optim.decay_epochs = (45, 55)
  return c
