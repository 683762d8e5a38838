"""Contrastive-view augmentations against numpy formulas, colorsys, scipy and torchvision."""

import colorsys
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from lt_jax.data.augment import random_flip
from lt_jax.pretrain import augment as A

LUMA = np.array([0.299, 0.587, 0.114])


def images(b=8, h=8, w=12, c=3, seed=0):
  """Random float32 images in [0, 1] that also hold exact 0s and 1s."""
  x = np.random.default_rng(seed).random((b, h, w, c), dtype=np.float32)
  x[:, 0, 0], x[:, -1, -1] = 0.0, 1.0
  return x


def keys(n, seed=0):
  return jax.random.split(jax.random.key(seed), n)


# ------------------------------------------------------------------ every op: shape, dtype, range

SINGLE_OPS = {
  "crop": A.random_resized_crop,
  "jitter": A.color_jitter,
  "gray": A.random_grayscale,
  "blur": A.gaussian_blur,
  "flip": random_flip,  # The one flip, shared with the supervised crop_flip.
}


def check_image(out, like):
  assert out.shape == like.shape and out.dtype == jnp.float32
  assert np.all(np.isfinite(out)) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("name", list(SINGLE_OPS))
def test_every_op_keeps_shape_dtype_range_and_replays_from_its_key(name):
  op = jax.jit(SINGLE_OPS[name])  # one image at a time: the views below run them under vmap
  x = images(3)
  outs = [np.asarray(op(jax.random.key(seed), image)) for seed, image in enumerate(x)]
  for out, image in zip(outs, x):
    check_image(out, image)
  np.testing.assert_array_equal(op(jax.random.key(0), x[0]), outs[0])
  if name in ("crop", "jitter", "blur"):  # continuous draws: another key, another image
    assert not np.allclose(op(jax.random.key(7), x[0]), outs[0])


@pytest.mark.parametrize("recipe,channels", [("moco", 3), ("simclr", 3), ("moco", 1)])
def test_views_keep_shape_dtype_range_and_replay_from_their_key(recipe, channels):
  view = {"moco": A.moco_v2_view, "simclr": A.simclr_view}[recipe]
  run = jax.jit(functools.partial(A.two_views, view_fn=view))
  x = jnp.asarray(images(c=channels))
  a, b = run(jax.random.key(0), x)
  for out in (a, b):
    check_image(out, x)
  again, other = run(jax.random.key(0), x), run(jax.random.key(1), x)
  np.testing.assert_array_equal(again[0], a)
  np.testing.assert_array_equal(again[1], b)
  assert not np.allclose(a, b) and not np.allclose(other[0], a)
  # Each image has its own draw: copies of one image get different views.
  same = run(jax.random.key(0), jnp.repeat(x[:1], len(x), axis=0))[0]
  assert not np.allclose(same[0], same[1])


# ----------------------------------------------------------------------------------------- crop

def test_crop_of_the_whole_image_is_the_identity():
  crop = jax.jit(functools.partial(A.random_resized_crop, scale=(1, 1), ratio=(1, 1)))
  for seed, square in enumerate(images(3, 8, 8)):
    np.testing.assert_allclose(crop(jax.random.key(seed), square), square, atol=1e-5)


def bilinear_reference(image, box, out_h, out_w):
  """torch's interpolate(mode='bilinear', align_corners=False) of image[box], one pixel at a
  time: source x = (i + 1/2) * in / out - 1/2, negative x clamped to 0, the upper tap clamped
  to the last pixel."""
  top, left, h, w = box
  crop = image[top:top + h, left:left + w].astype(np.float64)

  def taps(i, n_in, n_out):
    x = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
    lo = min(int(np.floor(x)), n_in - 1)
    return lo, min(lo + 1, n_in - 1), x - lo if lo < n_in - 1 else 0.0

  out = np.zeros((out_h, out_w, image.shape[2]))
  for i in range(out_h):
    y0, y1, ty = taps(i, h, out_h)
    for j in range(out_w):
      x0, x1, tx = taps(j, w, out_w)
      row0 = (1 - tx) * crop[y0, x0] + tx * crop[y0, x1]
      row1 = (1 - tx) * crop[y1, x0] + tx * crop[y1, x1]
      out[i, j] = (1 - ty) * row0 + ty * row1
  return out


@pytest.mark.parametrize("box,out_size", [((1, 2, 4, 5), (8, 12)), ((0, 3, 8, 9), (3, 4)),
                                          ((2, 0, 3, 12), (7, 5))])
