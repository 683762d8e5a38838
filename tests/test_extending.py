"""docs/EXTENDING.md's recipes, each as its test: a loss, a sampler, a dataset and a pipeline
added as one table entry (plus the code it names) are accepted by validation and run end to
end, with nothing else changed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from lt_jax import losses, pipeline
from lt_jax.config import override
from lt_jax.data import datasets, samplers, sources, unlabeled
from lt_jax.errors import ConfigError
from lt_jax.train import objective
from lt_jax.validate import divergence_suspects, validate

COUNTS = np.array([100, 30, 10])


def test_a_loss_entry_is_validated_computed_and_named_on_divergence(monkeypatch, tmp_path):
  # Cross-entropy on temperature-scaled logits: the knob is an existing float field.
  def per_example(loss, counts):
    return lambda z, y, w: losses.weighted_cross_entropy(z / loss.la_tau, y, class_weights=w)
  config = tiny_config(loss__name="tempered_ce", loss__la_tau=2.0, train__num_epochs=1)
  with pytest.raises(ConfigError, match="loss.name='tempered_ce' is unknown"):
    validate(config, check_data=False)
  monkeypatch.setitem(objective.LOSSES, "tempered_ce",
                      objective.Loss(per_example, knobs=("loss.la_tau",)))
  validate(config, check_data=False)
  logits = jnp.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
  labels = jnp.array([0, 1])
  got = objective.make_objective(config, COUNTS)(logits, labels, 0)
  z = np.asarray(logits) / 2.0
  log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
  assert float(got) == pytest.approx(-np.mean(log_softmax[[0, 1], [0, 1]]), rel=1e-6)
  assert "loss.la_tau=2" in divergence_suspects(config)
  out = pipeline.run(config, str(tmp_path))
  assert out["config"]["loss"]["name"] == "tempered_ce" and out["final"]["epoch"] == 1


def test_a_sampler_entry_is_validated_and_drawn_from(monkeypatch, tmp_path):
  drawn = []

  def head_first(labels, num_classes, batch_size, **_):  # The largest class only.
    largest = np.flatnonzero(labels == np.argmax(np.bincount(labels)))

    def sampler(key, step):
      return jnp.asarray(largest)[jax.random.randint(key, (batch_size,), 0, len(largest))]
    drawn.append(largest)
    return sampler
  config = tiny_config(train__sampler="head_first", train__num_epochs=1)
  with pytest.raises(ConfigError, match="train.sampler='head_first' is unknown"):
    validate(config, check_data=False)
  monkeypatch.setitem(samplers.SAMPLERS, "head_first", samplers.SamplerRule(head_first))
  validate(config, check_data=False)
  idx = samplers.make_sampler("head_first", np.array([0, 1, 1, 2]), 3, 8)(jax.random.key(0), 0)
  assert set(np.asarray(idx).tolist()) <= {1, 2}
  pipeline.run(config, str(tmp_path))
  assert drawn  # The stage built its step with the new sampler.


def test_a_dataset_entry_is_loaded_and_trained_on(monkeypatch, tmp_path):
  def read_half(spec, location, options):  # digits' even pixels only: a 4x8 image.
    digits = sources.read_digits(spec, location, options)
    return sources.Splits(*(sources.Split(s.images[:, ::2], s.labels)
                            for s in (digits.train, digits.test)))
  monkeypatch.setitem(datasets.DATASETS, "half_digits", datasets.DatasetSpec(
      "half_digits", "device", 10, 1, None, None, find=sources.find_bundled, read=read_half))
  data = datasets.load("half_digits")
  assert data.train.images.shape[1:] == (4, 8, 1) and data.num_classes == 10
  out = pipeline.run(tiny_config(dataset__name="half_digits", train__num_epochs=1),
                     str(tmp_path))
  assert out["dataset"]["name"] == "half_digits" and out["class_counts"][0] == 100


def test_a_pipeline_entry_is_chosen_described_and_run(monkeypatch, tmp_path):
  def twice(config, workdir):  # Two seeds of the same run, one after the other.
    runs = {seed: pipeline.train(override(config, seed=seed), f"{workdir}/seed_{seed}")
            for seed in (0, 1)}
    return {"final": runs[1]["final"], "seeds": sorted(runs)}
  entry = pipeline.Pipeline(lambda c: c.train.log_every_steps == 7, twice,
                            lambda c: "twice: seed 0 -> seed 1",
                            lambda c: [pipeline.TrainingBatch("seed", "train.batch_size",
                                                              c.train.batch_size)] * 2)
  monkeypatch.setattr(pipeline, "PIPELINES", {"twice": entry, **pipeline.PIPELINES})
  config = tiny_config(train__log_every_steps=7, train__num_epochs=1)
  assert pipeline.describe(config) == "twice: seed 0 -> seed 1"
  assert len(pipeline.training_batches(config)) == 2
  out = pipeline.run(config, str(tmp_path))
  assert out["seeds"] == [0, 1] and (tmp_path / "seed_1" / "results.json").exists()
  assert pipeline.describe(tiny_config()) == "supervised: one classifier"


def test_a_pool_entry_is_validated_with_its_needs_and_read(monkeypatch):
  def mirrored(data, options):  # The training images flipped left-right, with their labels.
    return unlabeled.Candidates(data.train.images[:, :, ::-1], data.train.labels,
                                np.arange(len(data.train.labels)))
  entry = unlabeled.PoolSource(mirrored, "the mirrored training split", dataset=(
      "digits", " (a test pool)"), field=("semi.pool_npz_path", "any path"))
  monkeypatch.setitem(unlabeled.POOLS, "mirrored", entry)
  config = tiny_config(semi__enabled=True, semi__pool_source="mirrored")
  with pytest.raises(ConfigError, match=r"semi.pool_source='mirrored' needs "
                                        r"semi.pool_npz_path, any path"):
    validate(config, check_data=False)
  with pytest.raises(ConfigError, match=r"needs dataset.name='digits' \(a test pool\)"):
    validate(override(config, **{"dataset.name": "fashion_mnist"}), check_data=False)
  validate(override(config, **{"semi.pool_npz_path": "/x"}), check_data=False)
  data = datasets.load("digits")
  candidates = unlabeled.candidate_pool("mirrored", data)
  np.testing.assert_array_equal(candidates.images[:, :, 0], data.train.images[:, :, -1])
