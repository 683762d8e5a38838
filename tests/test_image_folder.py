"""A folder of one's own images (dataset.name=image_folder): read back exactly as written, in
the classes' sorted order; its own imbalance kept; every bad layout named with its fix; and a
run on it equal to a run on the same arrays, with pseudo-labels from an unlabeled folder and
rotation SSP on top."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from conftest import tiny_config
from PIL import Image

from lt_jax import inputs, pipeline, preflight, recipe
from lt_jax import workdir as workdir_lib
from lt_jax.checkpoint import restore_saved
from lt_jax.config import override
from lt_jax.data import datasets, example_folder, image_source, longtail, prepare, sources
from lt_jax.errors import ConfigError, DataError
from lt_jax.pretrain import contrastive_stage
from lt_jax.validate import validate

LT_COUNTS = longtail.class_counts(100, 10, "exp", 0.1)  # The example's training folder.


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("image_folder") / "digits"
  written = example_folder.write_digits_folder(str(root))
  assert written == {"train": sum(LT_COUNTS), "test": 539, "unlabeled": 1258 - sum(LT_COUNTS)}
  return root


def by_class_then_index(labels, indices):
  return np.concatenate([np.sort(indices[labels[indices] == c]) for c in range(10)])


def test_the_folder_reads_back_the_images_written_class_by_class(folder):
  data = datasets.load("image_folder", str(folder))
  digits = sources.read_digits(None, None, {})
  picked = longtail.longtail_indices(digits.train.labels, LT_COUNTS, seed=0)
  order = by_class_then_index(digits.train.labels, picked)  # Folder names, then file names.
  np.testing.assert_array_equal(data.train.images, digits.train.images[order])  # PNG: lossless.
  np.testing.assert_array_equal(data.train.labels, digits.train.labels[order])
  test_order = by_class_then_index(digits.test.labels, np.arange(539))
  np.testing.assert_array_equal(data.test.images, digits.test.images[test_order])
  assert data.num_classes == 10 and data.train.images.shape[1:] == (8, 8, 1)
  assert (data.mean, data.std) == sources.channel_stats(data.train.images)  # Its own.
  assert datasets.image_channels("image_folder", str(folder)) == 1


def test_class_ids_are_the_sorted_folder_names_and_the_imbalance_is_kept(folder, tmp_path):
  root = tmp_path / "named"
  shutil.copytree(folder / "train", root / "train")
  for digit, name in ((0, "zebra"), (9, "aardvark")):
    os.rename(root / "train" / str(digit), root / "train" / name)
  data = datasets.load("image_folder", str(root), test_fraction=0.25)
  # By name "1" < ... < "8" < "aardvark" (digit 9, 10 images) < "zebra" (digit 0, 100).
  n = np.bincount(data.train.labels, minlength=10) + np.bincount(data.test.labels, minlength=10)
  assert n.tolist() == [*LT_COUNTS[1:9], LT_COUNTS[9], LT_COUNTS[0]]
  # No test/ folder: round(0.25 n) of each class held out, the rest trained on.
  assert np.bincount(data.test.labels).tolist() == [int(round(0.25 * k)) for k in n]
  prepared = prepare.prepare(tiny_config(
      dataset__name="image_folder", dataset__data_dir=str(root), dataset__imb_type="keep",
      dataset__test_fraction=0.25).dataset)
  assert prepared.class_counts == np.bincount(data.train.labels).tolist()


def _rgb(path, size, value):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.new("RGB", size, value).save(path)


def test_photos_of_several_sizes_are_read_at_image_size_in_rgb(tmp_path):
  _rgb(tmp_path / "train" / "cat" / "a.png", (12, 10), (200, 10, 10))
  _rgb(tmp_path / "train" / "cat" / "b.jpg", (16, 16), (190, 20, 20))
  _rgb(tmp_path / "train" / "dog" / "c.png", (9, 9), (10, 10, 200))
  _rgb(tmp_path / "test" / "dog" / "d.png", (9, 9), (10, 10, 200))
  data = datasets.load("image_folder", str(tmp_path), image_size=6)
  assert data.train.images.shape == (3, 6, 6, 3) and data.train.labels.tolist() == [0, 0, 1]
  np.testing.assert_array_equal(data.test.images[0], np.full((6, 6, 3), (10, 10, 200)))
  with pytest.raises(DataError, match=r"come in 3 sizes .* set dataset.image_size"):
    datasets.load("image_folder", str(tmp_path), image_size=None)


def _png(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.new("L", (8, 8), 7).save(path)


def no_train(root):
  _png(root / "test" / "a" / "x.png")


def stray(root):
  _png(root / "train" / "a" / "x.png")
  _png(root / "train" / "loose.png")


def unknown_test_class(root):
  _png(root / "train" / "a" / "x.png")
  _png(root / "test" / "b" / "y.png")


def empty_class(root):
  _png(root / "train" / "a" / "x.png")
  os.makedirs(root / "train" / "b")


def unknown_val_class(root):
  _png(root / "train" / "a" / "x.png")
  _png(root / "test" / "a" / "y.png")
  _png(root / "val" / "c" / "z.png")


def broken(root):
  _png(root / "train" / "a" / "x.png")
  _png(root / "test" / "a" / "y.png")
  (root / "train" / "a" / "bad.png").write_bytes(b"not a png")


def no_test_images(root):
  _png(root / "train" / "a" / "x.png")


@pytest.mark.parametrize("make, fragments", [
    (no_train, ["train is not a folder", "<dataset.data_dir>/train/<class>/*.png"]),
    (stray, ["holds 1 images outside any class folder (e.g. loose.png)"]),
    (unknown_test_class, ["has class folders that train/ lacks (b)"]),
    (empty_class, ["train/b holds no .png or .jpg image", "remove the folder"]),
    (unknown_val_class, ["val has class folders that train/ lacks (c)"]),
    (broken, ["1 of the 3 image files cannot be used", "bad.png"]),
    (no_test_images, ["gives no test image", "dataset.test_fraction"]),
], ids=lambda x: getattr(x, "__name__", ""))
def test_a_bad_folder_is_named_with_its_fix(tmp_path, make, fragments):
  make(tmp_path)
  with pytest.raises(DataError) as info:
    datasets.load("image_folder", str(tmp_path), test_fraction=0.2)
  for fragment in fragments:
    assert fragment in str(info.value), str(info.value)


def test_image_folder_needs_its_folder_before_any_work(tmp_path):
  config = tiny_config(dataset__name="image_folder")
  with pytest.raises(DataError, match="needs dataset.data_dir"):
    pipeline.run(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def folder_config(folder, **fields):
  return override(tiny_config(train__num_epochs=1), **{
      "dataset.name": "image_folder", "dataset.data_dir": str(folder),
      "dataset.imb_type": "keep", **fields})


def test_a_run_on_the_folder_equals_a_run_on_the_same_arrays(folder, tmp_path):
  data = datasets.load("image_folder", str(folder))
  npz = tmp_path / "same.npz"
  np.savez(npz, x_train=data.train.images, y_train=data.train.labels,
           x_test=data.test.images, y_test=data.test.labels)
  on_folder = pipeline.run(folder_config(folder), str(tmp_path / "folder"))
  on_arrays = pipeline.run(folder_config(folder, **{"dataset.name": "npz",
                                                    "dataset.npz_path": str(npz)}),
                           str(tmp_path / "arrays"))
  assert on_folder["class_counts"] == LT_COUNTS  # Every training image: the folder's balance.
  assert on_folder["final"] == on_arrays["final"]
  assert on_folder["history"] == on_arrays["history"]


def test_the_folder_read_from_its_files_each_step_equals_the_run_holding_it_on_the_device(
    folder, tmp_path):
  # dataset.feed='host': the host draws each step's indices with the device sampler and reads
  # those files; the step augments them with the device's key. A long-tailed draw of the
  # folder (exp, not keep) and crop + flip, so that the subset and the keys are exercised.
  fields = {"dataset.imb_type": "exp", "dataset.img_max": 60, "augment.name": "crop_flip",
            "train.num_epochs": 2}
  lazy = prepare.prepare(folder_config(folder, **fields, **{"dataset.feed": "host"}).dataset)
  assert isinstance(lazy.train.images, image_source.ImageSource)  # Nothing decoded up front.
  runs = {feed: pipeline.run(folder_config(folder, **fields, **{"dataset.feed": feed}),
                             str(tmp_path / feed)) for feed in ("auto", "host")}
  assert runs["host"]["class_counts"] == runs["auto"]["class_counts"] == lazy.class_counts
  assert runs["host"]["history"] == runs["auto"]["history"]
  assert runs["host"]["final"] == runs["auto"]["final"]
  states = [restore_saved(workdir_lib.checkpoint_dir(str(tmp_path / feed), "last"))[0]
            for feed in ("auto", "host")]
  jax.tree.map(np.testing.assert_array_equal, states[0]["params"], states[1]["params"])


def test_pseudo_labels_from_an_unlabeled_folder_and_rotation_ssp_run_on_a_folder(
    folder, tmp_path):
  # Read from the files each step (dataset.feed='host', equal to holding them on the device
  # as the test above shows): D_L + the kept pool stay lazy, rotation rotates host batches.
  config = folder_config(folder, **{
      "dataset.feed": "host", "semi.enabled": True, "semi.pool_source": "image_folder",
      "semi.image_folder": str(folder / "unlabeled"), "semi.unlabeled_factor": 1,
      "semi.short_class_policy": "take_available", "semi.base_batch_size": 32})
  semi = pipeline.run(config, str(tmp_path / "semi"))
  labels = semi["stages"]["pseudo_labels"]
  assert labels["num_pool"] <= sum(LT_COUNTS) and labels["num_kept"] == labels["num_pool"]
  assert semi["stages"]["final"]["dataset"]["train_size"] == sum(LT_COUNTS) + labels["num_kept"]
  final = recipe.training_data(override(config, **{"semi.enabled": False,
                                                    "semi.pseudo_labels": labels["file"]}))
  assert isinstance(final.train.images, image_source.ImageSource)
  assert len(final.train.images) == sum(LT_COUNTS) + labels["num_kept"]
  ssp = pipeline.run(folder_config(folder, **{"dataset.feed": "host",
                                              "pretrain.method": "rotation",
                                              "pretrain.num_epochs": 1,
                                              "pretrain.probe_epochs": 0}),
                     str(tmp_path / "ssp"))
  assert ssp["stages"]["pretrain"]["final"]["per_class_count"] == [539] * 4
  assert ssp["stages"]["final"]["class_counts"] == LT_COUNTS


def test_check_reads_every_file_and_counts_the_folder(folder, tmp_path):
  report = preflight.check(folder_config(folder))
  assert report.status == preflight.READY
  assert (f"data: image_folder found; {sum(LT_COUNTS) + 539:,} images in 10 classes readable "
          f"(train {sum(LT_COUNTS)}, test 539)") in report.lines
  broken = tmp_path / "broken"
  shutil.copytree(folder / "train", broken / "train")
  (broken / "train" / "3" / "bad.png").write_bytes(b"\x89PNG not really")
  report = preflight.check(folder_config(broken))
  assert report.status == preflight.DATA_ABSENT
  assert "1 of the" in report.lines[-1] and "bad.png" in report.lines[-1]


@pytest.mark.parametrize("fields, stages", [
    ({"pretrain.method": "moco", "pretrain.queue_size": 64, "pretrain.proj_hidden": 16,
      "pretrain.proj_dim": 8, "pretrain.num_epochs": 1, "pretrain.probe_epochs": 0},
     {"pretrain", "final"}),
    ({"decouple.methods": ("crt", "tau_norm"), "decouple.num_epochs": 1,
      "decouple.batch_size": 32, "decouple.tune_on": "test"}, {"stage1", "crt", "tau_norm"}),
], ids=["moco", "decouple"])
def test_moco_and_decoupled_classifiers_run_on_a_folder(folder, tmp_path, fields, stages):
  out = pipeline.run(folder_config(folder, **fields), str(tmp_path))
  assert set(out["stages"]) == stages
  test_counts = np.bincount(sources.read_digits(None, None, {}).test.labels).tolist()
  assert out["final"]["per_class_count"] == test_counts  # Every test digit, once.


def test_moco_read_from_the_files_each_step_equals_moco_on_the_device(folder, tmp_path):
  fields = {"pretrain.method": "moco", "pretrain.queue_size": 64, "pretrain.proj_hidden": 16,
            "pretrain.proj_dim": 8, "pretrain.num_epochs": 2}
  out, states = {}, {}
  for feed in ("auto", "host"):
    config = folder_config(folder, **fields, **{"dataset.feed": feed})
    inp = inputs.labeled(config)
    assert isinstance(inp, inputs.StreamedInput) == (feed == "host")
    out[feed] = contrastive_stage.pretrain_and_evaluate(config, str(tmp_path / feed), inp)
    states[feed] = restore_saved(workdir_lib.checkpoint_dir(str(tmp_path / feed), "last"))[0]
  assert out["host"]["history"] == out["auto"]["history"]
  for key in ("params_q", "params_k", "queue"):
    jax.tree.map(np.testing.assert_array_equal, states["auto"][key], states["host"][key])


def test_a_grid_of_two_methods_and_two_seeds_runs_on_a_folder_held_or_read_each_step(
    folder, tmp_path):
  # Read from the files (dataset.feed='host'), each model takes its own batches, as its run
  # alone would: the grid equals the grid holding the images on the device, bit for bit. ce
  # and drw of a seed share a stream (read once); an LT draw and crop + flip use the keys.
  fields = {"grid.methods": ("ce", "drw"), "grid.seeds": (0, 1), "dataset.imb_type": "exp",
            "dataset.img_max": 60, "augment.name": "crop_flip"}
  counts = prepare.prepare(folder_config(folder, **fields).dataset).class_counts
  out = {feed: pipeline.run(folder_config(folder, **fields, **{"dataset.feed": feed}),
                            str(tmp_path / feed)) for feed in ("auto", "host")}
  names = [os.path.join(m, f"seed_{s}") for m in ("ce", "drw") for s in (0, 1)]
  for name in names:
    runs = {feed: json.loads((tmp_path / feed / "scratch" / name / "results.json").read_text())
            for feed in out}
    assert runs["host"]["class_counts"] == runs["auto"]["class_counts"] == list(counts)
    assert runs["host"]["history"] == runs["auto"]["history"]
    assert runs["host"]["final"] == runs["auto"]["final"]
    states = [restore_saved(workdir_lib.checkpoint_dir(
        str(tmp_path / feed / "scratch" / name), "last"))[0] for feed in ("auto", "host")]
    jax.tree.map(np.testing.assert_array_equal, states[0]["params"], states[1]["params"])
  histories = [json.loads((tmp_path / "host" / "scratch" / n / "results.json").read_text())[
      "history"] for n in names]
  assert histories[0] != histories[1]  # The seeds' models differ: each took its own batches.
  assert [(row["method"], row["seeds"]) for row in out["host"]["summary"]] == [("ce", 2),
                                                                              ("drw", 2)]


def test_a_val_folder_is_the_validation_split_and_selects_the_best_epoch(folder, tmp_path):
  root = tmp_path / "with_val"
  shutil.copytree(folder / "train", root / "train")
  shutil.copytree(folder / "test", root / "test")
  for digit in range(10):  # Two test digits per class become validation images.
    names = sorted(os.listdir(root / "test" / str(digit)))[:2]
    os.makedirs(root / "val" / str(digit))
    for name in names:
      os.rename(root / "test" / str(digit) / name, root / "val" / str(digit) / name)
  data = datasets.load("image_folder", str(root))
  assert data.val.labels.tolist() == [c for c in range(10) for _ in range(2)]
  assert len(data.test.labels) == 539 - 20
  out = pipeline.run(folder_config(root), str(tmp_path / "run"))
  assert out["selected_on"] == "val" and out["dataset"]["val_size"] == 20
  assert out["class_counts"] == LT_COUNTS  # The validation images come from val/, not train/.
  with pytest.raises(ConfigError, match=r"dataset.val_per_class=3, but image_folder brings its "
                                        r"own validation images"):
    pipeline.run(folder_config(root, **{"dataset.val_per_class": 3}), str(tmp_path / "both"))
  assert not (tmp_path / "both").exists()  # Refused before any work.


@pytest.mark.parametrize("fields, message", [
    ({"dataset.feed": "disk"}, r"dataset.feed='disk' is unknown; choose one of \('auto', 'host'\)"),
    ({"dataset.feed": "host", "dataset.name": "cifar10"},
     r"'cifar10' is read into arrays only \(dataset.feed='host' serves image_folder\)"),
])
def test_what_the_host_feed_does_not_serve_is_named_before_any_work(folder, fields, message):
  with pytest.raises(ConfigError, match=message):
    validate(folder_config(folder, **fields), check_data=False)
