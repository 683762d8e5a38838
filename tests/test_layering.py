"""The README's layering, checked on the source: the library never imports a stage or the
pipeline, and stages import the library, not each other (`KNOWN_STAGE_EDGES` would list an
exception; removing one must also remove it from the list)."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = {"lt_jax.classify", "lt_jax.pseudo_label", "lt_jax.decouple", "lt_jax.grid",
          "lt_jax.pretrain.contrastive_stage"}
COMPOSERS = {"lt_jax.pipeline", "lt_jax.preflight"}  # Above the stages: they compose them.
# Stage -> stage imports not yet removed: none. An entry here would be a debt to pay.
KNOWN_STAGE_EDGES: set[tuple[str, str]] = set()


def module_name(path: str) -> str:
  name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
  return name[:-len(".__init__")] if name.endswith(".__init__") else name


def imports(path: str) -> set[str]:
  """The lt_jax modules `path` imports (`from lt_jax import x` counts as lt_jax.x)."""
  out = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lt_jax"):
      for alias in node.names:
        candidate = f"{node.module}.{alias.name}"
        is_module = os.path.exists(os.path.join(ROOT, *candidate.split(".")) + ".py") or \
            os.path.isdir(os.path.join(ROOT, *candidate.split(".")))
        out.add(candidate if is_module else node.module)
    elif isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name.startswith("lt_jax")}
  return out


def graph() -> dict[str, set[str]]:
  out = {}
  for folder, _, files in os.walk(os.path.join(ROOT, "lt_jax")):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        out[module_name(path)] = imports(path)
  return out


def test_the_library_imports_no_stage_and_no_composer():
  bad = sorted((m, d) for m, deps in graph().items() if m not in STAGES | COMPOSERS
               for d in deps if d in STAGES | COMPOSERS)
  assert not bad, f"library modules importing stages or the pipeline: {bad}"


def test_stages_import_no_other_stage_but_the_known_edges():
  edges = {(m, d) for m, deps in graph().items() if m in STAGES
           for d in deps if d in STAGES and d != m}
  assert edges - KNOWN_STAGE_EDGES == set(), "new stage -> stage imports"
  assert KNOWN_STAGE_EDGES - edges == set(), "an edge is gone: remove it from the list"


# The README's floors, top first: a module imports only from its own floor and those below.
FLOORS = (
    ("preflight",), ("pipeline",),
    ("classify", "grid", "decouple", "pretrain.contrastive_stage", "pseudo_label"),
    ("recipe",), ("inputs", "validate"), ("predict", "transfer"), ("semi", "results"),
    ("models", "models.registry", "models.resnet_imagenet", "models.resnet_cifar",
     "models.conv", "models.heads", "pretrain", "pretrain.rotation", "pretrain.contrastive",
     "pretrain.augment"),
    ("train", "train.driver", "train.step", "train.feed", "train.members", "train.objective",
     "train.optim", "train.writers", "train.preemption"),
    ("data", "data.prepare", "data.datasets", "data.sources", "data.longtail",
     "data.unlabeled", "data.open_pools", "data.image_source", "data.image_lists",
     "data.image_pipeline", "data.samplers", "data.augment", "data.example_folder",
     "data.list_pools", "data.randaugment"),
    ("workdir", "summary", "checkpoint", "io_utils", "parallel", "methods", "ranges"),
    ("losses", "metrics", "config", "errors", "theory", "compilation_cache", ""),
)


def test_every_module_stands_on_a_floor_and_imports_nothing_above_it():
  height = {("lt_jax." + m).rstrip("."): len(FLOORS) - i
            for i, floor in enumerate(FLOORS) for m in floor}
  modules = graph()
  assert set(modules) - set(height) == set(), "modules on no floor: add them to FLOORS"
  upward = sorted((m, d) for m, deps in modules.items() for d in deps
                  if d in height and height[d] > height[m])
  assert not upward, f"imports of a higher floor: {upward}"


def test_the_stage_and_composer_lists_name_real_modules():
  modules = set(graph())
  assert STAGES | COMPOSERS <= modules