def test_crop_and_resize_matches_torch_bilinear(box, out_size):
  image = images(1, 8, 12)[0]
  out = jax.jit(A.crop_and_resize, static_argnums=2)(image, jnp.asarray(box), out_size)
  assert out.shape == (*out_size, 3)
  np.testing.assert_allclose(out, bilinear_reference(image, box, *out_size), atol=1e-5)


def test_crop_box_area_ratio_and_position_follow_the_ranges():
  n, side = 4000, 256
  scale, ratio = (0.2, 1.0), (3 / 4, 4 / 3)
  sample = jax.jit(jax.vmap(lambda k: A.sample_crop_box(k, side, side, scale=scale, ratio=ratio)))
  top, left, h, w = np.asarray(sample(keys(n))).T
  assert np.all((top >= 0) & (left >= 0) & (top + h <= side) & (left + w <= side))
  frac = h * w / side**2
  tol = (h + w + 1) / (2 * side**2)  # each side is rounded by at most 1/2 a pixel
  assert np.all(frac >= scale[0] - tol) and np.all(frac <= scale[1] + tol)
  assert frac.min() < scale[0] + 0.01 and frac.max() > 0.95  # the range is covered
  aspect = w / h
  assert np.all(aspect >= ratio[0] * (1 - 2 / h)) and np.all(aspect <= ratio[1] * (1 + 2 / h))
  assert top.max() > 0 and left.max() > 0  # the corner moves


def test_crop_falls_back_to_a_centred_box_of_the_clamped_ratio():
  # A square image cannot hold the whole area at w/h >= 2: every try fails.
  box = jax.jit(A.sample_crop_box, static_argnums=(1, 2), static_argnames=("scale", "ratio"))
  np.testing.assert_array_equal(box(jax.random.key(0), 10, 10, scale=(1, 1), ratio=(2, 3)),
                                [2, 0, 5, 10])
  assert A._fallback_size(10, 10, (0.25, 0.5)) == (10, 5)  # (h, w): too wide for the ratios
  assert A._fallback_size(10, 20, (0.75, 1.5)) == (10, 15)
  assert A._fallback_size(20, 10, (0.75, 1.5)) == (13, 10)
  assert A._fallback_size(10, 12, (0.75, 1.5)) == (10, 12)


def test_bad_ranges_are_rejected():
  with pytest.raises(ValueError, match="scale"):
    A.sample_crop_box(jax.random.key(0), 8, 8, scale=(1.0, 0.5))
  with pytest.raises(ValueError, match="hue"):
    A.sample_jitter_params(jax.random.key(0), hue=0.7)
  with pytest.raises(ValueError, match="channels"):
    A.adjust_saturation(jnp.zeros((4, 4, 2)), 0.5)
  with pytest.raises(ValueError, match="sigma"):
    A.gaussian_blur(jax.random.key(0), jnp.zeros((8, 8, 3)), sigma=(0.0, 1.0))


# ----------------------------------------------------------------------------------- colour ops

def np_gray(x):
  return x if x.shape[-1] == 1 else (x @ LUMA)[..., None]


def np_brightness(x, f):
  return np.clip(f * x, 0, 1)


def np_contrast(x, f):
  return np.clip(f * x + (1 - f) * np_gray(x).mean(), 0, 1)


def np_saturation(x, f):
  return np.clip(f * x + (1 - f) * np_gray(x), 0, 1) if x.shape[-1] == 3 else x


def np_hue(x, shift):
  """The hue rotation pixel by pixel through the standard library's colorsys."""
  flat = [colorsys.hsv_to_rgb((h + shift) % 1, s, v)
          for h, s, v in (colorsys.rgb_to_hsv(*p) for p in x.reshape(-1, 3).astype(np.float64))]
  return np.asarray(flat).reshape(x.shape)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("factor", [0.0, 0.6, 1.0, 1.4])
def test_brightness_contrast_saturation_match_numpy(channels, factor):
  x = images(1, 8, 12, channels)[0]
  pairs = [(A.adjust_brightness, np_brightness), (A.adjust_contrast, np_contrast),
           (A.adjust_saturation, np_saturation)]
  for op, reference in pairs:
    got = op(jnp.asarray(x), factor)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, reference(x.astype(np.float64), factor), atol=1e-6,
                               err_msg=op.__name__)


