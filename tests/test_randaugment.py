"""RandAugment (FixMatch's RandAugmentMC(2, 10)) in JAX against PIL, the library the reference
calls: each op at every level and direction on fixed RGB and greyscale images, the cutout, the
law of the random choices, and whole strong views rebuilt op by op with PIL."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps
from sklearn.datasets import load_digits

from lt_jax.data import randaugment as ra

# Ops whose arithmetic is integer or a table lookup in PIL: equal to the pixel.
EXACT = ("equalize", "identity", "posterize", "solarize", "rotate", "shear_x", "shear_y",
         "translate_x", "translate_y")
# PIL's Image.blend: a float32 product and sum, truncated. XLA may fuse the two into one
# multiply-add, which can move a value whose exact blend is within rounding of an integer.
BLENDS = ("brightness", "color", "contrast", "sharpness")


def fixed_images():
  """Three 32 x 32 RGB images (digits scaled up, coloured, with noise, clipped at 0 and 255)
  and two 28 x 28 greyscale ones."""
  digits = load_digits().images
  out = []
  for i in range(3):
    g = np.kron(digits[i], np.ones((4, 4))) * 15
    ramp = np.linspace(0, 60, 32)
    rgb = np.stack([g + ramp[None, :], 0.7 * g + ramp[:, None], 255 - 0.8 * g], -1)
    rgb += np.random.default_rng(i).normal(0, 8, rgb.shape)
    out.append(np.clip(rgb, 0, 255).astype(np.uint8))
  for i in range(3, 5):
    g = np.kron(digits[i], np.ones((4, 4)))[2:30, 2:30] * 15 + 10
    out.append(np.clip(g, 0, 255).astype(np.uint8)[..., None])
  return out


IMAGES = fixed_images()


def to_pil(image):
  return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def from_pil(picture, channels):
  a = np.asarray(picture).astype(np.int64)
  return a[..., None] if channels == 1 else a


def pil_op(name, picture, magnitude):
  """The reference's call for each op (kekmodel/FixMatch-pytorch dataset/randaugment.py at
  01f41b07), with the magnitude it computes."""
  size = picture.size
  return {
      "autocontrast": lambda: ImageOps.autocontrast(picture),
      "brightness": lambda: ImageEnhance.Brightness(picture).enhance(magnitude),
      "color": lambda: ImageEnhance.Color(picture).enhance(magnitude),
      "contrast": lambda: ImageEnhance.Contrast(picture).enhance(magnitude),
      "equalize": lambda: ImageOps.equalize(picture),
      "identity": lambda: picture,
      "posterize": lambda: ImageOps.posterize(picture, int(magnitude)),
      "rotate": lambda: picture.rotate(magnitude),
      "sharpness": lambda: ImageEnhance.Sharpness(picture).enhance(magnitude),
      "shear_x": lambda: picture.transform(size, Image.AFFINE, (1, magnitude, 0, 0, 1, 0)),
      "shear_y": lambda: picture.transform(size, Image.AFFINE, (1, 0, 0, magnitude, 1, 0)),
      "solarize": lambda: ImageOps.solarize(picture, 256 - int(magnitude)),
      "translate_x": lambda: picture.transform(
          size, Image.AFFINE, (1, 0, int(magnitude * size[0]), 0, 1, 0)),
      "translate_y": lambda: picture.transform(
          size, Image.AFFINE, (1, 0, 0, 0, 1, int(magnitude * size[1]))),
  }[name]()


@functools.cache
def jitted_op():
  return jax.jit(ra.apply_op)


def ours(index, image, level, negative):
  out = jitted_op()(index, jnp.asarray(image, jnp.float32), level, negative)
  return np.asarray(out).astype(np.int64)


def cases(op):
  for image in IMAGES:
    for level in range(1, 10):
      for negative in ((False, True) if op.signed else (False,)):
        magnitude = op.magnitude(level) * (-1 if negative else 1)
        yield image, level, negative, magnitude


def test_the_pool_is_fixmatchs_with_its_magnitudes():
  assert ra.OP_NAMES == ("autocontrast", "brightness", "color", "contrast", "equalize",
                         "identity", "posterize", "rotate", "sharpness", "shear_x", "shear_y",
                         "solarize", "translate_x", "translate_y")
  by_name = dict(zip(ra.OP_NAMES, ra.OPS))
  # v * max_v / 10 + bias, as the reference computes it (its _float / _int_parameter).
  assert [by_name["brightness"].magnitude(v) for v in (1, 5, 9)] == [0.14, 0.5, 0.86]
  assert [by_name["posterize"].magnitude(v) for v in (1, 3, 9)] == [4, 5, 7]
  assert [by_name["rotate"].magnitude(v) for v in (1, 9)] == [3, 27]
  assert [by_name["solarize"].magnitude(v) for v in (1, 9)] == [25, 230]
  assert by_name["shear_x"].magnitude(4) == 0.3 * 4 / 10


@pytest.mark.parametrize("name", EXACT)
def test_each_exact_op_equals_pil_at_every_level_and_direction(name):
  index = ra.OP_NAMES.index(name)
  op = ra.OPS[index]
  for image, level, negative, magnitude in cases(op):
    want = from_pil(pil_op(name, to_pil(image), magnitude), image.shape[-1])
    np.testing.assert_array_equal(ours(index, image, level, negative), want,
                                  err_msg=f"{name} level {level} negative {negative}")


@pytest.mark.parametrize("name", BLENDS)
def test_each_blend_is_pils_to_one_level_on_a_few_pixels(name):
  index = ra.OP_NAMES.index(name)
  differing = total = 0
  for image, level, negative, magnitude in cases(ra.OPS[index]):
    want = from_pil(pil_op(name, to_pil(image), magnitude), image.shape[-1])
    diff = np.abs(ours(index, image, level, negative) - want)
    assert diff.max() <= 1, (name, level)
    differing, total = differing + np.sum(diff > 0), total + diff.size
  assert differing / total < 0.01, (name, differing / total)


def test_autocontrast_is_the_exact_stretch_and_pils_where_that_is_not_an_integer():
  # PIL tabulates int(x * scale + offset) in doubles, which lands just under an exact integer
  # now and then; ours is the exact floor((x - lo) * 255 / (hi - lo)) in integers.
  index = ra.OP_NAMES.index("autocontrast")
  for image in IMAGES:
    x = image.astype(np.int64)
    lo, hi = x.min(axis=(0, 1)), x.max(axis=(0, 1))
    exact = (x - lo) * 255 // (hi - lo)
    got = ours(index, image, 5, False)
    np.testing.assert_array_equal(got, exact)
    want = from_pil(ImageOps.autocontrast(to_pil(image)), image.shape[-1])
    on_integer = ((x - lo) * 255) % (hi - lo) == 0
    assert np.all(got[~on_integer] == want[~on_integer])
    assert np.all(np.abs(got - want)[on_integer] <= 1)
  flat = np.full((8, 8, 3), 77, np.uint8)  # Nothing to stretch: unchanged.
  np.testing.assert_array_equal(ours(index, flat, 5, False), flat)


def pil_cutout(image, x, y, side):
  """The reference's CutoutAbs with the centre given instead of drawn."""
  picture = to_pil(image).copy()
  w, h = picture.size
  x0, y0 = int(max(0, x - side / 2.0)), int(max(0, y - side / 2.0))
  x1, y1 = int(min(w, x0 + side)), int(min(h, y0 + side))
  fill = 127 if image.shape[-1] == 1 else (127, 127, 127)
  ImageDraw.Draw(picture).rectangle((x0, y0, x1, y1), fill)
  return from_pil(picture, image.shape[-1])


