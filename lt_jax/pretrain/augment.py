"""Augmentations for contrastive pre-training (MoCo v2, SimCLR), written in JAX.

Every op takes its own key and one float image [H, W, C] in [0, 1] (C = 1 or 3) and returns an
image of the same dtype in [0, 1]; batches are handled by `jax.vmap` over split keys, so a view
is a pure function of its key and replays exactly after a resume. The semantics follow
torchvision's RandomResizedCrop, ColorJitter, RandomGrayscale, GaussianBlur and
RandomHorizontalFlip on float tensors; differences are noted where they occur:

- grayscale uses PIL's ITU-R 601-2 luma (0.299, 0.587, 0.114); torchvision's tensor path uses
  0.2989 for red, a 1e-4 difference;
- the crop is resized with plain bilinear interpolation (align_corners=False, edges clamped to
  the crop), without antialiasing. Resizing a crop back to the image size only ever upsamples,
  where antialiasing has no effect; it would differ only for an `out_size` below the crop size;
- random choices use JAX keys, so the draws match torchvision's in distribution, not value.

Data-dependent branches become selects: RandomApply computes both branches, the crop draws its
ten candidate boxes at once, and ColorJitter's random order switches among the four ops.

Randomness: each op turns its key into one vector of U[0, 1) numbers and derives every choice
from it (`*_from` functions take that vector); a recipe draws one vector for all its ops. Each
separate `jax.random` call under vmap adds a threefry kernel, and compiling those dominates the
CPU compile time of a view.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

ViewFn = Callable[[jax.Array, jax.Array], jax.Array]

LUMA = (0.299, 0.587, 0.114)
CROP_TRIES = 10
CROP_DRAWS = 2 * CROP_TRIES + 2  # per try an area and a log-ratio, then the corner (top, left)
JITTER_DRAWS = 8  # four factors, four sort keys for the order
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")
_RATIO = (3 / 4, 4 / 3)


def _check_range(name: str, lo: float, hi: float) -> None:
  if lo > hi:
    raise ValueError(f"{name} must be (min, max) with min <= max, got ({lo}, {hi})")


def _uniform(key: jax.Array, n: int) -> jax.Array:
  """All the randomness of an op (or a recipe) as one U[0, 1) draw of n numbers."""
  return jax.random.uniform(key, (n,), jnp.float32)


def _split_draws(u: jax.Array, sizes: Sequence[int]) -> list[jax.Array]:
  """Consecutive slices of `u` of the given sizes."""
  bounds = [0]
  for size in sizes:
    bounds.append(bounds[-1] + size)
  return [u[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _uniform_int(u: jax.Array, n: jax.Array) -> jax.Array:
  """floor(u n) for u ~ U[0, 1): uniform on {0, ..., n - 1} (clipped against rounding)."""
  return jnp.minimum(jnp.floor(u * n).astype(jnp.int32), n - 1)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
  if isinstance(size, int):
    return size, size
  h, w = size
  return int(h), int(w)


# ----------------------------------------------------------------------------- random resized crop

def _fallback_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
  """torchvision's last resort when all tries fail: the largest centred box whose aspect
  ratio w/h is the image's clamped to [ratio_min, ratio_max]."""
  in_ratio = width / height
  if in_ratio < min(ratio):
    return int(round(width / min(ratio))), width
  if in_ratio > max(ratio):
    return height, int(round(height * max(ratio)))
  return height, width


