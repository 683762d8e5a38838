"""How training batches are drawn: one rule per name (`SAMPLERS`), with an implementation for
each input where it has one.

On the device a sampler is a pure function `(key, step) -> indices [batch]` into the
device-resident training set, called inside the jitted step. On the host (`epoch_order`, for
image lists decoded by grain) it is a whole epoch's order, a pure function of (seed, epoch).
Either depends on nothing but the run's seed and position, so a resumed run draws the same
batches as an uninterrupted one.

- instance: a fresh permutation per epoch; the epoch is ceil(N / B) steps and its last batch is
  topped up from the start of the same permutation (fixed shapes under jit, every image seen
  every epoch; the reference's last batch is smaller instead).
- resample: the reference's `Resample` rule: with replacement, each image drawn with probability
  proportional to its class's class-balanced weight (1 - beta) / (1 - beta^n_c), N per epoch.
- class_balanced: with replacement, classes uniform, images uniform within a class (Kang et al.).
- sqrt: with replacement, class c drawn with probability proportional to sqrt(n_c).
- progressive: with replacement, class probabilities move linearly from instance-balanced
  (n_c / N) at epoch 0 towards class-balanced (1 / C): p_c(e) = (1 - e/E) n_c / N + (e/E) / C,
  so the last epoch (e = E - 1) is (E - 1) / E of the way (Kang et al.'s schedule).
- class_aware: the reference's `ClassAwareSampler` (Kang et al.'s decoupling code, used for cRT
  and LWS): classes come from an endless cycle of shuffled class orders; each class visit takes
  `samples_per_class` consecutive images from that class's own endless cycle of shuffled image
  orders. An epoch is N images, like every sampler here: the reference's training loop
  counts an epoch as N / B steps whatever its sampler's length (max_c n_c x C).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lt_jax.errors import ConfigError

Sampler = Callable[[jax.Array, jax.Array], jax.Array]


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """ceil(N / B): every image is seen once per epoch."""
  return -(-num_examples // batch_size)


def class_probabilities(name: str, counts: np.ndarray, epoch=0, num_epochs: int = 1,
                        beta: float = 0.9999):
  """Probability of drawing each class (sums to 1) for the with-replacement samplers.

  `epoch` may be a traced scalar (the progressive sampler's probabilities change per epoch).
  """
  counts = np.asarray(counts, np.float64)
  present = counts > 0
  if name == "resample":
    per_image = np.where(present, (1.0 - beta) / (1.0 - np.power(beta, np.maximum(counts, 1))),
                         0.0)
    q = per_image * counts
  elif name == "class_balanced":
    q = present.astype(np.float64)
  elif name == "sqrt":
    q = np.sqrt(counts)
  elif name == "progressive":
    instance = counts / counts.sum()
    balanced = present / present.sum()
    t = jnp.asarray(epoch, jnp.float32) / max(num_epochs, 1)
    return ((1.0 - t) * jnp.asarray(instance, jnp.float32)
            + t * jnp.asarray(balanced, jnp.float32))
  else:
    raise ConfigError(f"train.sampler={name!r} has no class probabilities; "
                      f"choose one of {tuple(SAMPLERS)}.")
  return jnp.asarray(q / q.sum(), jnp.float32)


def make_sampler(name: str, labels: np.ndarray, num_classes: int, batch_size: int, *,
                 num_epochs: int = 1, beta: float = 0.9999, samples_per_class: int = 4
                 ) -> Sampler:
  """Builds the device implementation of sampler `name` over a training set with these (host)
  labels."""
  if name not in SAMPLERS:
    raise ConfigError(f"train.sampler={name!r} is unknown; choose one of {tuple(SAMPLERS)}.")
  return SAMPLERS[name].device(np.asarray(labels, np.int64), num_classes, batch_size,
                               num_epochs=num_epochs, beta=beta,
                               samples_per_class=samples_per_class)


def epoch_order(labels: np.ndarray, order: str, seed: int, epoch: int,
                samples_per_class: int = 4, *, num_epochs: int = 1,
                beta: float = 0.9999) -> np.ndarray:
  """The host implementation of sampler `order`: image indices of one epoch (N of them), a
  pure function of (seed, epoch) (and, for progressive, of the run's `num_epochs`; for
  resample, of `beta`)."""
  rule = SAMPLERS.get(order)
  if rule is None or rule.host is None:
    raise ConfigError(f"train.sampler={order!r} has no host pipeline; choose one of "
                      f"{host_samplers()}.")
  return rule.host(np.asarray(labels), seed, epoch, samples_per_class=samples_per_class,
                   num_epochs=num_epochs, beta=beta)


def _instance(labels, num_classes, batch_size, **_) -> Sampler:
  n = len(labels)
  spe = steps_per_epoch(n, batch_size)

  def instance(key, step):
    epoch, pos = step // spe, step % spe
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    return perm[(pos * batch_size + jnp.arange(batch_size)) % n]
  return instance


def _instance_order(labels, seed: int, epoch: int, **_) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(len(labels))


def _with_replacement_order(name: str):
  """The host order of a with-replacement rule: the device law (class probabilities of
  `class_probabilities` at this epoch, images uniform within a class, N draws) with NumPy's
  generator default_rng([seed, epoch])."""

  def order(labels, seed: int, epoch: int, *, num_epochs: int, beta: float, **_) -> np.ndarray:
    counts = np.bincount(labels)
    q = np.asarray(class_probabilities(name, counts, epoch=epoch, num_epochs=num_epochs,
                                       beta=beta), np.float64)
    per_image = q[labels] / counts[labels]
    return np.random.default_rng([seed, epoch]).choice(
        len(labels), size=len(labels), p=per_image / per_image.sum())
  return order


def _with_replacement(name: str):
  """The device sampler of a with-replacement rule: class probabilities `class_probabilities`
  (per epoch), images uniform within a class, N draws an epoch."""

  def build(labels, num_classes, batch_size, *, num_epochs, beta, **_) -> Sampler:
    n = len(labels)
    spe = steps_per_epoch(n, batch_size)
    counts = np.bincount(labels, minlength=num_classes)
    labels_dev = jnp.asarray(labels, jnp.int32)
    counts_dev = jnp.asarray(np.maximum(counts, 1), jnp.float32)

    def with_replacement(key, step):
      q = class_probabilities(name, counts, epoch=step // spe, num_epochs=num_epochs, beta=beta)
      per_image = (q / counts_dev)[labels_dev]
      cdf = jnp.cumsum(per_image)
      u = jax.random.uniform(jax.random.fold_in(key, step), (batch_size,)) * cdf[-1]
      return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), n - 1)
    return with_replacement
  return build


def make_class_aware_sampler(labels: np.ndarray, batch_size: int, samples_per_class: int
                             ) -> Sampler:
  """The reference's ClassAwareSampler as a pure function of (key, step).

  Example i of the run's stream belongs to slot s = i // k (k = samples_per_class), position
  j = i % k. Slot s visits class order_r[s mod C] with r = s // C, order_r the r-th shuffled
  order of the C present classes; every earlier round visited that class once, so this is its
  r-th visit, and it reads positions r k + j of the class's image stream: item p mod n_c of the
  (p // n_c)-th shuffled order of its n_c images.
  """
  if samples_per_class < 1:
    raise ConfigError(f"train.samples_per_class={samples_per_class} must be at least 1.")
  counts = np.bincount(labels)
  present = np.flatnonzero(counts)
  num_present, longest = len(present), int(counts.max())
  # table[c, t]: the t-th image (in dataset order) of the c-th present class; padded.
  table = np.zeros((num_present, longest), np.int32)
  for row, c in enumerate(present):
    members = np.flatnonzero(labels == c)
    table[row, :len(members)] = members
  table_dev = jnp.asarray(table)
  sizes = jnp.asarray(counts[present], jnp.int32)
  k = samples_per_class

  def one(key_cls, key_img, i):
    slot, j = i // k, i % k
    r = slot // num_present
    order = jax.random.permutation(jax.random.fold_in(key_cls, r), num_present)
    row = order[slot % num_present]
    p, n_c = r * k + j, sizes[row]
    scores = jax.random.uniform(jax.random.fold_in(jax.random.fold_in(key_img, row), p // n_c),
                                (longest,))
    shuffled = jnp.argsort(jnp.where(jnp.arange(longest) < n_c, scores, 2.0))
    return table_dev[row, shuffled[p % n_c]]

  def class_aware(key, step):
    positions = step * batch_size + jnp.arange(batch_size)
    key_cls, key_img = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
    return jax.vmap(lambda i: one(key_cls, key_img, i))(positions)
  return class_aware


def permutation_stream(key: jax.Array, n: int, offset: int, positions: jax.Array) -> jax.Array:
  """Item at each position of an endless stream of fresh permutations of range(n): position p
  is perm_r[p mod n] with r = p // n, perm_r a permutation keyed by (key, r)."""
  positions = positions + offset
  rounds, within = positions // n, positions % n
  perm = lambda r: jax.random.permutation(jax.random.fold_in(key, r), n)
  first = perm(rounds[0])
  second = perm(rounds[0] + 1)  # A batch spans at most two rounds when it is <= n long.
  return jnp.where(rounds == rounds[0], first[within], second[within])


def make_mixed_sampler(num_labeled: int, num_unlabeled: int, batch_size: int,
                       labeled_per_batch: int) -> Sampler:
  """Batches with a fixed labeled:unlabeled proportion over a training set whose first
  `num_labeled` examples are labeled: `labeled_per_batch` from a stream of permutations of the
  labeled part, the rest from one of the unlabeled part (each part reshuffled whenever it has
  been seen once)."""
  check_mixed(num_labeled, num_unlabeled, batch_size, labeled_per_batch)
  per_unlabeled = batch_size - labeled_per_batch

  def mixed(key, step):
    k_l, k_u = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
    lab = permutation_stream(k_l, num_labeled, step * labeled_per_batch,
                             jnp.arange(labeled_per_batch))
    unl = permutation_stream(k_u, num_unlabeled, step * per_unlabeled, jnp.arange(per_unlabeled))
    return jnp.concatenate([lab, num_labeled + unl])
  return mixed


def check_mixed(num_labeled: int, num_unlabeled: int, batch_size: int,
                labeled_per_batch: int) -> None:
  """A mixed batch needs at least one example of each part, and no more of a part than it
  holds."""
  per_unlabeled = batch_size - labeled_per_batch
  if not 0 < labeled_per_batch < batch_size:
    raise ConfigError("semi.unlabeled_batch_fraction must leave at least one labeled and one "
                      f"unlabeled example in a batch of {batch_size}.")
  if labeled_per_batch > num_labeled or per_unlabeled > num_unlabeled:
    raise ConfigError(f"a batch of {labeled_per_batch} labeled + {per_unlabeled} unlabeled "
                      f"examples needs more than {num_labeled} / {num_unlabeled} exist; lower "
                      "train.batch_size or change semi.unlabeled_batch_fraction.")


class MixedOrder:
  """The host's mixed batches, the law of `make_mixed_sampler` with NumPy generators: row r
  of step t is, for r < L (labeled_per_batch), position t L + r of a stream of permutations of
  the labeled part, else position t (B - L) + r - L of one of the unlabeled part (offset by
  num_labeled). Permutation k of a part is default_rng([seed, part, k]), part 1 or 2."""

  def __init__(self, num_labeled: int, num_unlabeled: int, batch_size: int,
               labeled_per_batch: int, seed: int):
    check_mixed(num_labeled, num_unlabeled, batch_size, labeled_per_batch)
    self.sizes = (num_labeled, num_unlabeled)
    self.batch_size, self.labeled, self.seed = batch_size, labeled_per_batch, seed
    self._cached: dict[tuple[int, int], np.ndarray] = {}

  def index(self, step: int, row: int) -> int:
    part = 0 if row < self.labeled else 1
    per_step = self.labeled if part == 0 else self.batch_size - self.labeled
    n = self.sizes[part]
    r, within = divmod(step * per_step + row - part * self.labeled, n)
    if (part, r) not in self._cached:
      if len(self._cached) > 8:  # Positions only move forward: old rounds are done.
        self._cached.clear()
      self._cached[part, r] = np.random.default_rng([self.seed, part + 1, r]).permutation(n)
    return int(self._cached[part, r][within]) + part * self.sizes[0]


# --- the host's class-aware order ---------------------------------------------------------


def _class_aware_order(labels, seed: int, epoch: int, *, samples_per_class: int,
                       **_) -> np.ndarray:
  n = len(labels)
  return _class_aware_stream(labels, seed, samples_per_class, epoch * n, n)


def _class_aware_stream(labels, seed: int, k: int, start: int, count: int) -> np.ndarray:
  """Positions [start, start + count) of the class-aware stream: position p is visit
  slot = p // k of class order_r[slot mod C] (r = slot // C, order_r the r-th shuffled class
  order), whose r-th visit reads items r k + j of that class's stream of shuffled orders.

  The same law as `make_class_aware_sampler`, computed a whole epoch at a time: the
  jitted sampler draws a class order and an image order per position, which for iNaturalist
  (8,142 classes, 437,513 positions an epoch) would be billions of draws on the host.
  The two streams differ (NumPy and JAX generators); tests check both against one law."""
  present = np.flatnonzero(np.bincount(labels))
  members = [np.flatnonzero(labels == c) for c in present]
  slot, j = np.divmod(np.arange(start, start + count), k)
  r, within = np.divmod(slot, len(present))
  rows = np.empty(count, np.int64)
  for rr in np.unique(r):
    here = r == rr
    rows[here] = np.random.default_rng([seed, 1, int(rr)]).permutation(len(present))[within[here]]
  sizes = np.asarray([len(m) for m in members])
  rnd, offset = np.divmod(r * k + j, sizes[rows])
  out = np.empty(count, np.int64)
  for row, rn in set(zip(rows.tolist(), rnd.tolist())):
    here = (rows == row) & (rnd == rn)
    order = np.random.default_rng([seed, 2, int(present[row]), rn]).permutation(sizes[row])
    out[here] = members[row][order[offset[here]]]
  return out


# --- the table --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SamplerRule:
  """One way to draw the training stream, with an implementation per input: `device`, the
  pure sampler the jitted step calls ((labels, num_classes, batch_size, options) -> (key, step)
  -> indices); `host`, a whole epoch's order for the host pipeline ((labels, seed, epoch,
  samples_per_class) -> indices), where there is one."""
  device: Callable[..., Sampler]
  host: Callable[..., np.ndarray] | None = None
  by_config: bool = True  # A train.sampler choice (else a train rule's own: resample).


SAMPLERS: dict[str, SamplerRule] = {
    "instance": SamplerRule(_instance, host=_instance_order),
    "resample": SamplerRule(_with_replacement("resample"),
                            host=_with_replacement_order("resample"), by_config=False),
    "class_balanced": SamplerRule(_with_replacement("class_balanced"),
                                  host=_with_replacement_order("class_balanced")),
    "sqrt": SamplerRule(_with_replacement("sqrt"), host=_with_replacement_order("sqrt")),
    "progressive": SamplerRule(_with_replacement("progressive"),
                               host=_with_replacement_order("progressive")),
    "class_aware": SamplerRule(
        lambda labels, num_classes, batch_size, *, samples_per_class, **_:
        make_class_aware_sampler(labels, batch_size, samples_per_class),
        host=_class_aware_order),
}


def config_samplers() -> tuple[str, ...]:
  """What train.sampler may name."""
  return tuple(name for name, rule in SAMPLERS.items() if rule.by_config)


def host_samplers() -> tuple[str, ...]:
  """The samplers the host pipeline can draw."""
  return tuple(name for name, rule in SAMPLERS.items() if rule.host is not None)
