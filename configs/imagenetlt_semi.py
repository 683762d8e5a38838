"""ImageNet-LT semi-supervised: the ImageNet-LT CE recipe (imagenetlt_ce.py) as the base model,
which pseudo-labels a pool drawn from the ImageNet training images that ImageNet-LT's lists
leave out (about 1.15 million), then a final model on both. This is the pool the paper's
author suggests for ImageNet-LT (the reference's issue #18); the paper itself reports no
semi-supervised ImageNet-LT number.

  python run.py --config=configs/imagenetlt_semi.py --workdir=workdirs/imagenetlt_semi \\
      --config.dataset.data_dir=/data/imagenet --config.dataset.lists_dir=/data/ImageNet_LT

The pool (semi.pool_source='same_split': for a list dataset, every image in its training
folders that no split list names) is drawn by the paper's rho_U rule, 5 x |D_L| = 579,230
images (rho_U 1: 579 per class), on the classes the base model predicts, not on ImageNet's
folder labels: unlabeled data comes without labels (the folder labels only measure the
pseudo-labels' accuracy). ImageNet-LT's head classes keep nearly all their ImageNet images
(up to 1,280 of about 1,300), so their folders alone could not hold the request. A class the
base model predicts too rarely gives every image predicted for it
(semi.short_class_policy='take_available'; report.json lists the shortfall per class).

The stages: a 90-epoch base model, one forward pass over the 1.15 million pool images, and a
90-epoch final model on up to 695,076 images.

Runtime: a multi-accelerator job, not measured yet.
Paper: none (the paper's ImageNet-LT results are SSP's: imagenetlt_ssp_crt.py).
"""

from configs import imagenetlt_ce


def get_config():
  c = imagenetlt_ce.get_config()
  c.semi.enabled = True
  c.semi.pool_source = "same_split"
  c.semi.pool_draw_on = "predictions"
  c.semi.short_class_policy = "take_available"
  c.semi.unlabeled_ratio = 1.0
  c.semi.unlabeled_factor = 5
  c.semi.base_batch_size = c.train.batch_size
  c.semi.label_batch_size = 1024
  return c