def crop_box_from(u: jax.Array, height: int, width: int, scale: tuple[float, float],
                  ratio: tuple[float, float]) -> jax.Array:
  """The crop box (top, left, h, w) as int32 [4] from CROP_DRAWS uniforms, chosen as
  RandomResizedCrop.get_params does.

  Each try draws s ~ U(scale), log r ~ U(log ratio) and takes w = round(sqrt(s A r)),
  h = round(sqrt(s A / r)) for the image area A; the first of `CROP_TRIES` tries that fits
  (0 < w <= W, 0 < h <= H) wins and its corner is uniform over the valid positions. If none
  fits, the box is the centred fallback of `_fallback_size`. All tries are drawn at once and
  the first valid one is picked with argmax, so the box can be a traced value.
  """
  _check_range("scale", *scale)
  _check_range("ratio", *ratio)
  u_area, u_ratio, u_corner = _split_draws(u, (CROP_TRIES, CROP_TRIES, 2))
  area = (scale[0] + (scale[1] - scale[0]) * u_area) * (height * width)
  log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
  aspect = jnp.exp(log_lo + (log_hi - log_lo) * u_ratio)
  ws = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
  hs = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
  fits = (ws > 0) & (ws <= width) & (hs > 0) & (hs <= height)
  first = jnp.argmax(fits)
  found = fits[first]
  fh, fw = _fallback_size(height, width, ratio)
  h = jnp.where(found, hs[first], fh)
  w = jnp.where(found, ws[first], fw)
  top = jnp.where(found, _uniform_int(u_corner[0], height - h + 1), (height - fh) // 2)
  left = jnp.where(found, _uniform_int(u_corner[1], width - w + 1), (width - fw) // 2)
  return jnp.stack([top, left, h, w]).astype(jnp.int32)


def sample_crop_box(key: jax.Array, height: int, width: int, *,
                    scale: tuple[float, float] = (0.2, 1.0),
                    ratio: tuple[float, float] = _RATIO) -> jax.Array:
  """RandomResizedCrop.get_params: the box (top, left, h, w) of an H x W image, int32 [4]."""
  return crop_box_from(_uniform(key, CROP_DRAWS), height, width, scale, ratio)


def _linear_taps(start: jax.Array, length: jax.Array, out_len: int):
  """Source taps for resizing the span [start, start + length) of one axis to `out_len` samples.

  Output pixel centres map back as x = start + (i + 1/2) * length / out_len - 1/2
  (align_corners=False), clamped into the span; the result is (i0, i1, t) with
  out_i = (1 - t) src[i0] + t src[i1].
  """
  start = jnp.asarray(start, jnp.float32)
  length = jnp.asarray(length, jnp.float32)
  centres = jnp.arange(out_len, dtype=jnp.float32) + 0.5
  last = start + length - 1
  x = jnp.clip(start + centres * (length / out_len) - 0.5, start, last)
  lower = jnp.floor(x)
  i0 = lower.astype(jnp.int32)
  i1 = jnp.minimum(lower + 1, last).astype(jnp.int32)
  return i0, i1, x - lower


def _lerp_axis(image: jax.Array, taps, axis: int) -> jax.Array:
  i0, i1, t = taps
  shape = [1] * image.ndim
  shape[axis] = -1
  t = t.reshape(shape).astype(image.dtype)
  return jnp.take(image, i0, axis=axis) * (1 - t) + jnp.take(image, i1, axis=axis) * t


def crop_and_resize(image: jax.Array, box: jax.Array,
                    out_size: int | Sequence[int] | None = None) -> jax.Array:
  """Bilinearly samples the box (top, left, h, w) of an [H, W, C] image onto an out_size grid
  (default (H, W)); separable: rows first, then columns. The box may be traced."""
  out_h, out_w = _pair(out_size) if out_size is not None else image.shape[:2]
  top, left, h, w = box[0], box[1], box[2], box[3]
  rows = _lerp_axis(image, _linear_taps(top, h, out_h), axis=0)
  out = _lerp_axis(rows, _linear_taps(left, w, out_w), axis=1)
  return jnp.clip(out, 0, 1)


def random_resized_crop(key: jax.Array, image: jax.Array, *,
                        scale: tuple[float, float] = (0.2, 1.0),
                        ratio: tuple[float, float] = _RATIO,
                        out_size: int | Sequence[int] | None = None) -> jax.Array:
  """torchvision RandomResizedCrop: a random box of area fraction in `scale` and aspect ratio
  in `ratio`, resized (bilinear) to out_size, by default the input's (H, W)."""
  return _resized_crop_from(_uniform(key, CROP_DRAWS), image, scale, ratio, out_size)


def _resized_crop_from(u, image, scale, ratio, out_size=None):
  box = crop_box_from(u, image.shape[0], image.shape[1], scale, ratio)
  return crop_and_resize(image, box, out_size)


# -------------------------------------------------------------------------------- colour ops

def _is_gray(image: jax.Array) -> bool:
  """True for 1 channel, False for RGB; any other channel count is an error."""
  if image.shape[-1] not in (1, 3):
    raise ValueError(f"colour ops take 1 or 3 channels (HWC), got shape {image.shape}")
  return image.shape[-1] == 1


def rgb_to_grayscale(image: jax.Array) -> jax.Array:
  """Luma L = 0.299 R + 0.587 G + 0.114 B as [H, W, 1]; a 1-channel image is its own luma."""
  if _is_gray(image):
    return image
  return jnp.tensordot(image, jnp.asarray(LUMA, image.dtype), axes=1)[..., None]


def to_grayscale(image: jax.Array) -> jax.Array:
  """The luma replicated to the image's C channels (torchvision's Grayscale(C))."""
  return jnp.broadcast_to(rgb_to_grayscale(image), image.shape)


def _blend(image: jax.Array, other: jax.Array, factor) -> jax.Array:
  """clip(f x + (1 - f) y, 0, 1): f = 0 gives y, f = 1 the image, f > 1 extrapolates."""
  factor = jnp.asarray(factor, image.dtype)
  return jnp.clip(factor * image + (1 - factor) * other, 0, 1)


def adjust_brightness(image: jax.Array, factor) -> jax.Array:
  """clip(f x, 0, 1): a blend with black."""
  return _blend(image, jnp.zeros_like(image), factor)


def adjust_contrast(image: jax.Array, factor) -> jax.Array:
  """A blend with the mean grey level: clip(f x + (1 - f) mean(L(x)), 0, 1)."""
  return _blend(image, jnp.mean(rgb_to_grayscale(image)), factor)


def adjust_saturation(image: jax.Array, factor) -> jax.Array:
  """A blend with the per-pixel luma: clip(f x + (1 - f) L(x), 0, 1); no-op for 1 channel."""
  if _is_gray(image):
    return image
  return _blend(image, rgb_to_grayscale(image), factor)


def rgb_to_hsv(image: jax.Array) -> jax.Array:
  """RGB in [0, 1] -> (h, s, v) in [0, 1]^3 (the hexcone model, h in turns).

  v = max, c = max - min, s = c / v (0 for black), and h / (1/6) = (g - b) / c mod 6,
  (b - r) / c + 2 or (r - g) / c + 4 where max is r, g or b (in that priority); h = 0 for greys.
  """
  r, g, b = image[..., 0], image[..., 1], image[..., 2]
  v = jnp.max(image, axis=-1)
  c = v - jnp.min(image, axis=-1)
  s = jnp.where(v > 0, c / jnp.where(v > 0, v, 1), 0)
  safe_c = jnp.where(c > 0, c, 1)
  sector = jnp.select([v == r, v == g],
                      [jnp.mod((g - b) / safe_c, 6), (b - r) / safe_c + 2],
                      (r - g) / safe_c + 4)
  h = jnp.where(c > 0, sector / 6, 0)
  return jnp.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
  """(h, s, v) -> RGB, branch-free: channel n in (5, 3, 1) for (R, G, B) is
  v - v s clip(min(k, 4 - k), 0, 1) with k = (n + 6 h) mod 6."""
  h, s, v = hsv[..., 0:1], hsv[..., 1:2], hsv[..., 2:3]
  n = jnp.asarray([5.0, 3.0, 1.0], hsv.dtype)
  k = jnp.mod(n + 6 * h, 6)
  return v - v * s * jnp.clip(jnp.minimum(k, 4 - k), 0, 1)


def adjust_hue(image: jax.Array, shift) -> jax.Array:
  """Rotates the hue by `shift` turns: h -> (h + shift) mod 1 in HSV; no-op for 1 channel."""
  if _is_gray(image):
    return image
  hsv = rgb_to_hsv(image)
  h = jnp.mod(hsv[..., 0] + jnp.asarray(shift, image.dtype), 1)
  return jnp.clip(hsv_to_rgb(hsv.at[..., 0].set(h)), 0, 1)


_ADJUST = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
_NEUTRAL = (1.0, 1.0, 1.0, 0.0)


def _jitter_range(name: str, value: float | Sequence[float]) -> tuple[float, float] | None:
  """torchvision's ColorJitter ranges: v -> [max(0, 1 - v), 1 + v] for brightness, contrast
  and saturation, [-v, v] for hue (v <= 0.5); a (min, max) pair is taken as is. A range that
  is the single neutral value disables the op (None)."""
  centre = 0.0 if name == "hue" else 1.0
  if isinstance(value, (int, float)):
    if value < 0:
      raise ValueError(f"color_jitter {name} must be >= 0, got {value}")
    lo, hi = (-value, value) if name == "hue" else (max(0.0, 1.0 - value), 1.0 + value)
  else:
    lo, hi = (float(x) for x in value)
  _check_range(f"color_jitter {name}", lo, hi)
  if name == "hue" and not -0.5 <= lo <= hi <= 0.5:
    raise ValueError(f"color_jitter hue must lie in [-0.5, 0.5], got ({lo}, {hi})")
  if lo == hi == centre:
    return None
  return lo, hi


def _jitter_ranges(strengths: Sequence) -> list[tuple[float, float] | None]:
  return [_jitter_range(name, value) for name, value in zip(JITTER_OPS, strengths)]


def jitter_params_from(u: jax.Array, ranges: Sequence[tuple[float, float] | None]):
  """ColorJitter.get_params from JITTER_DRAWS uniforms: a random order of the four ops (int32
  [4], 0..3 for brightness, contrast, saturation, hue) and their factors (float32 [4]), each
  uniform in its range; a disabled op (range None) gets its neutral factor (1, 1, 1, 0)."""
  lo = jnp.asarray([r[0] if r else c for r, c in zip(ranges, _NEUTRAL)], jnp.float32)
  hi = jnp.asarray([r[1] if r else c for r, c in zip(ranges, _NEUTRAL)], jnp.float32)
  order = jnp.argsort(u[4:]).astype(jnp.int32)  # sorting i.i.d. uniforms: a uniform permutation
  return order, lo + (hi - lo) * u[:4]


def sample_jitter_params(key: jax.Array, *, brightness=0.4, contrast=0.4, saturation=0.4,
                         hue=0.1) -> tuple[jax.Array, jax.Array]:
  """ColorJitter.get_params: (order, factors) as `jitter_params_from`."""
  ranges = _jitter_ranges((brightness, contrast, saturation, hue))
  return jitter_params_from(_uniform(key, JITTER_DRAWS), ranges)


def _bind(op, factor):
  return lambda image: op(image, factor)


def apply_jitter(image: jax.Array, order: jax.Array, factors: jax.Array,
                 enabled: Sequence[bool] = (True,) * 4) -> jax.Array:
  """Applies the four ops in `order` with `factors`; a disabled op (static) is the identity,
  as torchvision skips an op whose factor is None."""
  ops = [_bind(op, factors[i]) if on else (lambda x: x)
         for i, (op, on) in enumerate(zip(_ADJUST, enabled))]
  # A loop, not an unrolled sequence: its body (the four ops) is traced and compiled once.
  return jax.lax.fori_loop(0, 4, lambda step, x: jax.lax.switch(order[step], ops, x), image)


def color_jitter(key: jax.Array, image: jax.Array, *, brightness=0.4, contrast=0.4,
                 saturation=0.4, hue=0.1) -> jax.Array:
  """torchvision ColorJitter: brightness, contrast, saturation factors ~ U[max(0, 1 - v), 1 + v]
  and a hue shift ~ U[-h, h], applied in a random order, clipping to [0, 1] after each op."""
  strengths = (brightness, contrast, saturation, hue)
  return _color_jitter_from(_uniform(key, JITTER_DRAWS), image, strengths)


def _color_jitter_from(u, image, strengths):
  ranges = _jitter_ranges(strengths)
  order, factors = jitter_params_from(u, ranges)
  return apply_jitter(image, order, factors.astype(image.dtype), [r is not None for r in ranges])


# ---------------------------------------------------------------------------- blur, wrappers

def default_blur_kernel_size(side: int) -> int:
  """int(0.1 side) made odd (+1 if even), at least 3: 23 taps at 224 px as in SimCLR's
  ImageNet recipe, 3 taps at 32 px.

  MoCo v2 blurs 224 px PIL images with radius = sigma in [0.1, 2], i.e. at most ~1% of the
  side. At 32 px the same sigma would be ~6% of the side; the 3-tap kernel caps the blur at a
  near 3x3 box (weights ~(0.31, 0.35, 0.31) at sigma 2), a mild blur closer to MoCo's relative
  strength. SimCLR drops the blur for 32 px images altogether. For a full Gaussian at sigma
  pass kernel_size = 2 ceil(3 sigma_max) + 1 (13 for sigma 2).
  """
  size = int(0.1 * side)
  size += 1 - size % 2
  return max(size, 3)


def gaussian_kernel(sigma, size: int, dtype=jnp.float32) -> jax.Array:
  """The normalised 1-D Gaussian: k_i ~ exp(-x_i^2 / (2 sigma^2)), x_i = i - (size - 1) / 2,
  sum k = 1, as torchvision builds its kernel."""
  x = jnp.arange(size, dtype=dtype) - (size - 1) / 2
  weights = jnp.exp(-0.5 * jnp.square(x / jnp.asarray(sigma, dtype)))
  return weights / jnp.sum(weights)


def _correlate_axis(image: jax.Array, kernel: jax.Array, axis: int) -> jax.Array:
  """sum_t k_t x[i + t - r] along one axis with reflect padding of r = size // 2 (no edge
  repeat: ... x2 x1 | x0 x1 x2 ..., torch's "reflect")."""
  size = kernel.shape[0]
  radius = size // 2
  pad = [(0, 0)] * image.ndim
  pad[axis] = (radius, radius)
  padded = jnp.pad(image, pad, mode="reflect")
  n = image.shape[axis]
  return sum(kernel[t] * jax.lax.slice_in_dim(padded, t, t + n, axis=axis) for t in range(size))


def blur_with_sigma(image: jax.Array, sigma, kernel_size: int | None = None) -> jax.Array:
  """Separable Gaussian blur of an [H, W, C] image with a fixed (possibly traced) sigma."""
  size = kernel_size or default_blur_kernel_size(min(image.shape[:2]))
  if size % 2 == 0 or size < 1:
    raise ValueError(f"gaussian_blur kernel_size must be odd and positive, got {size}")
  kernel = gaussian_kernel(sigma, size, image.dtype)
  out = _correlate_axis(_correlate_axis(image, kernel, axis=0), kernel, axis=1)
  return jnp.clip(out, 0, 1)


def gaussian_blur(key: jax.Array, image: jax.Array, *,
                  sigma: float | tuple[float, float] = (0.1, 2.0),
                  kernel_size: int | None = None) -> jax.Array:
  """torchvision GaussianBlur: sigma ~ U(sigma) (or fixed), a kernel_size-tap separable
  Gaussian (default `default_blur_kernel_size`), reflect padding."""
  return _blur_from(_uniform(key, 1), image, sigma, kernel_size)


def _blur_from(u, image, sigma, kernel_size=None):
  lo, hi = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma
  _check_range("gaussian_blur sigma", lo, hi)
  if lo <= 0:
    raise ValueError(f"gaussian_blur sigma must be > 0, got {sigma}")
  return blur_with_sigma(image, lo + (hi - lo) * u[0], kernel_size)


def apply_with_probability(key: jax.Array, p: float, fn: Callable[[jax.Array], jax.Array],
                           image: jax.Array) -> jax.Array:
  """torchvision RandomApply: fn(image) with probability p, else the image. Both branches are
  computed (a select under jit). `fn` must carry its own key, distinct from `key`."""
  return _maybe(jax.random.bernoulli(key, p), fn, image)


def _maybe(coin: jax.Array, fn: Callable[[jax.Array], jax.Array], image: jax.Array) -> jax.Array:
  return jnp.where(coin, fn(image), image)


def hflip(image: jax.Array) -> jax.Array:
  """Mirrors an [H, W, C] image left-right."""
  return image[:, ::-1, :]


def random_grayscale(key: jax.Array, image: jax.Array, p: float = 0.2) -> jax.Array:
  """torchvision RandomGrayscale: the luma replicated to C channels with probability p."""
  return apply_with_probability(key, p, to_grayscale, image)


# ---------------------------------------------------------------------------------- recipes

def moco_v2_view(key: jax.Array, image: jax.Array, *,
                 crop_scale: tuple[float, float] = (0.2, 1.0),
                 jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
                 jitter_p: float = 0.8, gray_p: float = 0.2, blur_p: float = 0.5,
                 blur_sigma: tuple[float, float] = (0.1, 2.0),
                 blur_kernel_size: int | None = None, flip: bool = True,
                 crop: bool = True) -> jax.Array:
  """MoCo v2's "aug_plus", in its order: RandomResizedCrop(scale), ColorJitter(jitter) with
  p 0.8, RandomGrayscale(0.2), GaussianBlur(sigma) with p 0.5, horizontal flip (p 1/2).
  One uniform draw feeds every op; coin i is u_i < p_i, as RandomApply's.

  `crop=False` leaves the crop out (the host drew it: ImageNet-size images are cropped where
  they are decoded) and keeps the draws, so the other ops see the very numbers they would
  after an identity crop."""
  sizes = (CROP_DRAWS, JITTER_DRAWS, 1, 4)
  u_crop, u_jitter, u_blur, u_coin = _split_draws(_uniform(key, sum(sizes)), sizes)
  coins = u_coin < jnp.asarray([jitter_p, gray_p, blur_p, 0.5])
  if crop:
    image = _resized_crop_from(u_crop, image, crop_scale, _RATIO)
  image = _maybe(coins[0], functools.partial(_color_jitter_from, u_jitter, strengths=jitter),
                 image)
  image = _maybe(coins[1], to_grayscale, image)
  image = _maybe(coins[2], functools.partial(_blur_from, u_blur, sigma=blur_sigma,
                                             kernel_size=blur_kernel_size), image)
  return _maybe(coins[3], hflip, image) if flip else image


def simclr_view(key: jax.Array, image: jax.Array, *,
                crop_scale: tuple[float, float] = (0.08, 1.0),
                jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
                jitter_p: float = 0.8, gray_p: float = 0.2, flip: bool = True,
                crop: bool = True) -> jax.Array:
  """SimCLR's CIFAR recipe: RandomResizedCrop(scale 0.08-1), horizontal flip, then colour
  distortion of strength s = 0.5, i.e. ColorJitter(0.8 s, 0.8 s, 0.8 s, 0.2 s) =
  (0.4, 0.4, 0.4, 0.1) with p 0.8 and RandomGrayscale(0.2). No blur: SimCLR leaves it out for
  32 px images (the flip commutes with the pixel-wise colour ops, so its place is immaterial).
  `crop=False` as in `moco_v2_view`."""
  sizes = (CROP_DRAWS, JITTER_DRAWS, 3)
  u_crop, u_jitter, u_coin = _split_draws(_uniform(key, sum(sizes)), sizes)
  coins = u_coin < jnp.asarray([0.5, jitter_p, gray_p])
  if crop:
    image = _resized_crop_from(u_crop, image, crop_scale, _RATIO)
  if flip:
    image = _maybe(coins[0], hflip, image)
  image = _maybe(coins[1], functools.partial(_color_jitter_from, u_jitter, strengths=jitter),
                 image)
  return _maybe(coins[2], to_grayscale, image)


def two_views(key: jax.Array, images: jax.Array, view_fn: ViewFn) -> tuple[jax.Array, jax.Array]:
  """Two independent views of every image of a batch [B, H, W, C]: view_fn(key, image) with
  2B split keys, vmapped once over each image repeated twice in place (a nested vmap compiles
  ~1.5x slower; repeating in place, unlike concatenating the batch, keeps every image on the
  device that holds its shard). Bind recipe options with functools.partial."""
  return _views_of_pairs(key, jnp.repeat(images, 2, axis=0), view_fn)


def paired_views(key: jax.Array, images_a: jax.Array, images_b: jax.Array, view_fn: ViewFn
                 ) -> tuple[jax.Array, jax.Array]:
  """view_fn applied to two given versions of every image (host-drawn crops [B, H, W, C]
  each), with the keys `two_views` would give the two views of image i: one program for both
  paths."""
  n = images_a.shape[0]
  pairs = jnp.stack([images_a, images_b], axis=1).reshape(2 * n, *images_a.shape[1:])
  return _views_of_pairs(key, pairs, view_fn)


def _views_of_pairs(key: jax.Array, pairs: jax.Array, view_fn: ViewFn
                    ) -> tuple[jax.Array, jax.Array]:
  """Rows 2i and 2i + 1 of `pairs` (image i's two inputs) through view_fn with split keys."""
  n = pairs.shape[0] // 2
  views = jax.vmap(view_fn)(jax.random.split(key, 2 * n), pairs)  # image 0, image 0, image 1...
  views = views.reshape(n, 2, *views.shape[1:])
  return views[:, 0], views[:, 1]
