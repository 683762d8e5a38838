"""Your own images: <data_dir>/train/<class>/*.png or .jpg (and test/<class>/, else 20% of
each class held out; optionally val/<class>/ to select on), trained as imbalanced as the folder
is; ResNet-32, cross-entropy, the CIFAR recipe at 100 epochs.

  python -m lt_jax.data.example_folder /tmp/my_digits     # an example folder, no download
  python run.py --config=configs/image_folder.py --config.dataset.data_dir=/tmp/my_digits \
      --config.augment.name=none

Class ids are the class folders' names in sorted order. Images of one size are read at that
size; mixed sizes are resized to dataset.image_size squared. Mean and std come from the
training images. dataset.imb_type='keep' takes every training image; 'exp' with
dataset.imbalance_ratio and dataset.img_max draws a long-tailed subset by the reference's rule
instead. Random crops and flips (augment.name='crop_flip') suit photos; images a few pixels
wide, as the example's 8x8 digits, train without them. Add --config.loss.name=ldam
--config.model.head=cosine --config.train.rule=drw (LDAM-DRW), semi.* (pseudo-labels from an
unlabeled folder) or pretrain.method (SSP) as for any dataset: README, "Your own images".

Runtime: 59 s for the example folder (403 digits, 8x8) on a 2-core AMD EPYC (2026-12-08); a
  photo folder's time grows with its images' number and size.
Paper: none: a folder of one's own has no published number; the paper's numbers are the CIFAR
  configs'.
"""

from lt_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.dataset.name = "image_folder"
  c.dataset.imb_type = "keep"  # The folder's own imbalance.
  c.train.num_epochs = 100
  c.train.drw_epoch = 80
  c.optim.decay_epochs = (80, 90)
  c.train.checkpoint_every_epochs = 10
  return c
