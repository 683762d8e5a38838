"""The predictor: every kind of split gives what one direct application of the model to the
whole split gives, the padding dropped, in order, whatever the batch size and device count."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import fake_devices_env

from lt_jax import predict
from lt_jax.data import augment
from lt_jax.errors import ConfigError, DataError
from lt_jax.models import create_model
from lt_jax.train import members

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C, N = 7, 37
MEAN, STD = (0.45,), (0.25,)


def tiny_model(seed: int = 0):
  model = create_model("resnet_tiny", num_classes=C)
  variables = model.init(jax.random.key(seed), jnp.zeros((1, 8, 8, 1)), train=False)
  return model, jax.tree.map(np.asarray, variables)


@pytest.fixture(scope="module")
def case():
  rng = np.random.RandomState(0)
  images = rng.randint(0, 256, (N, 8, 8, 1)).astype(np.uint8)
  labels = rng.randint(0, C, N).astype(np.int32)
  return images, labels


def direct(model, variables, images):
  """The whole split in one model.apply."""
  logits, features = model.apply(variables, augment.normalize(images, MEAN, STD), train=False)
  return np.asarray(logits, np.float32), np.asarray(features, np.float32)


def expected_counts(logits, labels):
  """Confusion and top-5 hits counted image by image on the host."""
  confusion = np.zeros((C, C), np.int64)
  top5 = np.zeros(C, np.int64)
  for row, label in zip(logits, labels):
    confusion[label, int(np.argmax(row))] += 1
    top5[label] += label in np.argsort(-row, kind="stable")[:5]
  return confusion, top5


def host_rows(images, labels, batch_size):
  """Padded batches with their masks, as a list dataset's evaluation stream yields them."""
  for start in range(0, len(images), batch_size):
    n = min(batch_size, len(images) - start)
    image = np.zeros((batch_size, *images.shape[1:]), np.uint8)
    label = np.zeros(batch_size, np.int32)
    image[:n], label[:n] = images[start:start + n], labels[start:start + n]
    yield {"image": image, "label": label, "mask": np.arange(batch_size) < n}


def splits(predictor, images, labels):
  return {
      "device": predictor.put(images, labels),
      "host_images": predict.HostImages(images, labels),
      "host_batches": predict.HostBatches(
          lambda: host_rows(images, labels, predictor.batch_size), num_examples=len(images)),
  }


KINDS = ["device", "host_images", "host_batches"]


@pytest.mark.parametrize("batch_size", [8, 5, N, 64])
@pytest.mark.parametrize("kind", KINDS)
def test_every_split_kind_equals_one_direct_application(case, kind, batch_size):
  images, labels = case
  model, variables = tiny_model()
  logits, features = direct(model, variables, images)
  predictor = predict.Predictor(model, MEAN, STD, C, batch_size=batch_size)
  split = splits(predictor, images, labels)[kind]

  counts = predictor.counts(variables, split)
  confusion, top5 = expected_counts(logits, labels)
  np.testing.assert_array_equal(counts["confusion"], confusion)
  np.testing.assert_array_equal(counts["top5_correct"], top5)
  assert counts["confusion"].sum() == N  # The padding counts nowhere.

  got = predictor.outputs(variables, split)
  np.testing.assert_allclose(got.logits, logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got.features, features, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(got.labels, labels)  # In the split's order.

  pred, confidence = predictor.labels(variables, split, scale=3.0)
  np.testing.assert_array_equal(pred, np.argmax(logits, axis=1))
  z = 3.0 * logits - np.max(3.0 * logits, axis=1, keepdims=True)
  softmax = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
  np.testing.assert_allclose(confidence, softmax.max(axis=1), rtol=1e-5, atol=1e-6)
  assert pred.dtype == np.int64 and confidence.dtype == np.float32


def test_split_counts_mapped_over_stacked_models_equals_each_model_alone(case):
  """What a grid does: one pure count function mapped over its models' stacked states."""
  images, labels = case
  model, first = tiny_model(0)
  _, second = tiny_model(1)
  predictor = predict.Predictor(model, MEAN, STD, C, batch_size=8)
  split = predictor.put(images, labels)
  stacked = members.stack([first, second])
  for how in ("vmap", "unroll"):
    both = jax.device_get(jax.jit(members.map_models(predictor.split_counts, how, 2))(
        stacked, split))
    for i, variables in enumerate((first, second)):
      want, _ = expected_counts(direct(model, variables, images)[0], labels)
      np.testing.assert_array_equal(both["confusion"][i], want)


def test_an_empty_split_gives_empty_outputs_of_the_right_width():
  model, variables = tiny_model()
  predictor = predict.Predictor(model, MEAN, STD, C, batch_size=8)
  empty = predict.HostImages(np.zeros((0, 8, 8, 1), np.uint8))
  logits, features, labels = predictor.outputs(variables, empty)
  width = variables["params"]["head"]["kernel"].shape[0]
  assert logits.shape == (0, C) and features.shape == (0, width) and labels.shape == (0,)
  pred, confidence = predictor.labels(variables, empty)
  assert pred.shape == confidence.shape == (0,)
  assert predictor.counts(variables, empty)["confusion"].sum() == 0


def test_bad_batch_sizes_and_images_are_named(case):
  model, variables = tiny_model()
  with pytest.raises(ConfigError, match=r"semi.label_batch_size=0 must be positive"):
    predict.Predictor(model, MEAN, STD, C, batch_size=0, field="semi.label_batch_size")
  predictor = predict.Predictor(model, MEAN, STD, C, batch_size=8)
  with pytest.raises(DataError, match=r"uint8 \[N, H, W, C\], got float32"):
    predictor.labels(variables, predict.HostImages(case[0].astype(np.float32)))


EIGHT_DEVICES = textwrap.dedent("""
  import numpy as np, jax, sys
  sys.path.insert(0, {tests!r})
  import test_predict as t
  assert jax.device_count() == 8, jax.devices()
  case = np.load({path!r})
  images, labels = case["images"], case["labels"]
  model, variables = t.tiny_model()
  # 5 rows a batch do not split over 8 devices: each batch is padded to 8.
  predictor = t.predict.Predictor(model, t.MEAN, t.STD, t.C, batch_size=5)
  assert predictor.batch_size == 8
  out = {{}}
  for kind, split in t.splits(predictor, images, labels).items():
    out[kind + "_confusion"] = predictor.counts(variables, split)["confusion"]
    out[kind + "_logits"] = predictor.outputs(variables, split).logits
  np.savez({out!r}, **out)
""")


def test_eight_devices_give_the_counts_and_outputs_of_one(case, tmp_path):
  images, labels = case
  path, out = tmp_path / "case.npz", tmp_path / "out.npz"
  np.savez(path, images=images, labels=labels)
  code = EIGHT_DEVICES.format(tests=f"{ROOT}/tests", path=str(path), out=str(out))
  proc = subprocess.run([sys.executable, "-c", code], env=fake_devices_env(8),
                        capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  model, variables = tiny_model()
  logits, _ = direct(model, variables, images)
  confusion, _ = expected_counts(logits, labels)
  got = np.load(out)
  for kind in KINDS:
    np.testing.assert_array_equal(got[kind + "_confusion"], confusion)
    np.testing.assert_allclose(got[kind + "_logits"], logits, rtol=1e-5, atol=1e-5)
