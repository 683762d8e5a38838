"""The unlabeled pool: candidate sources, the reference's seeded draw, and what fits."""

import pickle

import numpy as np
import pytest

from lt_jax.data import longtail, unlabeled
from lt_jax.data.sources import Dataset, Split
from lt_jax.errors import ConfigError, DataError

SVHN_ORDER = (1, 2, 3, 4, 5, 6, 7, 8, 9, 0)


def fingerprinted(first, labels, shape=(2, 2, 3)):
  """Images whose pixels spell their id (first, first + 1, ...) in base 256: each is unique."""
  ids = np.arange(first, first + len(labels))
  size = int(np.prod(shape))
  digits = np.stack([(ids >> (8 * b)) & 255 for b in range(min(3, size))], axis=-1)
  images = np.zeros((len(ids), size), np.uint8)
  images[:, :digits.shape[1]] = digits
  return Split(images.reshape((len(ids),) + shape), np.asarray(labels, np.int64))


def fingerprint(images):
  flat = images.reshape(len(images), -1)[:, :3].astype(np.int64)
  return flat[:, 0] + (flat[:, 1] << 8) + (flat[:, 2] << 16)


def dataset(train_labels, test_labels=(), extra_labels=None, shape=(2, 2, 3), name="cifar10"):
  n_train, n_test = len(train_labels), len(test_labels)
  extra = None if extra_labels is None else fingerprinted(n_train + n_test, extra_labels, shape)
  return Dataset(name, fingerprinted(0, train_labels, shape),
                 fingerprinted(n_train, test_labels, shape), 10, (0.5,) * shape[-1],
                 (0.5,) * shape[-1], extra)


def reference_draw(labels, counts, pool_truth, pool_counts, seed, order):
  """The reference: labeled subset then pool, on numpy's global legacy generator."""
  np.random.seed(seed)
  labeled, pool = [], []
  for cls, n in zip(order, counts):
    idx = np.where(labels == cls)[0]
    np.random.shuffle(idx)
    labeled.extend(idx[:n].tolist())
  for cls, n in zip(order, pool_counts):
    idx = np.where(pool_truth == cls)[0]
    np.random.shuffle(idx)
    pool.extend(idx[:n].tolist())
  return np.asarray(labeled), np.asarray(pool)


# --- the draw ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed,order", [(0, tuple(range(10))), (1, SVHN_ORDER), (123, None)])
def test_selection_replays_reference(seed, order):
  gen = np.random.default_rng(seed)
  labels = gen.integers(0, 10, size=3000)
  truth = gen.integers(0, 10, size=5000)
  counts = longtail.class_counts(200, 10, "exp", 0.05)
  pool_counts = longtail.unlabeled_counts(sum(counts), 10, 10, 1)
  ref_order = np.unique(labels) if order is None else order
  want_labeled, want_pool = reference_draw(labels, counts, truth, pool_counts, seed, ref_order)

  r = np.random.RandomState(seed)
  got_labeled = longtail.longtail_indices(labels, counts, class_order=order, rng=r)
  images = fingerprinted(0, truth).images
  pool = unlabeled.select_pool(images, truth, pool_counts, ref_order, r, source="svhn_extra")
  np.testing.assert_array_equal(got_labeled, want_labeled)
  np.testing.assert_array_equal(pool.source_indices, want_pool)
  np.testing.assert_array_equal(fingerprint(pool.images), want_pool)
  np.testing.assert_array_equal(pool.true_labels, truth[want_pool])
  assert pool.requested_counts == longtail.counts_by_class(pool_counts, ref_order, 10)


def test_pool_counts_cifar10_rho50_rhou25():
  expected = [21651, 15138, 10587, 7403, 5176, 3619, 2530, 1769, 1237, 863]
  num_labeled = sum(longtail.class_counts(5000, 10, "exp", 1 / 50))
  counts = longtail.unlabeled_counts(num_labeled, 10, 25, 5)
  assert num_labeled == 13996 and counts == expected
  truth = np.repeat(np.arange(10), 22000)
  images = np.zeros((len(truth), 1, 1, 1), np.uint8)
  pool = unlabeled.select_pool(images, truth, counts, range(10), np.random.RandomState(0),
                               source="tinyimages")
  assert np.bincount(pool.true_labels, minlength=10).tolist() == expected
  assert pool.requested_counts == expected
  assert len(np.unique(pool.source_indices)) == sum(expected)