def colors():
  """Corner cases of the hexcone (black, white, grey, primaries, secondaries, ties), then
  random pixels, as an [N, 1, 3] image."""
  special = [[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0],
             [0, 1, 1], [1, 0, 1], [0.2, 0.2, 0.9], [0.9, 0.2, 0.9], [0.3, 0.7, 0.7]]
  rand = np.random.default_rng(1).random((100, 3))
  return np.concatenate([special, rand]).astype(np.float32)[:, None, :]


def test_hsv_matches_colorsys_and_round_trips():
  rgb = colors()
  hsv = np.asarray(jax.jit(A.rgb_to_hsv)(rgb))
  want = np.array([colorsys.rgb_to_hsv(*p) for p in rgb[:, 0].astype(np.float64)])
  np.testing.assert_allclose(hsv[:, 0], want, atol=1e-6)
  np.testing.assert_allclose(jax.jit(A.hsv_to_rgb)(hsv), rgb, atol=1e-5)


def test_hue_shift_rotates_the_hexcone():
  rgb = colors()
  hue = jax.jit(A.adjust_hue)
  np.testing.assert_allclose(hue(rgb, 0.0), rgb, atol=1e-5)
  red = 3  # colors()[3] is pure red, [4] green, [5] blue
  np.testing.assert_allclose(hue(rgb, 1 / 3)[red], rgb[red + 1], atol=1e-5)
  np.testing.assert_allclose(hue(rgb, -1 / 3)[red], rgb[red + 2], atol=1e-5)
  for shift in (0.1, -0.07, 0.5):
    np.testing.assert_allclose(hue(rgb, shift), np_hue(rgb, shift), atol=1e-5)
  gray = images(1, c=1)[0]
  np.testing.assert_array_equal(A.adjust_hue(gray, 0.3), gray)


def test_jitter_factors_lie_in_torchvision_ranges_and_orders_are_uniform_permutations():
  sample = jax.jit(jax.vmap(lambda k: A.sample_jitter_params(k)))
  order, factors = map(np.asarray, sample(keys(3000)))
  lo, hi = np.array([0.6, 0.6, 0.6, -0.1]), np.array([1.4, 1.4, 1.4, 0.1])
  assert np.all(factors >= lo) and np.all(factors <= hi)
  np.testing.assert_allclose(factors.min(0), lo, atol=0.01)
  np.testing.assert_allclose(factors.max(0), hi, atol=0.01)
  assert np.all(np.sort(order, axis=1) == np.arange(4))
  counts = {p: 0 for p in itertools.permutations(range(4))}
  for row in order:
    counts[tuple(row)] += 1
  assert min(counts.values()) > 3000 / 24 * 0.6  # all 24 orders, roughly evenly
  # torchvision: b -> [max(0, 1 - b), 1 + b], h -> [-h, h]; 0 disables an op.
  ranges = A._jitter_ranges((1.5, 0, (0.2, 0.3), 0.25))
  assert ranges == [(0.0, 2.5), None, (0.2, 0.3), (-0.25, 0.25)]
  assert A._jitter_ranges((0, 0, 0, 0)) == [None] * 4
  _, factors = A.jitter_params_from(jnp.full(8, 0.5), [None, (0.2, 0.4), None, None])
  np.testing.assert_allclose(factors, [1.0, 0.3, 1.0, 0.0], atol=1e-6)  # neutral when disabled


def test_jitter_applies_the_ops_in_the_sampled_order():
  x = images(1)[0]
  factors = [1.3, 0.7, 1.4, 0.05]
  references = (np_brightness, np_contrast, np_saturation, np_hue)
  apply = jax.jit(A.apply_jitter)
  results = []
  for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
    want = x.astype(np.float64)
    for i in order:
      want = references[i](want, factors[i])
    got = np.asarray(apply(x, jnp.asarray(order), jnp.asarray(factors)))
    np.testing.assert_allclose(got, want, atol=1e-5)
    results.append(got)
  assert not np.allclose(results[0], results[1])  # the order matters


def test_brightness_only_jitter_scales_by_a_factor_in_range():
  x = images(1)[0] * 0.5  # no clipping at factor <= 1.4
  jitter = functools.partial(A.color_jitter, brightness=0.4, contrast=0, saturation=0, hue=0)
  out = np.asarray(jax.jit(jax.vmap(jitter, in_axes=(0, None)))(keys(200), x))
  mask = x > 0.05
  ratios = out[:, mask] / x[mask]
  f = ratios[:, 0]
  np.testing.assert_allclose(ratios / f[:, None], 1.0, rtol=1e-5)  # one factor per image
  assert f.min() >= 0.6 - 1e-5 and f.max() <= 1.4 + 1e-5 and f.max() - f.min() > 0.6


