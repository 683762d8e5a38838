"""RandAugment as FixMatch trains with it, in JAX: the strong view of online semi-supervised
learning, drawn per image on the device.

The recipe is `RandAugmentMC(n=2, m=10)` of kekmodel/FixMatch-pytorch (dataset/randaugment.py
at commit 01f41b07), the strong view that DARP, ABC and ACR train with. For each image:
- `n` operations are drawn uniformly, with replacement, from the 14 of `OPS`;
- each gets a level v uniform in 1 .. m - 1 and is applied with probability 1/2; a geometric
  one also turns its direction with probability 1/2;
- then a grey (127) square of side `cutout` x the image side is painted at a uniform centre,
  always (CutoutAbs(16) on 32 x 32 images; PIL's rectangle includes its far edge, so the
  square is one pixel wider than its side where the image does not clip it).

Each op follows the PIL call the reference makes (`OPS` lists them with the level's mapping):
its arithmetic, its rounding (PIL truncates blends towards zero) and its geometry (an affine
map of output pixel centres to input pixels, nearest neighbour, black outside the image).
Images are uint8 [H, W, C] with 1 or 3 channels; one channel makes `color` the identity, as
PIL's greyscale conversion of a greyscale image is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import flax
import jax
import jax.numpy as jnp

PARAMETER_MAX = 10  # The reference's level scale: a level v means v / 10 of max_v.
CUTOUT_FILL = 127


@dataclasses.dataclass(frozen=True)
class Op:
  """One operation at a level v (1 .. m - 1): the magnitude v * max_v / 10 + bias (`integer`:
  int(v * max_v / 10) + bias, the reference's _int_parameter), negated with probability 1/2
  where `signed`. A point op is `fn(image float32 [H, W, C] in 0..255, magnitude)`; a
  geometric one is `matrix(magnitude, height, width)`, PIL's AFFINE matrix."""
  name: str
  fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None
  max_v: float = 0.0
  bias: float = 0.0
  integer: bool = False
  signed: bool = False
  matrix: Callable[[float, int, int], tuple[float, ...]] | None = None

  def magnitude(self, level: int) -> float:
    """In Python floats, as the reference computes it: a float32 version of the same
    expression rounds differently (5 * 0.9 / 10 + 0.05 is 0.5 here, 0.49999997 in float32)
    and moves a truncated blend by one level on half the pixels."""
    if self.integer:
      return float(int(level * self.max_v / PARAMETER_MAX) + self.bias)
    return float(level) * self.max_v / PARAMETER_MAX + self.bias


# --- point operations ------------------------------------------------------------------------


def _blend(degenerate: jax.Array, image: jax.Array, factor: jax.Array) -> jax.Array:
  """PIL's Image.blend(degenerate, image, factor) on 8-bit images: float32, truncated towards
  zero, clipped (ImageEnhance's Brightness, Color, Contrast and Sharpness)."""
  # PIL rounds the product before the sum; XLA may fuse them into one multiply-add, which
  # can move a truncated value by one level (a value whose exact blend is within float32
  # rounding of an integer).
  out = degenerate + jnp.float32(factor) * (image - degenerate)
  return jnp.clip(jnp.trunc(out), 0.0, 255.0)


def _luminance(image: jax.Array) -> jax.Array:
  """PIL's convert('L') of an RGB image in its integer arithmetic ([H, W, 1]); a
  single-channel image is its own."""
  if image.shape[-1] == 1:
    return image
  rgb = image.astype(jnp.int32)
  weighted = rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000
  return (weighted >> 16).astype(jnp.float32)[..., None]


def identity(image, _):
  return image


def autocontrast(image, _):
  """Each channel stretched to 0..255 from its lowest and highest values (no cutoff); a flat
  channel stays as it is."""
  x = image.astype(jnp.int32)
  lo = jnp.min(x, axis=(0, 1), keepdims=True)
  hi = jnp.max(x, axis=(0, 1), keepdims=True)
  stretched = (x - lo) * 255 // jnp.maximum(hi - lo, 1)  # Exact: no float rounding.
  return jnp.where(hi > lo, stretched, x).astype(jnp.float32)


def equalize(image, _):
  """PIL's histogram equalisation, per channel, in its integer arithmetic: step = (pixels -
  count of the highest value present) // 255, lut[i] = (step // 2 + pixels below i) // step;
  a channel of one value (or step 0) stays as it is."""
  def channel(x):
    values = x.astype(jnp.int32).ravel()
    hist = jnp.bincount(values, length=256)
    present = hist > 0
    last = jnp.max(jnp.where(present, jnp.arange(256), -1))
    step = (jnp.sum(hist) - hist[last]) // 255
    below = jnp.cumsum(hist) - hist
    safe = jnp.maximum(step, 1)
    lut = jnp.minimum((step // 2 + below) // safe, 255)
    keep = (jnp.sum(present) <= 1) | (step == 0)
    return jnp.where(keep, x, lut[values].reshape(x.shape).astype(jnp.float32))
  return jnp.stack([channel(image[..., c]) for c in range(image.shape[-1])], axis=-1)


def posterize(image, bits):
  """Keeps the `bits` highest bits of each value."""
  shift = (8 - bits).astype(jnp.int32)
  return ((image.astype(jnp.int32) >> shift) << shift).astype(jnp.float32)


def solarize(image, v):
  """Inverts every value at or above 256 - v (PIL's solarize(threshold=256 - v))."""
  return jnp.where(image < 256.0 - v, image, 255.0 - image)


def brightness(image, factor):
  return _blend(jnp.zeros_like(image), image, factor)


def color(image, factor):
  return _blend(jnp.broadcast_to(_luminance(image), image.shape), image, factor)


def contrast(image, factor):
  """Blends with the grey of the image's mean luminance, rounded to an integer."""
  mean = jnp.floor(jnp.mean(_luminance(image)) + 0.5)
  return _blend(jnp.full_like(image, mean), image, factor)


def sharpness(image, factor):
  """Blends with PIL's SMOOTH filter (3 x 3, centre 5, the rest 1, / 13, rounded), whose
  border rows and columns keep their values."""
  h, w, _ = image.shape
  x = image.astype(jnp.int32)
  padded = jnp.pad(x, ((1, 1), (1, 1), (0, 0)))
  total = sum(padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) + 4 * x
  smooth = ((2 * total + 13) // 26).astype(jnp.float32)  # total / 13 rounded half up, exactly.
  rows, cols = jnp.arange(h)[:, None, None], jnp.arange(w)[None, :, None]
  border = (rows == 0) | (rows == h - 1) | (cols == 0) | (cols == w - 1)
  return _blend(jnp.where(border, image, smooth), image, factor)


# --- geometric operations: PIL's nearest-neighbour affine map, in its fixed point -----------


def fixed_point_matrix(matrix) -> tuple[int, ...]:
  """PIL's AFFINE matrix (a, b, c, d, e, f: output pixel centre (x + .5, y + .5) -> input
  point) in the 16.16 fixed point its nearest-neighbour transform steps with (Pillow's
  Geometry.c, affine_fixed): each entry rounded to 1/65536, the offsets at pixel centres."""
  a, b, c, d, e, f = matrix
  fix = lambda v: int(math.floor(v * 65536.0 + 0.5))
  return (fix(a), fix(b), fix(c + a * 0.5 + b * 0.5), fix(d), fix(e), fix(f + d * 0.5 + e * 0.5))


def affine(image, fixed):
  """The output pixel (x, y) takes the input pixel ((c' + a x + b y) >> 16, (f' + d x + e y)
  >> 16) of the fixed-point matrix (a, b, c', d, e, f'), black where that falls outside: the
  integer arithmetic of PIL's transform, so the same pixels move."""
  a, b, c, d, e, f = (fixed[i] for i in range(6))
  h, w, _ = image.shape
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.int32), jnp.arange(w, dtype=jnp.int32),
                        indexing="ij")
  xin = (c + a * xs + b * ys) >> 16
  yin = (f + d * xs + e * ys) >> 16
  inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
  taken = image[jnp.clip(yin, 0, h - 1), jnp.clip(xin, 0, w - 1)]
  return jnp.where(inside[..., None], taken, 0.0)


def rotate_matrix(degrees: float, h: int, w: int) -> tuple[float, ...]:
  """PIL's rotate(degrees): counter-clockwise about the image centre, same size."""
  angle = -math.radians(degrees % 360.0)
  cos, sin = round(math.cos(angle), 15), round(math.sin(angle), 15)
  cx, cy = w / 2.0, h / 2.0
  return (cos, sin, cos * -cx + sin * -cy + cx, -sin, cos, -sin * -cx + cos * -cy + cy)


def shear_x_matrix(v: float, h: int, w: int) -> tuple[float, ...]:
  return (1.0, v, 0.0, 0.0, 1.0, 0.0)


def shear_y_matrix(v: float, h: int, w: int) -> tuple[float, ...]:
  return (1.0, 0.0, 0.0, v, 1.0, 0.0)


def translate_x_matrix(fraction: float, h: int, w: int) -> tuple[float, ...]:
  """Shifted by int(fraction x width) pixels (the reference truncates)."""
  return (1.0, 0.0, float(int(fraction * w)), 0.0, 1.0, 0.0)


def translate_y_matrix(fraction: float, h: int, w: int) -> tuple[float, ...]:
  return (1.0, 0.0, 0.0, 0.0, 1.0, float(int(fraction * h)))


# FixMatch's pool (the reference's fixmatch_augment_pool), in its order.
OPS: tuple[Op, ...] = (
    Op("autocontrast", autocontrast),
    Op("brightness", brightness, 0.9, 0.05),
    Op("color", color, 0.9, 0.05),
    Op("contrast", contrast, 0.9, 0.05),
    Op("equalize", equalize),
    Op("identity", identity),
    Op("posterize", posterize, 4, 4, integer=True),
    Op("rotate", None, 30, 0, integer=True, signed=True, matrix=rotate_matrix),
    Op("sharpness", sharpness, 0.9, 0.05),
    Op("shear_x", None, 0.3, 0, signed=True, matrix=shear_x_matrix),
    Op("shear_y", None, 0.3, 0, signed=True, matrix=shear_y_matrix),
    Op("solarize", solarize, 256, 0, integer=True),
    Op("translate_x", None, 0.3, 0, signed=True, matrix=translate_x_matrix),
    Op("translate_y", None, 0.3, 0, signed=True, matrix=translate_y_matrix),
)
OP_NAMES = tuple(op.name for op in OPS)
LEVELS = PARAMETER_MAX + 1  # Tables hold levels 0 .. 10.


def _point_branch(op: Op):
  """The op's magnitudes at every level computed once in Python floats (see Op.magnitude),
  indexed on the device."""
  table = jnp.asarray([op.magnitude(level) for level in range(LEVELS)], jnp.float32)

  def run(image, level, negative):
    magnitude = table[level]
    return op.fn(image, jnp.where(negative, -magnitude, magnitude) if op.signed else magnitude)
  return run


def _geometric_branch(op: Op, h: int, w: int):
  """The op's fixed-point matrices at every level and direction, computed in Python floats
  as PIL does, indexed on the device."""
  table = jnp.asarray([[fixed_point_matrix(op.matrix(sign * op.magnitude(level), h, w))
                        for sign in (1.0, -1.0)] for level in range(LEVELS)], jnp.int32)

  def run(image, level, negative):
    return affine(image, table[level, negative.astype(jnp.int32)])
  return run


def apply_op(index: jax.Array, image: jax.Array, level: jax.Array,
             negative: jax.Array) -> jax.Array:
  """OPS[index] at `level` (0 .. 10), turned the other way where `negative` (signed ops), on
  a float32 [H, W, C] image in 0..255."""
  h, w, _ = image.shape
  branches = [_geometric_branch(op, h, w) if op.matrix else _point_branch(op) for op in OPS]
  return jax.lax.switch(index, [lambda x, lv, ng, run=run: run(x, lv, ng).astype(jnp.float32)
                                for run in branches], image, jnp.asarray(level, jnp.int32),
                        jnp.asarray(negative, bool))


def cutout(image: jax.Array, x: jax.Array, y: jax.Array, side: int) -> jax.Array:
  """The reference's CutoutAbs at centre (x, y) (floats in pixels): x0 = int(max(0, x -
  side / 2)), x1 = int(min(width, x0 + side)), and the grey box covers x0..x1 inclusive (PIL's
  rectangle), rows likewise."""
  h, w, _ = image.shape
  x0 = jnp.floor(jnp.maximum(0.0, x - side / 2.0))
  y0 = jnp.floor(jnp.maximum(0.0, y - side / 2.0))
  x1 = jnp.floor(jnp.minimum(float(w), x0 + side))
  y1 = jnp.floor(jnp.minimum(float(h), y0 + side))
  rows = jnp.arange(h, dtype=jnp.float32)[:, None, None]
  cols = jnp.arange(w, dtype=jnp.float32)[None, :, None]
  box = (rows >= y0) & (rows <= y1) & (cols >= x0) & (cols <= x1)
  return jnp.where(box, jnp.asarray(CUTOUT_FILL, image.dtype), image)


@flax.struct.dataclass
class Policy:
  """One image's draw: per chosen op its index, level, whether it applies and its direction,
  and the cutout's centre in pixels."""
  ops: jax.Array  # int32 [n]
  levels: jax.Array  # int32 [n], 1 .. m - 1
  applied: jax.Array  # bool [n]
  negative: jax.Array  # bool [n]: a signed op turns the other way
  center: jax.Array  # float32 [2]: x, y


def draw_policy(key: jax.Array, image_shape, n: int = 2, m: int = 10) -> Policy:
  """RandAugmentMC's random choices for one image."""
  k_ops, k_levels, k_apply, k_signs, k_center = jax.random.split(key, 5)
  h, w = image_shape[0], image_shape[1]
  return Policy(
      ops=jax.random.randint(k_ops, (n,), 0, len(OPS)),
      levels=jax.random.randint(k_levels, (n,), 1, m),
      applied=jax.random.bernoulli(k_apply, 0.5, (n,)),
      negative=jax.random.bernoulli(k_signs, 0.5, (n,)),
      center=jax.random.uniform(k_center, (2,)) * jnp.asarray([w, h], jnp.float32))


def apply_policy(image: jax.Array, policy: Policy, cutout_side: int) -> jax.Array:
  """A uint8 image through the policy's ops in order, then the cutout."""
  out = image.astype(jnp.float32)
  for i in range(policy.ops.shape[0]):
    changed = apply_op(policy.ops[i], out, policy.levels[i], policy.negative[i])
    out = jnp.where(policy.applied[i], changed, out)
  out = cutout(out, policy.center[0], policy.center[1], cutout_side)
  return out.astype(jnp.uint8)


def cutout_side(image_shape, fraction: float = 0.5) -> int:
  """The cutout's side: `fraction` of the shorter image side (16 on 32 x 32, as FixMatch)."""
  return int(math.floor(fraction * min(image_shape[0], image_shape[1])))


def rand_augment(key: jax.Array, image: jax.Array, n: int = 2, m: int = 10,
                 cutout_fraction: float = 0.5) -> jax.Array:
  """One uint8 [H, W, C] image's strong view (see the module docstring)."""
  policy = draw_policy(key, image.shape, n, m)
  return apply_policy(image, policy, cutout_side(image.shape, cutout_fraction))


def rand_augment_batch(key: jax.Array, images: jax.Array, n: int = 2, m: int = 10,
                       cutout_fraction: float = 0.5) -> jax.Array:
  """A batch [B, H, W, C], each image with its own key split from `key`."""
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda k, x: rand_augment(k, x, n, m, cutout_fraction))(keys, images)