def test_leaves_global_generator_alone():
  np.random.seed(7)
  before = np.random.rand()
  np.random.seed(7)
  truth = np.repeat(np.arange(3), 10)
  unlabeled.select_pool(np.zeros((30, 1, 1, 1), np.uint8), truth, [5, 3, 1], range(3),
                        np.random.RandomState(0), source="npz")
  assert np.random.rand() == before


def test_counts_must_match_classes():
  with pytest.raises(ConfigError, match="semi.unlabeled_ratio"):
    unlabeled.select_pool(np.zeros((4, 1, 1, 1), np.uint8), np.zeros(4, np.int64), [1, 1],
                          range(3), np.random.RandomState(0), source="npz")


def test_whole_pool_draws_nothing():
  truth = np.array([0, 2, 2, 1])
  r = np.random.RandomState(0)
  pool = unlabeled.select_pool(np.zeros((4, 1, 1, 1), np.uint8), truth, None, range(3), r,
                               source="npz", source_indices=np.array([9, 8, 7, 6]))
  assert pool.requested_counts == [1, 1, 2]
  np.testing.assert_array_equal(pool.source_indices, [9, 8, 7, 6])
  assert r.randint(1 << 30) == np.random.RandomState(0).randint(1 << 30)
  blind = unlabeled.select_pool(np.zeros((4, 1, 1, 1), np.uint8), None, None, range(3), r,
                                source="npz")
  assert blind.true_labels is None and blind.requested_counts == []


# --- the draw on predicted classes ----------------------------------------------------

# |D_L| = 70 over 3 classes, rho_U 10, factor 5: T = 350, floor(T / 3) = 116, raw counts
# int(116 * 0.1 ** (i / 2)) = 116, 36, 11 (sum 163), rescaled by 350 / 163 and truncated.
HAND_COUNTS = [249, 77, 23]


def predicted(per_class, seed=0):
  """Predicted classes with the given count of each class id, in a shuffled order."""
  pred = np.repeat(np.arange(len(per_class)), per_class)
  np.random.default_rng(seed).shuffle(pred)
  return pred


def test_draw_on_predictions_gives_the_rho_u_counts_and_replays_the_reference():
  assert longtail.unlabeled_counts(70, 3, 10, 5) == HAND_COUNTS
  order = (2, 0, 1)  # Counts follow the labeled subset's class order: class 2 is the head.
  labels = np.repeat(np.arange(3), 50)
  labeled_counts = [40, 20, 10]
  pred = predicted([120, 90, 300])
  want_labeled, want_pool = reference_draw(labels, labeled_counts, pred, HAND_COUNTS, 5, order)

  r = np.random.RandomState(5)
  got_labeled = longtail.longtail_indices(labels, labeled_counts, class_order=order, rng=r)
  cand = unlabeled.Candidates(fingerprinted(0, pred).images, None, np.arange(len(pred)) + 1000)
  request = unlabeled.request_pool(cand, HAND_COUNTS, order, r, source="stl10_unlabeled")
  assert request.requested_counts == [77, 23, 249]  # Per class id.
  picked = unlabeled.draw_by_predictions(request, pred)
  np.testing.assert_array_equal(got_labeled, want_labeled)
  np.testing.assert_array_equal(picked, want_pool)
  assert np.bincount(pred[picked], minlength=3).tolist() == [77, 23, 249]


def test_draw_on_predictions_names_the_short_classes_before_drawing():
  cand = unlabeled.Candidates(np.zeros((365, 1, 1, 1), np.uint8), None, np.arange(365))
  r = np.random.RandomState(0)
  request = unlabeled.request_pool(cand, HAND_COUNTS, range(3), r, source="stl10_unlabeled",
                                   labeled_counts=[40, 20, 10], unlabeled_ratio=10,
                                   unlabeled_factor=5)
  state = r.get_state()[1].copy()
  with pytest.raises(ConfigError) as info:
    unlabeled.draw_by_predictions(request, predicted([300, 60, 5]))
  msg = str(info.value)
  assert ("class 1: 77 asked for, the base model predicts it for 60; class 2: 23 asked for, "
          "the base model predicts it for 5") in msg
  assert "class 0:" not in msg and "semi.pool_draw_on" in msg
  real = unlabeled.max_fitting_factor(70, 3, 10, [300, 60, 5])
  assert f"at most {int(real)} (the largest real factor that fits is {real:.2f}" in msg
  np.testing.assert_array_equal(r.get_state()[1], state)  # Nothing drawn before the error.


