"""ImageNet-LT, ResNet-50: MoCo v2 pre-training, cross-entropy from the pre-trained backbone,
then cRT (a class-balanced classifier re-trained on the frozen representation); the paper's
"cRT + SSP".

  python run.py --config=configs/imagenetlt_ssp_crt.py --workdir=workdirs/imagenetlt_ssp_crt \\
      --config.dataset.data_dir=/data/imagenet --config.dataset.lists_dir=/data/ImageNet_LT

Needs your own ImageNet (ILSVRC 2012) folder and the ImageNet-LT split lists (docs/DATA.md).
Stages: workdir/stage1/pretrain (configs/imagenetlt_moco.py's MoCo v2), workdir/stage1/final
(configs/imagenetlt_ce.py's CE from that backbone), workdir/crt. cRT is the reference's
imagenet_inat/config/ImageNet_LT/cls_crt.yaml (YyzHarry/imbalanced-semi-self at 760f039): the
backbone fixed, a new linear classifier, class-aware batches of 512 (4 images per class visit),
SGD momentum 0.9, lr 0.2 with a cosine to 0 stepped before each epoch (the last at lr 0),
weight decay 5e-4, 10 epochs (the decouple.* defaults; LWS, if added, 5 epochs as
cls_lws.yaml). The backbone stays in train mode, as the reference's run_networks.py
`model.train()`, so its BatchNorm statistics follow the class-aware batches
(--config.decouple.update_bn_stats=False freezes them). cRT starts from stage 1's best epoch on
the validation list, as the reference loads `state_dict_best`.
A multi-accelerator job; no runtime has been measured.
--config.decouple.methods="('crt','tau_norm')" adds tau-norm of stage 1's classifier
(workdir/tau_norm: no training, tau tuned on the validation list); 'logit_adjust' likewise.

The reference README (7cccaa2) reports 48.7% top-1 error for cRT + SSP with ResNet-50.

Runtime: MoCo v2, CE and cRT through a ResNet-50, a multi-accelerator job, not measured yet.
Paper: 48.7% top-1 error for cRT + SSP (the reference README at 7cccaa2).
"""

from configs import imagenetlt_moco


def get_config():
  c = imagenetlt_moco.get_config()
  c.decouple.methods = ("crt",)
  c.decouple.num_epochs = 10
  c.decouple.batch_size = 512
  c.decouple.lr = 0.2
  c.decouple.weight_decay = 5e-4
  c.train.samples_per_class = 4
  return c
