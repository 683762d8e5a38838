"""Tests for lt_jax.models: structure, fidelity to the PyTorch reference, initialisation, BN.

Expectations are computed independently: parameter counts by hand from the architecture,
convolutions and shortcuts with NumPy, cosine logits with NumPy. Tiny models everywhere except
where the test is about ResNet-32's structure (those use `jax.eval_shape`, which compiles nothing,
or one initialisation).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lt_jax.models import (
    MODELS,
    BasicBlock,
    CifarResNet,
    CosineHead,
    LinearHead,
    ResNet32,
    ResNetTiny,
    create_model,
)
from lt_jax.models.resnet_cifar import conv3x3, shortcut_option_a


def _numpy_conv3x3(x, kernel, stride):
  """Cross-correlation as PyTorch's Conv2d(padding=1): pad 1 on every side, sample from 0."""
  x = np.asarray(x, np.float64)
  kernel = np.asarray(kernel, np.float64)
  b, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out_h = (h + 2 - 3) // stride + 1
  out_w = (w + 2 - 3) // stride + 1
  out = np.zeros((b, out_h, out_w, kernel.shape[-1]))
  for i in range(out_h):
    for j in range(out_w):
      patch = xp[:, i * stride:i * stride + 3, j * stride:j * stride + 3, :]
      out[:, i, j, :] = np.einsum('bhwc,hwco->bo', patch, kernel)
  return out


def _key(seed):
  # The 'rbg' bit generator compiles several times faster than threefry on CPU; the initialisers
  # under test are the same whichever generator feeds them.
  return jax.random.key(seed, impl='rbg')


def _normal(seed, shape, scale=1.0, shift=0.0):
  """Test inputs from NumPy: nothing to compile."""
  x = np.random.default_rng(seed).standard_normal(shape) * scale + shift
  return jnp.asarray(x, jnp.float32)


def _init(model, shape, seed=0):
  """Initial variables; op by op, so compiled kernels are shared between tests of one shape."""
  return model.init(_key(seed), jnp.zeros(shape, jnp.float32), train=False)


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _leaves_named(tree, name):
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return [leaf for path, leaf in flat if path[-1].key == name]


@pytest.fixture(scope='module')
def resnet32_shapes():
  model = ResNet32(num_classes=10)
  return jax.eval_shape(
      lambda: model.init(_key(0), jnp.zeros((1, 32, 32, 3)), train=False))


@pytest.fixture(scope='module')
def resnet32_vars():
  # lazy_init skips the forward pass, so only the initialisers compile.
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  return jax.jit(lambda: ResNet32(num_classes=10).lazy_init(_key(0), x, train=False))()


# --- Structure -------------------------------------------------------------------------------


def test_resnet32_parameter_count_by_hand(resnet32_shapes):
  def conv(cin, cout):
    return 3 * 3 * cin * cout

  def bn(c):
    return 2 * c  # scale and bias; running mean/var are batch_stats, not trainable

  expected = conv(3, 16) + bn(16)  # stem
  cin = 16
  for width in (16, 32, 64):
    for _ in range(5):
      expected += conv(cin, width) + bn(width) + conv(width, width) + bn(width)
      cin = width
  expected += 64 * 10 + 10  # linear head
  assert expected == 464_154  # the reference's well-known 0.46M
  assert _count(resnet32_shapes['params']) == expected


def test_resnet32_layer_counts(resnet32_shapes):
  params = resnet32_shapes['params']
  kernels = _leaves_named(params, 'kernel')
  assert sum(k.ndim == 4 for k in kernels) == 31  # 1 stem + 15 blocks * 2
  assert len(_leaves_named(params, 'scale')) == 31
  assert len(_leaves_named(params, 'bias')) == 31 + 1  # BN biases + the linear head's
  assert len(_leaves_named(resnet32_shapes['batch_stats'], 'mean')) == 31
  assert len(_leaves_named(resnet32_shapes['batch_stats'], 'var')) == 31
  # The first block of stages 2 and 3 downsamples with a parameter-free (option-A) shortcut.
  assert set(params['backbone']['layer2_0']) == {'conv1', 'bn1', 'conv2', 'bn2'}


