"""Runs a notebook's code cells in order, as a kernel would, then prints the named variables
as one JSON line: tests/test_notebook.py runs each notebook this way on 8 fake CPU devices.

  python tests/notebook_runner.py colab/quickstart.ipynb digits c10
"""

import json
import sys


def code_cells(path):
  """The code cells' sources, stored stripped of outputs. IPython's `%` and `!` lines (only
  the quick start's TensorBoard display has them) are left out: plain Python cannot run them."""
  with open(path) as f:
    notebook = json.load(f)
  assert notebook["nbformat"] == 4
  for cell in notebook["cells"]:
    if cell["cell_type"] == "code":
      assert cell["execution_count"] is None and cell["outputs"] == []
      yield "".join(line for line in cell["source"]
                    if not line.lstrip().startswith(("!", "%")))


def run(path) -> dict:
  namespace = {"__name__": "__main__"}
  for source in code_cells(path):
    exec(compile(source, path, "exec"), namespace)
  return namespace


if __name__ == "__main__":
  namespace = run(sys.argv[1])
  jax = sys.modules.get("jax")  # The theory notebook runs without JAX.
  out = {name: namespace[name] for name in sys.argv[2:]}
  out["__devices__"] = jax.device_count() if jax is not None else None
  as_json = lambda value: value.tolist() if hasattr(value, "tolist") else str(value)
  print(json.dumps(out, default=as_json))