def test_grayscale_is_the_luma_replicated():
  x = images(1)[0]
  want = np.repeat(x @ LUMA.astype(np.float32), 3).reshape(x.shape)
  np.testing.assert_allclose(A.to_grayscale(jnp.asarray(x)), want, atol=1e-6)
  np.testing.assert_allclose(A.random_grayscale(jax.random.key(0), x, p=1.0), want, atol=1e-6)
  np.testing.assert_array_equal(A.random_grayscale(jax.random.key(0), x, p=0.0), x)
  gray = images(1, c=1)[0]
  np.testing.assert_array_equal(A.to_grayscale(gray), gray)


# ------------------------------------------------------------------------------------------ blur

gaussian_kernel = jax.jit(A.gaussian_kernel, static_argnums=1)
blur = jax.jit(A.blur_with_sigma, static_argnums=2)  # compiled once per image shape and size


def test_blur_kernel_sums_to_one_and_default_sizes():
  for sigma, size in [(0.1, 3), (1.0, 3), (2.0, 13), (0.7, 23)]:
    k = np.asarray(gaussian_kernel(sigma, size))
    assert k.shape == (size,)
    np.testing.assert_allclose(k.sum(), 1.0, atol=1e-6)
    np.testing.assert_allclose(k, k[::-1], atol=1e-7)
    assert np.argmax(k) == size // 2
  assert [A.default_blur_kernel_size(s) for s in (8, 16, 32, 96, 224)] == [3, 3, 3, 9, 23]


@pytest.mark.parametrize("sigma,size", [(0.8, 3), (1.7, 5)])
def test_blur_matches_scipy_with_reflect_padding(sigma, size):
  x = images(1)[0]
  kernel = np.asarray(gaussian_kernel(sigma, size), np.float64)
  want = x.astype(np.float64)
  for axis in (0, 1):  # scipy's "mirror" is torch's "reflect": no repeated edge pixel
    want = ndimage.correlate1d(want, kernel, axis=axis, mode="mirror")
  np.testing.assert_allclose(blur(x, sigma, size), want, atol=1e-6)


def test_blur_keeps_constants_and_the_mean_away_from_borders():
  const = jnp.full((8, 12, 3), 0.37, jnp.float32)
  for size in (3, 5):
    np.testing.assert_allclose(blur(const, 1.3, size), const, atol=1e-6)
  x = np.random.default_rng(2).random((32, 32, 3)).astype(np.float32)
  out = np.asarray(blur(x, 2.0, 5))
  inner = (slice(4, -4), slice(4, -4))
  np.testing.assert_allclose(out[inner].mean(), x[inner].mean(), atol=5e-3)
  assert out.std() < x.std()  # it smooths
  ramp = np.broadcast_to(np.linspace(0.1, 0.9, 12, dtype=np.float32)[None, :, None], (8, 12, 3))
  out = blur(ramp, 1.5, 5)
  np.testing.assert_allclose(np.asarray(out)[:, 2:-2], ramp[:, 2:-2], atol=1e-6)  # linear kept


# --------------------------------------------------------------------------- probability wrappers

@jax.jit
@functools.partial(jax.vmap, in_axes=(0, None, None))
def negate_with_probability(key, p, x):
  return A.apply_with_probability(key, p, lambda im: 1 - im, x)


@pytest.mark.parametrize("p", [0.8, 0.2, 0.5])
def test_random_apply_fraction_is_near_p(p):
  x = images(1, 2, 2)[0]
  applied = np.any(np.asarray(negate_with_probability(keys(1000), p, x)) != x, axis=(1, 2, 3))
  assert abs(applied.mean() - p) < 0.05


def test_grayscale_and_flip_rates():
  x = jnp.asarray(images(1, 2, 3)[0])
  both = jax.jit(jax.vmap(lambda k: (A.random_grayscale(k, x), random_flip(k, x))))
  gray, flip = map(np.asarray, both(keys(1000, seed=3)))
  assert abs(np.mean(np.any(gray != np.asarray(x), axis=(1, 2, 3))) - 0.2) < 0.05
  flipped = np.all(flip == np.asarray(x)[:, ::-1], axis=(1, 2, 3))
  assert np.all(flipped | np.all(flip == np.asarray(x), axis=(1, 2, 3)))
  assert abs(flipped.mean() - 0.5) < 0.05
