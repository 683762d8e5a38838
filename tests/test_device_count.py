"""Every config and every pipeline family on 8 (fake CPU) devices, as on a Colab TPU or an
8-GPU node: `run.py --check` passes wherever the data is present, and a tiny run of each family
equals the same run on one device to float rounding."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import fake_devices_env
from test_multiprocess import final_state, leaves

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
CONFIGS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs"))
                 if f.endswith(".py") and f != "__init__.py")

CHECK_ALL = """
import importlib, json, sys
from lt_jax import preflight
out = {}
for name in sys.argv[1:]:
  report = preflight.check(importlib.import_module(f"configs.{name}").get_config())
  out[name] = [report.status, report.text]
print(json.dumps(out))
"""


def run(args, devices: int, cwd=ROOT) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, *args], env=fake_devices_env(devices) | {
      "PYTHONPATH": os.pathsep.join([ROOT, TESTS])}, cwd=cwd, capture_output=True, text=True,
      timeout=900)


@pytest.mark.parametrize("devices", [1, 8])
def test_every_config_checks_on_one_and_eight_devices(devices):
  proc = run(["-c", CHECK_ALL, *CONFIGS], devices)
  assert proc.returncode == 0, proc.stderr[-3000:]
  reports = json.loads(proc.stdout.strip().splitlines()[-1])
  assert sorted(reports) == CONFIGS
  for name, (status, text) in reports.items():
    # Only data that is absent may stop a stock config, never its settings or the devices.
    assert status in (0, 3), f"{name}:\n{text}"
    assert f"devices: {devices} x cpu" in text, text
    assert ("data: absent" in text) == (status == 3), text
    if name.startswith("digits"):
      assert status == 0, text  # Bundled with scikit-learn: always present.
  if devices == 8:  # 500 and 100 leave a remainder over 8: padded, not refused.
    assert "train.eval_batch_size=500, padded to 504 (the 4 extra rows masked), 63 per device" \
        in reports["cifar10lt_ce"][1]
    assert "semi.base_batch_size=64, 8 per device" in reports["digits_lt_semi"][1]


def test_run_check_names_a_training_batch_that_does_not_divide():
  base = ["run.py", "--config=configs/digits_lt_semi.py", "--check"]
  ok = run(base, 8)
  assert ok.returncode == 0, ok.stderr
  assert "padded to 104" in ok.stdout and ok.stdout.strip().endswith("without --check runs it.")
  bad = run([*base, "--config.semi.base_batch_size=100"], 8)
  assert bad.returncode == 1, bad.stdout + bad.stderr
  assert ("base: semi.base_batch_size=100: error: semi.base_batch_size=100 does not divide over "
          "the 8 devices; use a multiple of 8 (the nearest are 96 and 104).") in bad.stdout
  absent = run([*base, "--config.dataset.name=cifar10", "--config.dataset.data_dir=/nonexistent"],
               8)
  assert absent.returncode == 3 and "data: absent" in absent.stdout, absent.stdout
  helped = run(["run.py", "--help"], 1)
  assert helped.returncode == 0 and "--check" in helped.stdout + helped.stderr


def family_runs(tmp_path, devices: int):
  out = tmp_path / f"devices_{devices}"
  proc = run([os.path.join(TESTS, "device_count_runs.py"), str(out)], devices, cwd=TESTS)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  return out


# The last trained stage of each family, whose checkpoint is compared.
LAST_STAGE = {"supervised": "", "semi": "final", "ssp": "final", "decouple": "crt"}


def test_each_family_on_eight_devices_equals_one_device(tmp_path):
  one, eight = family_runs(tmp_path, 1), family_runs(tmp_path, 8)
  for family, stage in LAST_STAGE.items():
    a, b = (leaves(final_state(str(d / family), stage)) for d in (one, eight))
    assert a.keys() == b.keys()
    for key in a:  # The batch's sums split over 8 devices: float rounding apart.
      np.testing.assert_allclose(a[key], b[key], rtol=1e-3, atol=1e-4, err_msg=family + key)
    results = [json.loads((d / family / stage / "results.json").read_text()) for d in (one, eight)]
    for block in ("final", "best"):
      x, y = results[0][block], results[1][block]
      one_image = 100.0 / results[0]["dataset"]["test_size"]
      assert abs(x["top1_acc"] - y["top1_acc"]) <= one_image + 1e-9, (family, block)
  semi = [json.loads((d / "semi" / "results.json").read_text())["stages"]["pseudo_labels"]
          for d in (one, eight)]
  assert semi[0]["num_pool"] == semi[1]["num_pool"]  # Every pool image labeled once.
  assert abs(semi[0]["accuracy"] - semi[1]["accuracy"]) <= 100.0 / semi[0]["num_pool"] + 1e-9
  test_size = results[0]["dataset"]["test_size"]
  for d in (one, eight):  # tau-norm scored every test image once, the padding left out.
    tau = json.loads((d / "decouple" / "tau_norm" / "results.json").read_text())["final"]
    assert tau["num_examples"] == test_size == int(np.sum(tau["confusion"]))
