"""The dataset registry: one `DatasetSpec` per dataset holds everything lt_jax knows about it.

Its classes, normalisation, class order, channels, published splits, where its files live and
how they are read, and where its images live during training: on the device as uint8 arrays
when the dataset fits, or streamed from the host (grain) otherwise. Every other module asks the
registry instead of keeping its own table, so a new dataset is one entry in `DATASETS` (with a
reader from `sources`, or its own) plus a config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from lt_jax.data import sources
from lt_jax.errors import DataError

PLACEMENTS = ("device", "host")
SOURCE_KINDS = ("files", "tfds")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """One dataset. Fields left None are read from the data itself (a user's .npz)."""

  name: str
  placement: str  # "device": uint8 arrays on the accelerator; "host": files streamed by grain.
  num_classes: int | None  # None: the labels define it.
  channels: int | None  # Of the images the model sees; None: read from the file.
  mean: tuple[float, ...] | None  # Per-channel normalisation in [0, 1] units; None: the
  std: tuple[float, ...] | None  # training images' own statistics.
  splits: tuple[str, ...] = ("train", "test")  # The splits as published.
  class_order: tuple[int, ...] | None = None  # Class ids from largest to smallest in the
  # long-tailed subset; None: 0, 1, ..., C-1.
  img_max: float | None = None  # Default largest class of the subset; None: |train| / classes.
  find: Callable[..., Any] | None = None  # (spec, data_dir, options) -> location, or DataError.
  read: Callable[..., sources.Splits] | None = None  # (spec, location, options) -> Splits.
  layout: sources.Layout | None = None  # The files `find_layout` looks for.
  default_dir: str | None = None  # Where the files are when dataset.data_dir is empty.
  tfds_name: str | None = None  # Its name in TFDS, for dataset.source='tfds'.
  options: tuple[str, ...] = ()  # Keyword options `load` accepts for it.
  list_prefix: str | None = None  # Host-fed: split lists named <prefix>_<split>.txt
  # ("": <split>.txt).
  optional_splits: tuple[str, ...] = ()  # Host-fed: splits whose list may be absent.
  color_jitter: bool = False  # Host-fed: the reference's training adds ColorJitter(0.4, 0.4, 0.4).
  # Where channels is None: location (what `find` returned) -> the images' channels, read
  # without loading the images.
  channels_from: Callable[[Any], int] | None = None
  # Image files read into arrays: (location, log) -> what was checked, for run.py --check.
  check_files: Callable[[Any, Callable[[str], None]], str] | None = None
  # dataset.data_dir -> whether the data brings its own validation split (else one is drawn
  # by dataset.val_per_class, or there is none).
  has_val: Callable[[str | None], bool] | None = None
  # Like `read`, with each split's images an `image_source.ImageSource` decoded only when read:
  # what dataset.feed='host' trains from, a batch at a time (data too large to hold decoded).
  read_files: Callable[..., sources.Splits] | None = None

  @property
  def host_fed(self) -> bool:
    return self.placement == "host"

  def order(self, num_classes: int) -> tuple[int, ...]:
    """Class ids from the largest class of a long-tailed subset to the smallest."""
    return self.class_order or tuple(range(num_classes))


# The reference's CIFAR-10 statistics; it uses them for CIFAR-100 too.
_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2023, 0.1994, 0.2010)
# The reference normalises SVHN with 0.5 / 0.5 (train.py: "cifar" datasets get the CIFAR
# statistics, every other dataset .5).
_SVHN_MEAN = _SVHN_STD = (0.5, 0.5, 0.5)
# Population mean / std of the 60000 Fashion-MNIST training images scaled to [0, 1], computed
# once from Debian's dataset-fashion-mnist files: 0.2860406 / 0.3530242.
_FASHION_MEAN, _FASHION_STD = (0.2860,), (0.3530,)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The reference normalises iNaturalist 2018 with its own statistics.
_INAT_MEAN, _INAT_STD = (0.466, 0.471, 0.380), (0.195, 0.194, 0.192)

_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
_FASHION_URL = "https://github.com/zalandoresearch/fashion-mnist (folder data/fashion)"