@pytest.mark.parametrize("x, y", [(16.0, 16.0), (0.3, 31.9), (31.99, 2.5), (9.5, 20.25)])
def test_cutout_paints_pils_rectangle_far_edge_included(x, y):
  for image in (IMAGES[0], IMAGES[3]):
    side = ra.cutout_side(image.shape)
    assert side == image.shape[0] // 2  # 16 on 32 x 32, FixMatch's CutoutAbs(16).
    got = np.asarray(ra.cutout(jnp.asarray(image, jnp.float32), x, y, side)).astype(np.int64)
    np.testing.assert_array_equal(got, pil_cutout(image, x, y, side))
  centred = np.asarray(ra.cutout(jnp.zeros((32, 32, 1)), 16.0, 16.0, 16))[..., 0]
  assert np.sum(centred == 127) == 17 * 17  # x0 = 8 .. x1 = 24 inclusive.


def test_the_draw_follows_randaugment_mcs_law():
  keys = jax.random.split(jax.random.key(0), 4000)
  policies = jax.vmap(lambda k: ra.draw_policy(k, (32, 32, 3)))(keys)
  ops = np.asarray(policies.ops).ravel()
  levels = np.asarray(policies.levels).ravel()
  n = ops.size  # 8,000 draws: 2 per image.
  # Ops uniform with replacement over 14, levels uniform over 1 .. 9 (numpy's randint(1, 10)),
  # each applied and each turned with probability 1/2: within 4.5 standard deviations.
  np.testing.assert_allclose(np.bincount(ops, minlength=14) / n, 1 / 14,
                             atol=4.5 * np.sqrt(1 / 14 * 13 / 14 / n))
  assert levels.min() == 1 and levels.max() == 9
  np.testing.assert_allclose(np.bincount(levels, minlength=10)[1:] / n, 1 / 9,
                             atol=4.5 * np.sqrt(1 / 9 * 8 / 9 / n))
  for flags in (policies.applied, policies.negative):
    assert abs(np.mean(flags) - 0.5) < 4.5 * np.sqrt(0.25 / n)
  assert np.mean(policies.ops[:, 0] == policies.ops[:, 1]) > 0  # With replacement.
  centres = np.asarray(policies.center)
  assert centres.min() >= 0 and centres.max() < 32 and abs(centres.mean() - 16) < 0.5