def test_variants_and_registry():
  assert set(MODELS) == {
      'resnet20', 'resnet32', 'resnet44', 'resnet56', 'resnet110', 'resnet_tiny', 'resnet10',
      'resnet50', 'resnet10_tiny'}
  depths = {'resnet20': 20, 'resnet32': 32, 'resnet44': 44, 'resnet56': 56, 'resnet110': 110}
  for name, depth in depths.items():
    model = create_model(name, num_classes=10)
    assert isinstance(model, CifarResNet)
    assert 6 * model.stage_sizes[0] + 2 == depth
    assert tuple(model.widths) == (16, 32, 64)
  tiny = create_model('resnet_tiny', num_classes=3, head='cosine')
  assert (tuple(tiny.stage_sizes), tuple(tiny.widths), tiny.head) == ((1, 1, 1), (4, 8, 16),
                                                                      'cosine')


@pytest.mark.parametrize('shape', [(2, 32, 32, 3), (3, 28, 28, 1), (2, 8, 8, 1), (1, 7, 5, 2)])
def test_resnet32_output_shapes(shape):
  model = ResNet32(num_classes=10)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(_key(0), x, train=False), x)
  logits, features = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=False), variables, x)
  assert logits.shape == (shape[0], 10)
  assert features.shape == (shape[0], 64)


@pytest.mark.parametrize('shape', [(2, 32, 32, 3), (3, 28, 28, 1), (2, 8, 8, 1)])
def test_tiny_forward_logits_are_the_linear_head_of_the_features(shape):
  model = ResNetTiny(num_classes=5)
  x = _normal(1, shape)
  variables = _init(model, shape)
  head = variables['params']['head']
  for train in (False, True):
    (logits, features), _ = model.apply(variables, x, train=train, mutable=['batch_stats'])
    assert logits.shape == (shape[0], 5) and logits.dtype == jnp.float32
    assert features.shape == (shape[0], 16) and features.dtype == jnp.float32
    np.testing.assert_allclose(logits, np.asarray(features) @ np.asarray(head['kernel'])
                               + np.asarray(head['bias']), rtol=1e-5, atol=1e-5)
    # Global average pooling of ReLU outputs: features are never negative.
    assert np.all(np.asarray(features) >= 0)
  # Eval mode: each image's output is its own, whatever else is in the batch.
  alone, _ = model.apply(variables, x[:1], train=False)
  together, _ = model.apply(variables, x, train=False)
  np.testing.assert_allclose(alone[0], together[0], rtol=1e-5, atol=1e-5)


def test_param_tree_names_and_backbone_swap():
  x = _normal(1, (2, 8, 8, 3))
  source = _init(ResNetTiny(num_classes=10), x.shape)
  assert set(source['params']) == {'backbone', 'head'}
  assert set(source['batch_stats']) == {'backbone'}
  assert set(source['params']['head']) == {'kernel', 'bias'}
  assert set(source['params']['backbone']) == {
      'conv1', 'bn1', 'layer1_0', 'layer2_0', 'layer3_0'}

  # Backbone-only restore into a model with another head and class count.
  target_model = ResNetTiny(num_classes=4, head='cosine')
  target = _init(target_model, x.shape, seed=2)
  assert set(target['params']['head']) == {'kernel'}
  target = {
      'params': {**target['params'], 'backbone': source['params']['backbone']},
      'batch_stats': {'backbone': source['batch_stats']['backbone']},
  }
  _, features = target_model.apply(target, x, train=False)
  _, source_features = ResNetTiny(num_classes=10).apply(source, x, train=False)
  np.testing.assert_allclose(features, source_features, rtol=1e-6, atol=1e-6)