_SPECS = (
    DatasetSpec(
        "cifar10", "device", 10, 3, _CIFAR_MEAN, _CIFAR_STD,
        find=sources.find_layout, read=sources.read_cifar10, default_dir="~/.lt_jax/data",
        tfds_name="cifar10",
        layout=sources.Layout(
            what=("the python-pickle archive folder 'cifar-10-batches-py' (data_batch_1..5, "
                  "test_batch)"),
            subfolder="cifar-10-batches-py",
            files=tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
            how=f"download and extract {_CIFAR10_URL} there, or set dataset.source='tfds'")),
    DatasetSpec(
        "cifar100", "device", 100, 3, _CIFAR_MEAN, _CIFAR_STD,
        find=sources.find_layout, read=sources.read_cifar100, default_dir="~/.lt_jax/data",
        tfds_name="cifar100",
        layout=sources.Layout(
            what="the python-pickle archive folder 'cifar-100-python' (train, test)",
            subfolder="cifar-100-python", files=("train", "test"),
            how=f"download and extract {_CIFAR100_URL} there, or set dataset.source='tfds'")),
    # SVHN is itself long-tailed, with digit 1 the most common and 0 among the rarest in
    # `train`: the reference gives the largest count (1,000) to class 1 and the smallest to 0.
    DatasetSpec(
        "svhn", "device", 10, 3, _SVHN_MEAN, _SVHN_STD, splits=("train", "test", "extra"),
        class_order=(1, 2, 3, 4, 5, 6, 7, 8, 9, 0), img_max=1000,
        find=sources.find_layout, read=sources.read_svhn, default_dir="~/.lt_jax/data/svhn",
        tfds_name="svhn_cropped", options=("extra",),  # extra=False skips the 531k extra images.
        layout=sources.Layout(
            what="the SVHN cropped-digit files 'train_32x32.mat' and 'test_32x32.mat'",
            subfolder="svhn", files=("train_32x32.mat", "test_32x32.mat"),
            how=(f"download train_32x32.mat and test_32x32.mat (optionally extra_32x32.mat) "
                 f"from {_SVHN_URL} there, or set dataset.source='tfds'"))),
    DatasetSpec(
        "fashion_mnist", "device", 10, 1, _FASHION_MEAN, _FASHION_STD,
        find=sources.find_layout, read=sources.read_idx,
        default_dir="/usr/share/datasets/fashion-mnist", tfds_name="fashion_mnist",
        layout=sources.Layout(
            what=("the Fashion-MNIST IDX files 'train-images-idx3-ubyte', "
                  "'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', "
                  "'t10k-labels-idx1-ubyte' (each plain or .gz)"),
            subfolder="fashion-mnist",
            files=("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                   "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
            how=("install them with `apt-get install -y dataset-fashion-mnist` (into "
                 "/usr/share/datasets/fashion-mnist), or download them from "
                 f"{_FASHION_URL} there, or set dataset.source='tfds'"),
            gz_ok=True)),
    # scikit-learn's 8x8 digits, inside the installed package; normalised by its own statistics.
    DatasetSpec("digits", "device", 10, 1, None, None, find=sources.find_bundled,
                read=sources.read_digits),
    # A user's arrays; classes, channels and statistics come from the file.
    DatasetSpec("npz", "device", None, None, None, None, find=sources.find_npz,
                read=sources.read_npz, options=("path", "num_classes"),
                channels_from=sources.npz_channels),
    # A user's folder of PNG / JPEG files, one sub-folder per class (sorted names: class ids);
    # classes, channels and statistics come from the images.
    DatasetSpec("image_folder", "device", None, None, None, None,
                find=sources.find_image_folder, read=sources.read_image_folder,
                options=("image_size", "test_fraction"), channels_from=sources.folder_channels,
                check_files=sources.check_folder_files, has_val=sources.folder_has_val,
                read_files=sources.image_folder_sources),
    # Liu et al. 2019: 115,846 training images in 1,000 classes; 20 validation and 50 test
    # images per class. Images decode to RGB.
    DatasetSpec("imagenet_lt", "host", 1000, 3, _IMAGENET_MEAN, _IMAGENET_STD,
                splits=("train", "val", "test"), list_prefix="ImageNet_LT", color_jitter=True),
    # 437,513 training images in 8,142 classes, 3 validation images per class; the validation
    # list serves as the test set. The reference trains it without colour jitter.
    DatasetSpec("inat18", "host", 8142, 3, _INAT_MEAN, _INAT_STD, splits=("train", "val"),
                list_prefix="iNaturalist18"),
    # A user's own lists in the same format: train.txt, test.txt and, when there is one,
    # val.txt; the classes are 1 + the largest label listed; photos: ImageNet's statistics.
    DatasetSpec("image_lists", "host", None, 3, _IMAGENET_MEAN, _IMAGENET_STD,
                splits=("train", "val", "test"), optional_splits=("val",), list_prefix=""),
)
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}