def pil_strong_view(image, policy, side):
  """The strong view rebuilt with PIL: the policy's applied ops in order, then the cutout."""
  picture = to_pil(image)
  for index, level, applied, negative in zip(*(np.asarray(a) for a in (
      policy.ops, policy.levels, policy.applied, policy.negative))):
    if applied:
      op = ra.OPS[int(index)]
      magnitude = op.magnitude(int(level)) * (-1 if negative and op.signed else 1)
      picture = pil_op(op.name, picture, magnitude)
  x, y = (float(v) for v in np.asarray(policy.center))
  return pil_cutout(from_pil(picture, image.shape[-1]).astype(np.uint8), x, y, side)


def test_a_batch_of_strong_views_is_each_images_policy_applied_with_pil():
  images = np.stack([IMAGES[i % 3] for i in range(12)])
  key = jax.random.key(7)
  views = np.asarray(jax.jit(ra.rand_augment_batch)(key, jnp.asarray(images)))
  assert views.dtype == np.uint8 and views.shape == images.shape
  keys = jax.random.split(key, len(images))  # Each image's own key, as the batch splits it.
  side = ra.cutout_side(images.shape[1:])
  for k, image, view in zip(keys, images, views):
    policy = ra.draw_policy(k, image.shape)
    want = pil_strong_view(image, policy, side)
    assert np.abs(view.astype(np.int64) - want).max() <= 1
    assert np.mean(view != want) < 0.02
  assert len({v.tobytes() for v in views}) == len(views)  # Same image, its own view each.
  again = np.asarray(jax.jit(ra.rand_augment_batch)(key, jnp.asarray(images)))
  np.testing.assert_array_equal(views, again)  # A pure function of the key.
