"""iNaturalist 2018, ResNet-50: MoCo v2 pre-training on the long-tailed training images, then
cross-entropy from the pre-trained backbone, then cRT; the paper's "cRT + SSP".

  python run.py --config=configs/inat18_ssp_crt.py --workdir=workdirs/inat18_ssp_crt \\
      --config.dataset.data_dir=/data/inat2018 --config.dataset.lists_dir=/data/iNaturalist18

Needs your own iNaturalist 2018 image folder and the split lists iNaturalist18_train.txt and
_val.txt (docs/DATA.md). Stages: workdir/stage1/pretrain, workdir/stage1/final
(configs/inat18_ce.py's recipe from the query encoder's backbone), workdir/crt.

The pre-training is the reference's pretrain_moco.py with --dataset inat (YyzHarry/
imbalanced-semi-self at 920fe01), the same settings as configs/imagenetlt_moco.py (200 epochs,
batch 128, lr 0.015, cosine, queue 65,536, m 0.999, T 0.2, MoCo v2's augmentation) on the
iNaturalist images with their normalisation. cRT is imagenet_inat/config/iNaturalist18/
cls_crt.yaml (at 760f039): the backbone fixed (in train mode: its BatchNorm statistics follow
the batches), class-aware batches of 512 (4 per class visit), lr 0.2 with a cosine to 0
stepped before each epoch, weight decay 1e-4, 30 epochs (LWS, if added: 5, as cls_lws.yaml).
The validation list is the test set, as in the reference (results.json flags selection on
it), so cRT starts from stage 1's last epoch, not from the best chosen on test; results.json
says so (stage1_checkpoint). The reference loads its test-selected best
(--config.decouple.stage1_checkpoint=best). 200 epochs of 3,419 steps, 90 more
and 30 of cRT through a ResNet-50 is a multi-accelerator job; no runtime has been measured.

The reference README (7cccaa2) reports 31.9% top-1 error for cRT + SSP with ResNet-50.

Runtime: 200 + 90 + 30 epochs through a ResNet-50, a multi-accelerator job, not measured yet.
Paper: 31.9% top-1 error for cRT + SSP (the reference README at 7cccaa2).
"""

from configs import imagenetlt_moco, inat18_ce

PRETRAIN_FIELDS = ("method", "num_epochs", "batch_size", "lr", "weight_decay", "momentum",
                   "queue_size", "encoder_momentum", "temperature", "proj_dim", "crop_scale",
                   "blur", "probe_epochs")


def get_config():
  c = inat18_ce.get_config()
  moco = imagenetlt_moco.get_config().pretrain
  for field in PRETRAIN_FIELDS:  # The same pre-training recipe on these images.
    c.pretrain[field] = moco[field]
  c.decouple.methods = ("crt",)
  c.decouple.num_epochs = 30
  c.decouple.batch_size = 512
  c.decouple.lr = 0.2
  c.decouple.weight_decay = 1e-4
  c.train.samples_per_class = 4
  return c