# --- what fits --------------------------------------------------------------------------


@pytest.mark.parametrize("num_labeled,classes", [(13996, 10), (12406, 10), (10847, 100),
                                                 (7443, 10), (37, 3), (5, 1)])
@pytest.mark.parametrize("ratio", [1, 2.5, 10, 25, 100])
def test_real_factor_counts_equal_reference_at_integers(num_labeled, classes, ratio):
  for factor in (1, 2, 3, 5, 7):
    assert (unlabeled.unlabeled_counts_real(num_labeled, classes, ratio, float(factor))
            == longtail.unlabeled_counts(num_labeled, classes, ratio, factor))


def fmnist_available(img_max=3000, rho=100):
  """Fashion-MNIST's same-split pool: 6000 training images per class minus the labeled ones."""
  labeled = longtail.class_counts(img_max, 10, "exp", 1 / rho)
  return labeled, [6000 - n for n in labeled]


def fits(num_labeled, ratio, factor, available):
  counts = unlabeled.unlabeled_counts_real(num_labeled, 10, ratio, factor)
  return all(u <= a for u, a in zip(counts, available))


@pytest.mark.parametrize("ratio,whole,real", [(1, 4, 4.03), (2, 2, 2.92), (10, 1, 1.64),
                                              (50, 1, 1.12), (100, 0, 0.99)])
def test_fashion_mnist_fit(ratio, whole, real):
  labeled, available = fmnist_available()
  num_labeled = sum(labeled)
  assert num_labeled == 7443 and available[0] == 3000
  assert unlabeled.max_fitting_factor(num_labeled, 10, ratio, available, decimals=0) == whole
  got = unlabeled.max_fitting_factor(num_labeled, 10, ratio, available)
  assert got == real
  assert fits(num_labeled, ratio, got, available)
  assert not fits(num_labeled, ratio, round(got + 0.01, 2), available)


def test_fashion_mnist_factor5_needs_smaller_img_max():
  # rho_U 1, factor 5 asks floor(5 * |D_L| / 10) per class: 3721 > 3000 at img_max 3000.
  labeled, available = fmnist_available(3000)
  assert longtail.unlabeled_counts(sum(labeled), 10, 1, 5) == [3721] * 10
  assert not fits(sum(labeled), 1, 5, available)
  labeled, available = fmnist_available(2678)
  assert fits(sum(labeled), 1, 5, available)
  assert not fits(sum(fmnist_available(2679)[0]), 1, 5, fmnist_available(2679)[1])


def test_max_factor_edges():
  assert unlabeled.max_fitting_factor(0, 3, 1, [0, 0, 0]) == float("inf")
  # An empty class fits only while T = f * |D_L| < C leaves every class empty.
  assert unlabeled.max_fitting_factor(100, 2, 1, [0, 1000]) == 0.01
  assert unlabeled.max_fitting_factor(100, 2, 1, [0, 1000], decimals=0) == 0.0
  assert unlabeled.max_fitting_factor(100, 1, 1, [250]) == 2.5


# --- shortages --------------------------------------------------------------------------


def fmnist_like(img_max=3000, ratio=1, factor=5):
  labels = np.repeat(np.arange(10), 6000)
  data = dataset(labels, shape=(1, 1, 1), name="fashion_mnist")
  counts = longtail.class_counts(img_max, 10, "exp", 0.01)
  r = np.random.RandomState(0)
  picked = longtail.longtail_indices(labels, counts, rng=r)
  cand = unlabeled.candidate_pool("same_split", data, excluded_train_indices=picked)
  pool_counts = longtail.unlabeled_counts(sum(counts), 10, ratio, factor)
  return cand, pool_counts, counts, r


def test_short_class_message_suggests_factor():
  cand, pool_counts, counts, r = fmnist_like()
  state = r.get_state()[1].copy()
  with pytest.raises(ConfigError) as info:
    unlabeled.select_pool(cand.images, cand.labels, pool_counts, range(10), r, source="same_split",
                          source_indices=cand.source_indices, labeled_counts=counts,
                          unlabeled_ratio=1, unlabeled_factor=5)
  msg = str(info.value)
  assert "semi.unlabeled_ratio=1 with semi.unlabeled_factor=5" in msg
  assert ("class 0: 3721 asked for, but the training split keeps only 3000 after the labeled "
          "subset took 3000") in msg and "class 1" not in msg
  assert "at most 4" in msg and "4.03" in msg and "dataset.img_max" in msg
  np.testing.assert_array_equal(r.get_state()[1], state)  # Nothing drawn before the error.