def test_create_model_errors():
  with pytest.raises(ValueError, match=r"model\.name='resnet33'.*resnet32.*resnet_tiny"):
    create_model('resnet33', num_classes=10)
  with pytest.raises(ValueError, match=r"model\.head='normed'.*cosine.*linear"):
    create_model('resnet32', num_classes=10, head='normed')
  with pytest.raises(ValueError, match=r'model\.head'):
    _init(CifarResNet(num_classes=10, head='normed'), (1, 8, 8, 3))


def test_bfloat16_compute_keeps_float32_params_and_outputs():
  model = create_model('resnet_tiny', num_classes=5, dtype=jnp.bfloat16)
  x = _normal(1, (2, 8, 8, 3))
  variables = _init(model, x.shape)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  logits, features = model.apply(variables, x, train=False)
  assert logits.dtype == jnp.float32 and features.dtype == jnp.float32


# --- Fidelity to PyTorch: padding and shortcut -------------------------------------------------


@pytest.mark.parametrize('size', [6, 7])
def test_stride2_conv_matches_symmetric_padding(size):
  x = _normal(1, (2, size, size, 3))
  conv = conv3x3(4, stride=2)
  variables = conv.init(_key(0), x)
  got = conv.apply(variables, x)
  expected = _numpy_conv3x3(x, variables['params']['kernel'], stride=2)
  assert got.shape == expected.shape == (2, (size + 1) // 2, (size + 1) // 2, 4)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  if size % 2 == 0:
    # The pitfall this guards against: 'SAME' pads (0, 1) at stride 2 on even sizes.
    same = jax.lax.conv_general_dilated(
        x, variables['params']['kernel'], (2, 2), 'SAME',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    assert not np.allclose(same, expected, atol=1e-3)


def test_stride1_conv_matches_numpy():
  x = _normal(1, (2, 5, 5, 2))
  conv = conv3x3(3)
  variables = conv.init(_key(0), x)
  assert set(variables['params']) == {'kernel'}  # no bias
  np.testing.assert_allclose(
      conv.apply(variables, x), _numpy_conv3x3(x, variables['params']['kernel'], 1),
      rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('size', [4, 5])
def test_shortcut_option_a_matches_numpy(size):
  x = np.arange(2 * size * size * 4, dtype=np.float32).reshape(2, size, size, 4) + 1.0
  planes = 8
  expected = np.zeros((2, (size + 1) // 2, (size + 1) // 2, planes), np.float32)
  # PyTorch: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4)) in NCHW.
  expected[..., planes // 4:planes // 4 + 4] = x[:, ::2, ::2, :]
  np.testing.assert_array_equal(shortcut_option_a(jnp.asarray(x), planes, 2), expected)


def test_downsampling_block_uses_option_a_shortcut():
  # With the residual branch's last BN zeroed the block is relu(shortcut(x)).
  x = _normal(1, (2, 6, 6, 4))
  block = BasicBlock(planes=8, stride=2)
  variables = block.init(_key(0), x, train=False)
  params = {**variables['params'], 'bn2': jax.tree.map(jnp.zeros_like, variables['params']['bn2'])}
  out = block.apply({**variables, 'params': params}, x, train=False)
  expected = np.zeros((2, 3, 3, 8), np.float32)
  expected[..., 2:6] = np.asarray(x)[:, ::2, ::2, :]
  np.testing.assert_allclose(out, np.maximum(expected, 0.0), atol=1e-6)
  # Identity shortcut when shape is kept.
  same = BasicBlock(planes=4, stride=1)
  v = same.init(_key(0), x, train=False)
  p = {**v['params'], 'bn2': jax.tree.map(jnp.zeros_like, v['params']['bn2'])}
  np.testing.assert_allclose(same.apply({**v, 'params': p}, x, train=False),
                             np.maximum(np.asarray(x), 0.0), atol=1e-6)


# --- Initialisation ---------------------------------------------------------------------------


def test_conv_kernels_are_kaiming_normal(resnet32_vars):
  backbone = resnet32_vars['params']['backbone']
  flat = jax.tree_util.tree_flatten_with_path(backbone)[0]
  kernels = [np.asarray(leaf) for path, leaf in flat if path[-1].key == 'kernel']
  assert len(kernels) == 31
  for k in kernels:
    target = np.sqrt(2.0 / (9 * k.shape[2]))
    tol = 5.0 / np.sqrt(2 * k.size)  # ~5 standard errors of a sample std
    assert abs(k.std() / target - 1.0) < tol, (k.shape, k.std(), target)

  # A big layer (64 -> 64, 36,864 weights): mean, std, and normal (not truncated) tails.
  k = np.asarray(backbone['layer3_4']['conv2']['kernel'])
  sigma = np.sqrt(2.0 / (9 * 64))
  assert abs(k.mean()) < 4 * sigma / np.sqrt(k.size)
  assert abs(k.std() / sigma - 1.0) < 0.03
  beyond_2sigma = np.mean(np.abs(k) > 2 * sigma)  # 4.55% for a normal, 0 if truncated at 2 sigma
  assert abs(beyond_2sigma - 0.0455) < 0.006


def test_linear_head_init(resnet32_vars):
  head = resnet32_vars['params']['head']
  assert head['kernel'].shape == (64, 10)
  assert abs(np.std(head['kernel']) / np.sqrt(2.0 / 64) - 1.0) < 0.15
  assert np.all(np.abs(head['bias']) <= 1 / np.sqrt(64))

  # A wide head shows the bias covers the whole range uniformly.
  wide = LinearHead(num_classes=8192).init(_key(3), jnp.zeros((1, 64)))['params']
  bound = 1.0 / np.sqrt(64)
  b = np.asarray(wide['bias'])
  assert np.all(np.abs(b) <= bound)
  assert b.max() > 0.98 * bound and b.min() < -0.98 * bound
  assert abs(b.var() / (bound ** 2 / 3) - 1.0) < 0.05
  assert abs(np.std(wide['kernel']) / np.sqrt(2.0 / 64) - 1.0) < 0.01


def test_batchnorm_init(resnet32_vars):
  params = resnet32_vars['params']
  for s in _leaves_named(params, 'scale'):
    np.testing.assert_array_equal(s, 1.0)
  bn_biases = _leaves_named(params['backbone'], 'bias')
  assert len(bn_biases) == 31
  for b in bn_biases:
    np.testing.assert_array_equal(b, 0.0)
  for m in _leaves_named(resnet32_vars['batch_stats'], 'mean'):
    np.testing.assert_array_equal(m, 0.0)
  for v in _leaves_named(resnet32_vars['batch_stats'], 'var'):
    np.testing.assert_array_equal(v, 1.0)


def test_cosine_head_init_and_logits():
  head = CosineHead(num_classes=1000)
  x = _normal(1, (6, 64)) * 3.0
  params = head.init(_key(0), x)['params']
  w = np.asarray(params['kernel'], np.float64)
  assert w.shape == (64, 1000)
  np.testing.assert_allclose(np.linalg.norm(w, axis=0), 1.0, rtol=1e-5)
  # Columns are rescaled uniform(-1, 1) draws: kurtosis near the uniform's 1.8, not a normal's 3.
  z = w / w.std(axis=0, keepdims=True)
  kurtosis = np.mean(z ** 4)
  assert 1.6 < kurtosis < 2.1

  logits = np.asarray(head.apply({'params': params}, x), np.float64)
  xn = np.asarray(x, np.float64)
  expected = (xn / np.linalg.norm(xn, axis=1, keepdims=True)) @ w
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
  assert np.all(np.abs(logits) <= 1.0 + 1e-6)

  # Parallel features give cosine 1 with their own class column.
  own = head.apply({'params': params}, jnp.asarray(w[:, 7:8].T * 5.0, jnp.float32))
  np.testing.assert_allclose(own[0, 7], 1.0, rtol=1e-5)


def test_cosine_head_safe_at_zero_features():
  head = CosineHead(num_classes=3)
  x = jnp.zeros((2, 8))
  params = head.init(_key(0), x)['params']
  np.testing.assert_array_equal(head.apply({'params': params}, x), 0.0)
  grads = jax.grad(lambda p, x: head.apply({'params': p}, x).sum(), argnums=(0, 1))(params, x)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_cosine_model_logits_in_unit_interval():
  model = ResNetTiny(num_classes=7, head='cosine')
  x = _normal(1, (4, 8, 8, 3))
  variables = _init(model, x.shape)
  logits, _ = model.apply(variables, x, train=False)
  assert np.all(np.abs(logits) <= 1.0 + 1e-6)


# --- BatchNorm behaviour ------------------------------------------------------------------------


def test_batchnorm_running_stats_update_like_pytorch_momentum_0_1():
  model = ResNetTiny(num_classes=3)
  x = _normal(1, (4, 8, 8, 3))
  variables = _init(model, x.shape)
  kernel = variables['params']['backbone']['conv1']['kernel']
  conv_out = _numpy_conv3x3(x, kernel, stride=1)
  batch_mean = conv_out.mean(axis=(0, 1, 2))
  batch_var = conv_out.var(axis=(0, 1, 2))  # biased (1/n): flax's choice, kept by lt_jax
  n = conv_out.size // conv_out.shape[-1]

  _, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  stats = updates['batch_stats']['backbone']['bn1']
  np.testing.assert_allclose(stats['mean'], 0.9 * 0.0 + 0.1 * batch_mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats['var'], 0.9 * 1.0 + 0.1 * batch_var, rtol=1e-5, atol=1e-6)
  # PyTorch's unbiased update would differ by 0.1 * var / (n - 1), visibly at this small n.
  assert not np.allclose(stats['var'], 0.9 + 0.1 * batch_var * n / (n - 1), rtol=1e-5, atol=0)

  # A second step keeps 0.9 of the running values (conv1 output is unchanged: same params).
  _, updates2 = model.apply(
      {**variables, 'batch_stats': updates['batch_stats']}, x, train=True,
      mutable=['batch_stats'])
  stats2 = updates2['batch_stats']['backbone']['bn1']
  np.testing.assert_allclose(stats2['mean'], 0.9 * np.asarray(stats['mean']) + 0.1 * batch_mean,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats2['var'], 0.9 * np.asarray(stats['var']) + 0.1 * batch_var,
                             rtol=1e-5, atol=1e-6)


def test_eval_mode_uses_running_stats():
  model = ResNetTiny(num_classes=3)
  x = _normal(1, (4, 8, 8, 3))
  variables = _init(model, x.shape)
  # Non-trivial running statistics from a few training-mode passes.
  for i in range(3):
    xi = _normal(10 + i, (8, 8, 8, 3), scale=2.0, shift=0.5)
    _, updates = model.apply(variables, xi, train=True, mutable=['batch_stats'])
    variables = {**variables, **updates}

  alone, _ = model.apply(variables, x[:1], train=False)
  in_batch, _ = model.apply(variables, x, train=False)
  np.testing.assert_allclose(alone[0], in_batch[0], rtol=1e-5, atol=1e-6)
  # Eval mode changes nothing (no mutable collection is needed).
  _, eval_updates = model.apply(variables, x, train=False, mutable=['batch_stats'])
  jax.tree.map(np.testing.assert_array_equal, eval_updates['batch_stats'],
               variables['batch_stats'])
  # Training mode normalises with batch statistics, so other examples matter there.
  (train_alone, _), _ = model.apply(variables, x[:2], train=True, mutable=['batch_stats'])
  (train_batch, _), _ = model.apply(variables, x, train=True, mutable=['batch_stats'])
  assert not np.allclose(train_alone[0], train_batch[0], atol=1e-4)


# --- ImageNet-style ResNets ---------------------------------------------------------------------


def _imagenet_shapes(name, num_classes=1000, size=224):
  model = create_model(name, num_classes=num_classes)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                           train=False))


def _conv_bn(cin, cout, k):
  return k * k * cin * cout + 2 * cout  # Kernel without bias, BatchNorm scale and bias.


def test_resnet50_has_torchvisions_parameter_count():
  params = _imagenet_shapes("resnet50")["params"]
  assert sum(x.size for x in jax.tree.leaves(params)) == 25_557_032  # torchvision resnet50.


def test_resnet10_parameter_count_by_hand():
  expected = _conv_bn(3, 64, 7)
  cin = 64
  for planes in (64, 128, 256, 512):  # One basic block per stage.
    expected += _conv_bn(cin, planes, 3) + _conv_bn(planes, planes, 3)
    if cin != planes:
      expected += _conv_bn(cin, planes, 1)  # The 1x1 projection shortcut.
    cin = planes
  expected += 512 * 1000 + 1000
  params = _imagenet_shapes("resnet10")["params"]
  assert sum(x.size for x in jax.tree.leaves(params)) == expected


def test_imagenet_resnet_features_and_fan_out_init():
  model = create_model("resnet10", num_classes=7, head="lws")
  x = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  logits, features = model.apply(variables, x, train=False)
  assert logits.shape == (2, 7) and features.shape == (2, 512)
  assert np.isfinite(np.asarray(logits)).all()
  kernel = np.asarray(variables["params"]["backbone"]["layer4_0"]["conv2"]["kernel"])
  # The reference: N(0, 2 / (k * k * out_channels)).
  assert kernel.std() == pytest.approx(np.sqrt(2.0 / (3 * 3 * 512)), rel=0.02)
  stem = np.asarray(variables["params"]["backbone"]["conv1"]["kernel"])
  assert stem.shape == (7, 7, 3, 64)
  assert stem.std() == pytest.approx(np.sqrt(2.0 / (7 * 7 * 64)), rel=0.05)


@pytest.mark.parametrize("head", ["linear", "lws"])
def test_imagenet_head_keeps_pytorchs_default_linear_init(head):
  # The reference's DotProductClassifier is a plain nn.Linear: kaiming_uniform_(a=sqrt(5)) for
  # the weight and uniform for the bias, both U(-1/sqrt(fan_in), 1/sqrt(fan_in)), whose std is
  # 1/sqrt(3 fan_in): 0.01276 at ResNet-50's 2,048 features, 0.02552 at ResNet-10's 512.
  model = create_model("resnet10", num_classes=1000, head=head)
  params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)["params"]
  for name in ("kernel", "bias"):
    w = np.asarray(params["head"][name])
    bound = 1 / np.sqrt(512)
    assert np.all(np.abs(w) <= bound) and w.max() > 0.99 * bound
    assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.01 if w.size > 1000 else 0.1)
    assert abs(w.mean()) < 5 * bound / np.sqrt(3 * w.size)  # ~5 standard errors.
  wide = LinearHead(num_classes=1000, kernel_init="torch_default").init(
      _key(4), jnp.zeros((1, 2048)))["params"]["kernel"]
  assert np.std(wide) == pytest.approx(0.012757, rel=0.01)
  assert np.abs(wide).max() <= 1 / np.sqrt(2048)
  # The CIFAR networks keep the reference's kaiming_normal_ head.
  cifar = create_model("resnet32", num_classes=1000).init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)["params"]["head"]["kernel"]
  assert np.std(cifar) == pytest.approx(np.sqrt(2 / 64), rel=0.02)
