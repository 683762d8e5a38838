"""digits-LT SSP: rotation pre-training on the 486 imbalanced digits, a linear probe, then
ResNet-32 + CE from the backbone.

  python run.py --config=configs/digits_lt_ssp_ce.py

Needs no download; a few minutes on a 2-core AMD EPYC (three stages of 60, 20 and 60 epochs).

Runtime: a few minutes on a 2-core AMD EPYC (three stages of 60, 20 and 60 epochs).
Paper: none: the paper has no digits-LT runs.
"""

from configs import digits_lt_ce


def get_config():
  c = digits_lt_ce.get_config()
  c.pretrain.method = "rotation"
  c.pretrain.probe_epochs = 20
  return c
