"""The reference's PyTorch recipe, timed: ResNet-32 fed by a DataLoader, for side-by-side runs.

  python benchmarks/torch_reference.py --data_dir=/tmp/fmnist_cifar --epochs=3 --workers=16

The reference (`train.py` of the paper's code) trains on the long-tailed CIFAR-10 subset
through `torch.utils.data.DataLoader` (batch 128, shuffled, worker processes doing RandomCrop
with 4-pixel zero padding, horizontal flip, ToTensor and Normalize per image), reads the loss
and accuracy back every step (`loss.item()`), and evaluates the 10,000 test images (batch 100)
after every epoch. This script does the same on the same files and subset (drawn by lt_jax,
whose indices equal the reference's) and prints one JSON line: seconds per epoch (train plus
evaluation) and training images per second, both over the epochs after the first, and the
evaluation's seconds. PyTorch is needed here only; lt_jax never imports it.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch.nn import functional

from lt_jax.config import get_base_config
from lt_jax.data import prepare

NUM_CLASSES = 10


def torch_resnet32(num_classes: int = NUM_CLASSES) -> torch.nn.Module:
  """The reference's ResNet-32 (`resnet_cifar.py`, option-A shortcut), written out here."""
  nn = torch.nn

  class Block(nn.Module):
    def __init__(self, in_planes, planes, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(planes)
      self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(planes)
      self.pad = (planes - in_planes) // 2 if stride != 1 or in_planes != planes else None

    def forward(self, x):
      out = functional.relu(self.bn1(self.conv1(x)))
      out = self.bn2(self.conv2(out))
      shortcut = x
      if self.pad is not None:
        shortcut = functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
      return functional.relu(out + shortcut)

  class ResNet32(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(16)
      layers, in_planes = [], 16
      for i, planes in enumerate((16, 32, 64)):
        for j in range(5):
          layers.append(Block(in_planes, planes, 2 if i > 0 and j == 0 else 1))
          in_planes = planes
      self.layers = nn.Sequential(*layers)
      self.linear = nn.Linear(64, num_classes)
      for m in self.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
          nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
      out = self.layers(functional.relu(self.bn1(self.conv1(x))))
      return self.linear(functional.adaptive_avg_pool2d(out, 1).flatten(1))

  return ResNet32()


class ImageDataset(torch.utils.data.Dataset):
  """uint8 NHWC images; per item, in the worker: optional crop + flip, ToTensor, Normalize."""

  def __init__(self, images, labels, mean, std, train: bool):
    self.images, self.labels, self.train = images, labels.astype(np.int64), train
    self.mean = np.asarray(mean, np.float32)[:, None, None]
    self.std = np.asarray(std, np.float32)[:, None, None]

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    image = self.images[i]
    if self.train:
      padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
      top, left = np.random.randint(0, 9, size=2)
      image = padded[top:top + 32, left:left + 32]
      if np.random.rand() < 0.5:
        image = image[:, ::-1]
    x = (np.ascontiguousarray(image.transpose(2, 0, 1), np.float32) / 255.0 - self.mean) / self.std
    return torch.from_numpy(x), int(self.labels[i])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", required=True, help="folder holding cifar-10-batches-py")
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--workers", type=int, default=4)
  parser.add_argument("--img_max", type=int, default=None, help="largest class (default 5000)")
  args = parser.parse_args()
  ds = get_base_config().dataset
  ds.data_dir, ds.img_max = args.data_dir, args.img_max
  data = prepare.prepare(ds)
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  loader = lambda split, train, batch: torch.utils.data.DataLoader(
      ImageDataset(split.images, split.labels, data.mean, data.std, train), batch_size=batch,
      shuffle=train, num_workers=args.workers, pin_memory=device.type == "cuda",
      persistent_workers=args.workers > 0)
  train_loader = loader(data.train, True, 128)
  test_loader = loader(data.test, False, 100)
  torch.manual_seed(0)
  model = torch_resnet32().to(device)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
  epoch_s, train_s, eval_s = [], [], []
  for _ in range(args.epochs):
    start = time.perf_counter()
    model.train()
    for x, y in train_loader:
      x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
      out = model(x)
      loss = functional.cross_entropy(out, y)
      optimizer.zero_grad()
      loss.backward()
      optimizer.step()
      loss.item(), (out.argmax(1) == y).float().mean().item()  # The reference's meters.
    trained = time.perf_counter()
    model.eval()
    correct = 0
    with torch.no_grad():
      for x, y in test_loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        correct += int((model(x).argmax(1) == y).sum())
    done = time.perf_counter()
    epoch_s.append(done - start)
    train_s.append(trained - start)
    eval_s.append(done - trained)
  later = slice(1, None) if args.epochs > 1 else slice(None)
  n = len(data.train.labels)
  print(json.dumps({"device": str(device), "train_images": n, "epochs": args.epochs,
                    "epoch_s": float(np.mean(epoch_s[later])),
                    "train_images_per_s": n / float(np.mean(train_s[later])),
                    "eval_s": float(np.mean(eval_s[later])),
                    "test_top1": 100.0 * correct / len(data.test.labels)}))


if __name__ == "__main__":
  main()