def test_factor_that_fits_is_accepted():
  cand, pool_counts, counts, r = fmnist_like(factor=4)
  pool = unlabeled.select_pool(cand.images, cand.labels, pool_counts, range(10), r,
                               source="same_split", source_indices=cand.source_indices)
  assert np.bincount(pool.true_labels, minlength=10).tolist() == pool_counts


def test_every_short_class_listed():
  truth = np.repeat(np.arange(3), [300, 60, 5])
  counts = longtail.unlabeled_counts(70, 3, 10, 5)
  assert counts == [249, 77, 23]
  with pytest.raises(ConfigError) as info:
    unlabeled.select_pool(np.zeros((365, 1, 1, 1), np.uint8), truth, counts, range(3),
                          np.random.RandomState(0), source="tinyimages",
                          labeled_counts=[40, 20, 10], unlabeled_ratio=10, unlabeled_factor=5)
  msg = str(info.value)
  assert "class 1: 77 asked for, 60 exist; class 2: 23 asked for, 5 exist" in msg
  assert "class 0:" not in msg and "larger pool" in msg
  real = unlabeled.max_fitting_factor(70, 3, 10, [300, 60, 5])
  assert f"at most {int(real)} (the largest real factor that fits is {real:.2f}" in msg


def test_ratio_hint_when_another_rho_u_fits():
  # rho_U 10 at factor 1 asks [50, 15, 4]; the nearest grid ratio that fits 40 is 2: [32, 22, 15].
  truth = np.repeat(np.arange(3), [40, 100, 100])
  with pytest.raises(ConfigError, match=r"class 0: 50 asked for, 40 exist.*semi.unlabeled_ratio=2"):
    unlabeled.select_pool(np.zeros((240, 1, 1, 1), np.uint8), truth, [50, 15, 4], range(3),
                          np.random.RandomState(0), source="svhn_extra",
                          labeled_counts=[40, 20, 10], unlabeled_ratio=10, unlabeled_factor=1)


def test_short_class_without_context_gives_fraction():
  with pytest.raises(ConfigError, match=r"class 1: 4 asked for, 2 exist.*at most 50%"):
    unlabeled.select_pool(np.zeros((5, 1, 1, 1), np.uint8), np.array([0, 0, 0, 1, 1]), [3, 4],
                          range(2), np.random.RandomState(0), source="npz")


# --- same_split -------------------------------------------------------------------------


def test_same_split_excludes_labeled_validation_and_test():
  gen = np.random.default_rng(0)
  data = dataset(gen.integers(0, 10, 4000), gen.integers(0, 10, 500))
  rest, val = longtail.validation_split(data.train.labels, 10, seed=0)
  counts = longtail.class_counts(100, 10, "exp", 0.1)
  r = np.random.RandomState(0)
  picked = rest[longtail.longtail_indices(data.train.labels[rest], counts, rng=r)]
  excluded = np.concatenate([picked, val])
  cand = unlabeled.candidate_pool("same_split", data, excluded_train_indices=excluded)
  assert len(cand.images) == 4000 - len(excluded)
  pool_counts = longtail.unlabeled_counts(sum(counts), 10, 5, 2)
  pool = unlabeled.select_pool(cand.images, cand.labels, pool_counts, range(10), r,
                               source="same_split", source_indices=cand.source_indices)
  prints = fingerprint(pool.images)
  test_prints = set(fingerprint(data.test.images).tolist())
  assert not test_prints & set(prints.tolist())
  assert not set(excluded.tolist()) & set(pool.source_indices.tolist())
  np.testing.assert_array_equal(prints, pool.source_indices)  # Train fingerprint = train index.
  np.testing.assert_array_equal(pool.true_labels, data.train.labels[pool.source_indices])
  assert np.bincount(pool.true_labels, minlength=10).tolist() == pool_counts