def get(name: str) -> DatasetSpec:
  """The registry entry of `name`; an unknown name lists the known ones."""
  if name not in DATASETS:
    raise DataError(f"unknown dataset name {name!r}; valid choices: {', '.join(DATASETS)}")
  return DATASETS[name]


def load(name: str, data_dir: str | None = None, source: str = "files", *,
         lazy: bool = False, **options: Any) -> sources.Dataset:
  """Reads device-resident dataset `name` from `source` ('files' or 'tfds') into uint8 NHWC
  arrays (`lazy`: image sources read on demand, where the entry has `read_files`). `data_dir`
  None means the entry's default folder for files and TFDS's own for tfds.
  Options: svhn `extra` (bool, default True); npz `path` (else data_dir) and `num_classes`."""
  spec = _checked(name, source, options)
  if lazy and spec.read_files is None:
    raise DataError(f"dataset {name!r} is read into arrays only; dataset.feed='host' serves "
                    f"{', '.join(feedable())}.")
  if source == "tfds":
    splits = sources.read_tfds(spec, data_dir, options)
  else:
    read = spec.read_files if lazy else spec.read
    splits = read(spec, spec.find(spec, data_dir, options), options)
  num_classes = splits.num_classes or spec.num_classes
  if spec.mean is None:
    if lazy:  # One pass over the files: say so, it is the run's first long wait.
      print(f"{name}: reading the {len(splits.train.labels):,} training images once for their "
            "channel mean and std", flush=True)
    mean, std = sources.channel_stats(splits.train.images)
  else:
    mean, std = spec.mean, spec.std
  return sources.Dataset(name, splits.train, splits.test, num_classes, tuple(mean), tuple(std),
                         splits.extra, splits.val)


def feedable() -> tuple[str, ...]:
  """The device-resident datasets that dataset.feed='host' can read a batch at a time."""
  return tuple(name for name, spec in DATASETS.items() if spec.read_files is not None)


def check_available(name: str, data_dir: str | None = None, source: str = "files",
                    **options: Any) -> None:
  """Raises DataError unless the files `load` needs exist; cheap, reads no image data."""
  spec = _checked(name, source, options)
  if source == "tfds":
    sources.check_tfds(spec, data_dir)
  else:
    spec.find(spec, data_dir, options)


def image_channels(name: str, data_dir: str | None = None, **options: Any) -> int:
  """Channels of the dataset's images, read without loading them (an .npz: its header)."""
  spec = get(name)
  if spec.channels is not None:
    return spec.channels
  return spec.channels_from(spec.find(spec, data_dir, options))


def _checked(name: str, source: str, options: Mapping[str, Any]) -> DatasetSpec:
  """The entry, once the source kind and the options suit it."""
  spec = get(name)
  if spec.host_fed:
    raise DataError(f"dataset {name!r} is streamed from the host through its split lists "
                    f"({spec.list_prefix}_<split>.txt), not loaded as arrays")
  if source not in SOURCE_KINDS:
    raise DataError(f"unknown dataset source {source!r}; valid choices: {', '.join(SOURCE_KINDS)}")
  if source == "tfds" and spec.tfds_name is None:
    with_tfds = [s.name for s in DATASETS.values() if s.tfds_name]
    raise DataError(f"dataset {name!r} has no tfds source; source='tfds' supports "
                    f"{', '.join(with_tfds)}; set dataset.source='files'")
  unknown = sorted(set(options) - set(spec.options))
  if unknown:
    raise DataError(f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; valid options: "
                    f"{', '.join(spec.options) or 'none'}")
  return spec
