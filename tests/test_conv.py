"""`conv_impl='cpu_fast'` against XLA's convolution and its autodiff, on every shape the models use.

The reference is `jax.grad` of `lax.conv_general_dilated` (`conv3x3_xla`). The forward passes are
the same XLA op, so they must agree exactly. The weight gradient sums the same products in
another order (per tap over chunks of the batch, instead of XLA's convolution kernel), so it
agrees to float32 rounding: RTOL = ATOL = 1e-5 relative to the gradient's largest entry, two
orders of magnitude above the error seen (about 1e-7 of it) and far below any wrong tap or
stride (which errs by O(1) of it).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lt_jax.errors import ConfigError
from lt_jax.models import CONV_IMPLS, Conv3x3, create_model
from lt_jax.models import conv as conv_lib
from lt_jax.models.conv import _chunk_size, conv3x3_cpu, conv3x3_xla, resolve_conv_impl, weight_grad

RTOL = 1e-5  # relative to the largest entry of the expected array; see the module docstring


def _conv_shapes(model, input_shape):
  """(H, W, Cin, Cout, stride) of every Conv3x3 a model applies to inputs of `input_shape`."""
  shapes = set()

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, Conv3x3) and context.method_name == '__call__':
      _, h, w, cin = args[0].shape
      shapes.add((h, w, cin, context.module.features, context.module.stride))
    return next_fun(*args, **kwargs)

  x = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)
  with nn.intercept_methods(record):
    jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  return shapes


# ResNet-20..110 share their conv shapes (only the depth differs); resnet_tiny has its own.
# Inputs: CIFAR/SVHN 32x32x3, Fashion-MNIST 28x28x1 (28 -> 14 -> 7), digits 8x8x1 (8 -> 4 -> 2).
MODEL_SHAPES = sorted(
    set().union(*(_conv_shapes(create_model(name, num_classes=10), shape)
                  for name in ('resnet32', 'resnet_tiny')
                  for shape in ((32, 32, 3), (28, 28, 1), (8, 8, 1))))
    # Odd sizes at stride 2 (7 -> 4, 5 -> 3) and a non-square input.
    | {(7, 7, 16, 32, 2), (5, 5, 4, 8, 2), (7, 5, 3, 4, 1)})


def test_model_shapes_cover_the_stage_transitions():
  assert (32, 32, 3, 16, 1) in MODEL_SHAPES and (28, 28, 1, 16, 1) in MODEL_SHAPES
  assert {(32, 32, 16, 32, 2), (16, 16, 32, 64, 2), (14, 14, 32, 64, 2), (4, 4, 32, 64, 2),
          (32, 32, 4, 8, 2), (16, 16, 8, 16, 2)} <= set(MODEL_SHAPES)
  assert (8, 8, 64, 64, 1) in MODEL_SHAPES and (2, 2, 64, 64, 1) in MODEL_SHAPES


def _inputs(shape, batch, seed=0, dtype=jnp.float32):
  h, w, cin, cout, stride = shape
  rng = np.random.default_rng(seed)
  out_h, out_w = (h - 1) // stride + 1, (w - 1) // stride + 1
  x = rng.standard_normal((*batch, h, w, cin))
  kernel = rng.standard_normal((3, 3, cin, cout)) / np.sqrt(9 * cin)
  cotangent = rng.standard_normal((*batch, out_h, out_w, cout))
  return (jnp.asarray(x, dtype), jnp.asarray(kernel, dtype), jnp.asarray(cotangent, dtype))


def _value_and_grads(conv, stride):
  """(y, dx, dkernel) of `sum(conv(x, kernel) * cotangent)`: the VJP of both arguments."""
  def f(x, kernel, cotangent):
    y, vjp = jax.vjp(lambda x, k: conv(x, k, stride), x, kernel)
    return (y, *vjp(cotangent))
  return f


def _assert_close(got, expected, rtol=RTOL):
  expected = np.asarray(expected, np.float64)
  scale = np.abs(expected).max()
  np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize('shape', MODEL_SHAPES, ids=lambda s: 'x'.join(map(str, s)))
def test_forward_and_gradients_match_xla_under_jit(shape):
  stride = shape[-1]
  args = _inputs(shape, batch=(3,))
  both = jax.jit(lambda *a: (_value_and_grads(conv3x3_cpu, stride)(*a),
                             _value_and_grads(conv3x3_xla, stride)(*a)))  # one compilation
  (y, dx, dk), (y_ref, dx_ref, dk_ref) = both(*args)
  np.testing.assert_array_equal(y, y_ref)  # the same XLA op
  assert dx.shape == args[0].shape and dk.shape == args[1].shape
  _assert_close(dx, dx_ref)
  _assert_close(dk, dk_ref)


@pytest.mark.parametrize('shape', [(32, 32, 16, 16, 1), (16, 16, 32, 64, 2), (7, 7, 16, 32, 2),
                                   (8, 8, 1, 16, 1)], ids=lambda s: 'x'.join(map(str, s)))
def test_gradients_match_xla_under_vmap(shape):
  # The contrastive code vmaps model.apply over ghost-BatchNorm groups: a leading group axis.
  stride = shape[-1]
  x, kernel, cotangent = _inputs(shape, batch=(2, 2), seed=1)
  kernels = jnp.stack([kernel, 2.0 * kernel])
  got = jax.jit(jax.vmap(_value_and_grads(conv3x3_cpu, stride)))(x, kernels, cotangent)
  expected = jax.jit(jax.vmap(_value_and_grads(conv3x3_xla, stride)))(x, kernels, cotangent)
  np.testing.assert_array_equal(got[0], expected[0])
  for g, e in zip(got[1:], expected[1:]):
    for group in range(2):
      _assert_close(g[group], e[group])


@pytest.mark.parametrize('stride', [1, 2])
def test_weight_gradient_over_several_chunks(stride):
  # 6 images of 32x32x16 walked in 3 chunks of 2, and in one: the numbers must not depend on it.
  image_bytes = 34 * 34 * 16 * 4
  assert _chunk_size(6, image_bytes, chunk_bytes=2 * image_bytes) == 2
  x, kernel, cotangent = _inputs((32, 32, 16, 16, stride), batch=(6,), seed=2)
  _, kernel_vjp = jax.vjp(lambda k: conv3x3_xla(x, k, stride), kernel)
  (dk_ref,) = kernel_vjp(cotangent)
  for chunk_bytes in (2 * image_bytes, 6 * image_bytes):
    dk = jax.jit(weight_grad, static_argnums=(2, 3))(x, cotangent, stride, chunk_bytes)
    _assert_close(dk, dk_ref)


def test_chunk_size_divides_the_batch():
  # The CIFAR ResNets' three stages at batch 128: 8, 16 and 32 images a chunk.
  assert _chunk_size(128, 34 * 34 * 16 * 4) == 8  # 73,984 bytes an image: 14 fit, 8 divides
  assert _chunk_size(128, 18 * 18 * 32 * 4) == 16  # 41,472 bytes: 25 fit
  assert _chunk_size(128, 10 * 10 * 64 * 4) == 32  # 25,600 bytes: 40 fit
  assert _chunk_size(128, 34 * 34 * 16 * 4, chunk_bytes=160 * 1024) == 2
  assert _chunk_size(7, 1000) == 7  # small images: the whole (prime) batch in one chunk
  assert _chunk_size(7, 300_000) == 1  # 3 fit, but only 1 and 7 divide 7
  assert _chunk_size(1, 10**9) == 1


def test_bfloat16_computes_in_bfloat16_and_accumulates_in_float32():
  shape = (16, 16, 8, 16, 2)
  x, kernel, cotangent = _inputs(shape, batch=(2,), seed=3, dtype=jnp.bfloat16)
  y, dx, dk = jax.jit(_value_and_grads(conv3x3_cpu, 2))(x, kernel, cotangent)
  assert y.dtype == dx.dtype == dk.dtype == jnp.bfloat16
  f32 = [a.astype(jnp.float32) for a in (x, kernel, cotangent)]
  _, dx_ref, dk_ref = jax.jit(_value_and_grads(conv3x3_xla, 2))(*f32)
  # bfloat16 carries 8 bits of mantissa: the result's own rounding is 2^-8 of its size.
  _assert_close(dx, dx_ref, rtol=2e-2)
  _assert_close(dk, dk_ref, rtol=2e-2)


def test_module_declares_the_same_parameter_as_nn_conv():
  x = jnp.ones((1, 8, 8, 3))
  key = jax.random.key(4)
  ours = {impl: Conv3x3(16, 2, conv_impl=impl).init(key, x) for impl in CONV_IMPLS}
  flax_conv = nn.Conv(16, (3, 3), strides=2, padding=((1, 1), (1, 1)), use_bias=False,
                      kernel_init=nn.initializers.variance_scaling(2.0, 'fan_in', 'normal'))
  theirs = flax_conv.init(key, x)
  for variables in ours.values():
    assert jax.tree.structure(variables) == jax.tree.structure(theirs)
    np.testing.assert_array_equal(variables['params']['kernel'], theirs['params']['kernel'])
    np.testing.assert_array_equal(Conv3x3(16, 2).apply(variables, x), flax_conv.apply(theirs, x))


def test_conv_impl_choices_and_errors(monkeypatch):
  assert resolve_conv_impl('xla') == 'xla' and resolve_conv_impl('cpu_fast') == 'cpu_fast'
  assert jax.default_backend() == 'cpu' and resolve_conv_impl('auto') == 'cpu_fast'
  monkeypatch.setattr(jax, 'default_backend', lambda: 'tpu')
  assert resolve_conv_impl('auto') == 'xla'
  with pytest.raises(ConfigError, match=r"model\.conv_impl='fast'.*cpu_fast"):
    create_model('resnet32', num_classes=10, conv_impl='fast')
  with pytest.raises(ValueError, match='NHWC'):
    Conv3x3(4).init(jax.random.key(0), jnp.ones((8, 8, 3)))


def _uses_custom_vjp(module, x):
  variables = module.init(jax.random.key(0), x)
  return 'custom_vjp_call' in str(jax.make_jaxpr(lambda v: module.apply(v, x))(variables))


def test_small_layers_keep_xla_and_large_ones_use_cpu_fast(monkeypatch):
  small = jnp.zeros((2, 8, 8, 3))
  large = jnp.zeros((-(-conv_lib.MIN_INPUT_BYTES // (32 * 32 * 16 * 4)), 32, 32, 16))
  assert not _uses_custom_vjp(Conv3x3(4, conv_impl='cpu_fast'), small)
  assert not _uses_custom_vjp(Conv3x3(4, 2, conv_impl='xla'), large)
  assert _uses_custom_vjp(Conv3x3(4, 2, conv_impl='cpu_fast'), large)
  assert not _uses_custom_vjp(Conv3x3(4, 2, conv_impl='cpu_fast'), large[:-1])
  monkeypatch.setattr(conv_lib, 'MIN_INPUT_BYTES', 0)
  assert _uses_custom_vjp(Conv3x3(4, conv_impl='cpu_fast'), small)


@pytest.mark.slow
def test_resnet32_loss_curve_is_the_same_with_either_conv(monkeypatch):
  # Three SGD steps of ResNet-32 from the same initialisation on the same 8 images, every
  # layer on the custom weight gradient (MIN_INPUT_BYTES 0). Rounding differences (1e-7
  # relative) grow about tenfold a step while the model memorises 8 images through BatchNorm
  # over small batches (measured: 2e-7 after one step, 3e-5 after two), hence 1e-5 for the
  # first step's loss and 1e-3 for the curve. A weight gradient 5% off moves the first step's
  # loss by 1.2e-2, one with its taps flipped by 3e-1.
  monkeypatch.setattr(conv_lib, 'MIN_INPUT_BYTES', 0)
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.standard_normal((8, 32, 32, 3)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, 8), jnp.int32)
  tx = optax.chain(optax.add_decayed_weights(2e-4), optax.sgd(0.01, momentum=0.9))
  # Both models declare the same parameters (see the nn.Conv test): one initialisation serves.
  shape = jax.ShapeDtypeStruct(x.shape, x.dtype)
  variables = jax.jit(lambda: create_model('resnet32', num_classes=10).lazy_init(
      jax.random.key(0), shape, train=False))()

  def losses(conv_impl):
    model = create_model('resnet32', num_classes=10, conv_impl=conv_impl)

    @jax.jit  # stepped from Python: a scan over whole train steps runs far slower at -O0
    def step(params, batch_stats, opt_state):

      def loss_fn(params):
        (logits, _), updates = model.apply({'params': params, 'batch_stats': batch_stats}, x,
                                           train=True, mutable=['batch_stats'])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates

      (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      deltas, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, deltas), updates['batch_stats'], opt_state), loss

    state, curve = (variables['params'], variables['batch_stats'], tx.init(variables['params'])), []
    for _ in range(3):
      state, loss = step(*state)
      curve.append(float(loss))
    return np.array(curve)

  losses_xla, losses_fast = losses('xla'), losses('cpu_fast')
  assert np.all(np.isfinite(losses_xla)) and losses_xla[-1] < 0.5 * losses_xla[0]  # it trains
  assert losses_fast[0] == losses_xla[0]  # the same forward pass
  np.testing.assert_allclose(losses_fast[1], losses_xla[1], rtol=1e-5)
  np.testing.assert_allclose(losses_fast, losses_xla, rtol=1e-3)