def test_same_split_needs_exclusions():
  data = dataset(np.arange(10))
  with pytest.raises(ValueError, match="excluded_train_indices"):
    unlabeled.candidate_pool("same_split", data)
  with pytest.raises(ValueError, match="outside"):
    unlabeled.candidate_pool("same_split", data, excluded_train_indices=np.array([10]))


def test_unknown_source():
  with pytest.raises(ConfigError, match="semi.pool_source"):
    unlabeled.candidate_pool("imagenet", dataset(np.arange(10)))


# --- svhn_extra -------------------------------------------------------------------------


def test_svhn_extra():
  data = dataset(np.arange(10), np.arange(10), extra_labels=np.arange(30) % 10, name="svhn")
  cand = unlabeled.candidate_pool("svhn_extra", data)
  np.testing.assert_array_equal(fingerprint(cand.images), np.arange(20, 50))
  np.testing.assert_array_equal(cand.labels, np.arange(30) % 10)
  np.testing.assert_array_equal(cand.source_indices, np.arange(30))
  with pytest.raises(DataError, match="extra_32x32.mat is expected in the SVHN folder"):
    unlabeled.candidate_pool("svhn_extra", dataset(np.arange(10), name="svhn"))


# --- tinyimages -------------------------------------------------------------------------


def write_pickle(path, blob):
  with open(path, "wb") as f:
    pickle.dump(blob, f)
  return str(path)


def tiny_blob(n=40, shape=(32, 32, 3), targets=None):
  data = np.zeros((n,) + shape, np.uint8)
  data[:, 0, 0, 0] = np.arange(n)
  return {"data": data, "extrapolated_targets": np.arange(n) % 10 if targets is None else targets}


def cifar_like():
  return dataset(np.arange(10), shape=(32, 32, 3))


def test_tinyimages_reads_reference_layout(tmp_path):
  path = write_pickle(tmp_path / unlabeled.TINYIMAGES_FILE, tiny_blob())
  for where in (path, str(tmp_path)):  # The file, or its folder.
    cand = unlabeled.candidate_pool("tinyimages", cifar_like(), tinyimages_path=where)
    np.testing.assert_array_equal(cand.images[:, 0, 0, 0], np.arange(40))
    np.testing.assert_array_equal(cand.labels, np.arange(40) % 10)
    assert cand.labels.dtype == np.int64


def test_tinyimages_missing(tmp_path):
  with pytest.raises(DataError, match="withdrawn by its authors.*semi.tinyimages_path") as info:
    unlabeled.candidate_pool("tinyimages", cifar_like())
  for open_pool in ("configs/cifar10lt_semi_cinic.py", "configs/cifar10lt_semi_stl10.py",
                    "https://doi.org/10.7488/ds/2448", "tfds build stl10"):
    assert open_pool in str(info.value)
  with pytest.raises(DataError, match="ti_80M_selected.pickle.*withdrawn"):
    unlabeled.candidate_pool("tinyimages", cifar_like(), tinyimages_path=str(tmp_path))


@pytest.mark.parametrize("blob,match", [
    (tiny_blob(shape=(32, 32, 1)), r"'data' is uint8 \(40, 32, 32, 1\)"),
    ({**tiny_blob(), "data": tiny_blob()["data"].astype(np.float32)}, "'data' is float32"),
    (tiny_blob(targets=np.arange(40)), "'extrapolated_targets' spans 0..39"),
    (tiny_blob(targets=np.arange(39)), r"'extrapolated_targets' has shape \(39,\)"),
    (tiny_blob(targets=np.zeros(40)), "'extrapolated_targets' is float64"),
    ({"data": tiny_blob()["data"]}, "expected a dict with keys"),
    ([1, 2], "holds list"),
])
def test_tinyimages_malformed(tmp_path, blob, match):
  path = write_pickle(tmp_path / "ti.pickle", blob)
  with pytest.raises(DataError, match=match):
    unlabeled.candidate_pool("tinyimages", cifar_like(), tinyimages_path=path)


def test_tinyimages_unreadable_and_wrong_size(tmp_path):
  bad = tmp_path / "bad.pickle"
  bad.write_bytes(b"not a pickle")
  with pytest.raises(DataError, match="not a readable pickle"):
    unlabeled.candidate_pool("tinyimages", cifar_like(), tinyimages_path=str(bad))
  path = write_pickle(tmp_path / "ti.pickle", tiny_blob())
  fmnist = dataset(np.arange(10), shape=(28, 28, 1), name="fashion_mnist")
  with pytest.raises(DataError, match=r"\(32, 32, 3\).*\(28, 28, 1\)"):
    unlabeled.candidate_pool("tinyimages", fmnist, tinyimages_path=path)


# --- npz --------------------------------------------------------------------------------


def fmnist_small():
  return dataset(np.arange(10), shape=(4, 4, 1), name="fashion_mnist")


def test_npz_with_labels(tmp_path):
  x = np.arange(20 * 16, dtype=np.uint8).reshape(20, 4, 4)  # NHW: a channel is added.
  y = (np.arange(20) % 10).reshape(20, 1)
  path = tmp_path / "pool.npz"
  np.savez(path, x_unlabeled=x, y_unlabeled=y)
  cand = unlabeled.candidate_pool("npz", fmnist_small(), npz_path=str(path))
  assert cand.images.shape == (20, 4, 4, 1)
  np.testing.assert_array_equal(cand.labels, np.arange(20) % 10)
  pool = unlabeled.select_pool(cand.images, cand.labels, [2] * 10, range(10),
                               np.random.RandomState(0), source="npz")
  assert np.bincount(pool.true_labels).tolist() == [2] * 10


def test_npz_without_labels_is_drawn_on_predictions(tmp_path):
  path = tmp_path / "pool.npz"
  np.savez(path, x_unlabeled=np.zeros((50, 4, 4, 1), np.uint8))
  cand = unlabeled.candidate_pool("npz", fmnist_small(), npz_path=str(path))
  assert cand.labels is None
  assert unlabeled.draw_rule("auto", "npz", cand.labels) == "predictions"
  assert unlabeled.draw_rule("auto", "npz", np.zeros(50, np.int64)) == "labels"
  with pytest.raises(ConfigError, match="pool_draw_on='labels'.*'predictions'"):
    unlabeled.draw_rule("labels", "npz", cand.labels)
  with pytest.raises(ValueError, match="draw_by_predictions"):
    unlabeled.select_pool(cand.images, None, [10, 5, 3], range(3), np.random.RandomState(4),
                          source="npz")
  # 12 labeled images, rho_U 1, factor 5 ask for 60 in all: only the total is known before the
  # base model is trained, and factor 4 (48 images) is the largest that fits.
  with pytest.raises(ConfigError, match=r"asks for 60 unlabeled images.*only 50.*at most 4"):
    unlabeled.request_pool(cand, [20, 20, 20], range(3), np.random.RandomState(4), source="npz",
                           labeled_counts=[5, 4, 3], unlabeled_ratio=1, unlabeled_factor=5)


@pytest.mark.parametrize("arrays,match", [
    ({"x_unlabeled": np.zeros((5, 4, 4, 1), np.float32)}, "'x_unlabeled' is float32"),
    ({"x_unlabeled": np.zeros((5, 16), np.uint8)}, r"'x_unlabeled' has shape \(5, 16\)"),
    ({"x_train": np.zeros((5, 4, 4), np.uint8)}, "lacks the array 'x_unlabeled'"),
    ({"x_unlabeled": np.zeros((5, 4, 4), np.uint8), "y_unlabeled": np.arange(5) + 8},
     "'y_unlabeled' spans 8..12"),
    ({"x_unlabeled": np.zeros((5, 8, 8), np.uint8)}, r"\(8, 8, 1\).*\(4, 4, 1\)"),
    ({"x_unlabeled": np.zeros((5, 1, 6, 6), np.uint8)}, r"channel-first.*\(5, 6, 6, 1\)"),
])
def test_npz_malformed(tmp_path, arrays, match):
  path = tmp_path / "pool.npz"
  np.savez(path, **arrays)
  with pytest.raises(DataError, match=match):
    unlabeled.candidate_pool("npz", fmnist_small(), npz_path=str(path))


def test_npz_missing(tmp_path):
  with pytest.raises(DataError, match="needs semi.pool_npz_path"):
    unlabeled.candidate_pool("npz", fmnist_small())
  with pytest.raises(DataError, match="expected an .npz file"):
    unlabeled.candidate_pool("npz", fmnist_small(), npz_path=str(tmp_path / "none.npz"))
  bad = tmp_path / "bad.npz"
  bad.write_bytes(b"junk")
  with pytest.raises(DataError, match="not a readable .npz"):
    unlabeled.candidate_pool("npz", fmnist_small(), npz_path=str(bad))
