"""The package's layers, checked on its source: imports point down the layers only, with no cycle,
counting imports inside functions; the library never imports ``configs/``.

The graph is built from the AST of every module under ``jfesgan/`` (nothing is imported), so a
cycle hidden inside a function is found as surely as one at the top of a file.
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "jfesgan")

# Top to bottom: a module may import from its own unit (its package) and from units of lower
# layers, never from a higher layer nor from another unit of its own layer.
LAYERS = (
    ("jfesgan.__main__",),
    ("jfesgan.cli",),
    ("jfesgan.main", "jfesgan.research", "jfesgan.bench"),
    ("jfesgan.tools",),
    ("jfesgan.train",),
    ("jfesgan.ahead",),
    ("jfesgan.evaluation", "jfesgan.validate"),
    ("jfesgan.stages",),
    ("jfesgan.steps",),
    ("jfesgan.state",),
    ("jfesgan.losses", "jfesgan.augment", "jfesgan.parallel"),
    ("jfesgan.run",),
    ("jfesgan.models", "jfesgan.data", "jfesgan.defaults"),
)

# Imports of jfesgan modules inside functions, each deferring an optional or heavy dependency
# (never hiding a cycle): (importer, imported) -> why.
DEFERRED = {
    ("jfesgan.bench.benchmark", "jfesgan.bench.torch_reference"): "PyTorch, only for --torch",
    ("jfesgan.data.pipeline", "jfesgan.data.databases"): "TFDS builders, only for a real database",
    ("jfesgan.data.pipeline", "jfesgan.data.procedural_tfds"): "TFDS, only when building the data",
    ("jfesgan.tools.export", "jfesgan.tools.onnx_graph"): "the onnx package, only for --format onnx",
}


def _modules() -> dict[str, str]:
  out = {}
  for folder, _, files in os.walk(ROOT):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(folder, f)
        rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
        out[rel.removesuffix(".__init__")] = path
  return out


def _imports(name: str, path: str, modules) -> list[tuple[str, bool]]:
  """(imported jfesgan/configs module, at top level?) for every import statement of a module."""
  tree = ast.parse(open(path).read())
  top = {id(n) for n in tree.body}
  is_pkg = path.endswith("__init__.py")
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = name.split(".")[:len(name.split(".")) - node.level + (1 if is_pkg else 0)]
        base = ".".join(parts + ([base] if base else []))
      targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    else:
      continue
    for t in targets:
      if t.split(".")[0] not in ("jfesgan", "configs"):
        continue
      while t not in modules and "." in t and t.split(".")[0] == "jfesgan":
        t = t.rsplit(".", 1)[0]
      if t != name:
        found.append((t, id(node) in top))
  return found


def _unit(module: str) -> str:
  for layer in LAYERS:
    for unit in layer:
      if module == unit or module.startswith(unit + "."):
        return unit
  return module


def _layer(unit: str) -> int:
  return next(i for i, layer in enumerate(LAYERS) if unit in layer)


@pytest.fixture(scope="module")
def graph():
  modules = _modules()
  return modules, {m: _imports(m, p, modules) for m, p in modules.items()}


def test_every_module_has_a_layer(graph):
  modules, _ = graph
  units = {u for layer in LAYERS for u in layer}
  orphans = [m for m in modules if m != "jfesgan" and _unit(m) not in units]
  assert not orphans, f"modules in no layer of LAYERS: {orphans}"


def test_no_import_cycles_counting_imports_inside_functions(graph):
  _, edges = graph
  succ = {m: {t for t, _ in ts if t.startswith("jfesgan")} for m, ts in edges.items()}
  state: dict[str, int] = {}
  cycles = []

  def visit(m, stack):
    state[m] = 1
    stack.append(m)
    for t in sorted(succ.get(m, ())):
      if state.get(t) == 1:
        cycles.append(stack[stack.index(t):] + [t])
      elif t not in state:
        visit(t, stack)
    stack.pop()
    state[m] = 2

  for m in sorted(succ):
    if m not in state:
      visit(m, [])
  assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_imports_point_down_the_layers(graph):
  _, edges = graph
  bad = []
  for m, targets in edges.items():
    if m == "jfesgan":
      continue
    for t, _ in targets:
      if t == "jfesgan" or not t.startswith("jfesgan"):
        continue
      a, b = _unit(m), _unit(t)
      if a != b and _layer(a) >= _layer(b):  # LAYERS runs top to bottom
        bad.append(f"{m} -> {t}")
  assert not bad, "imports that do not point down the layers: " + ", ".join(sorted(bad))


def test_the_library_never_imports_configs(graph):
  _, edges = graph
  bad = [f"{m} -> {t}" for m, ts in edges.items() for t, _ in ts if t.split(".")[0] == "configs"]
  assert not bad, bad


def test_imports_inside_functions_only_defer_optional_dependencies(graph):
  _, edges = graph
  inside = {(m, t) for m, ts in edges.items() for t, top in ts
            if not top and t.startswith("jfesgan")}
  assert inside <= set(DEFERRED), f"undeclared imports inside functions: {sorted(inside - set(DEFERRED))}"
  assert set(DEFERRED) <= inside, f"DEFERRED lists imports that are gone: {sorted(set(DEFERRED) - inside)}"


def test_the_checker_sees_a_cycle_hidden_in_a_function(tmp_path):
  """The graph builder finds an import inside a function (the kind that hid the old cycles)."""
  pkg = tmp_path / "jfesgan"
  pkg.mkdir()
  (pkg / "__init__.py").write_text("")
  (pkg / "a.py").write_text("from jfesgan import b\n")
  (pkg / "b.py").write_text("def f():\n  from jfesgan import a\n")
  modules = {"jfesgan.a": str(pkg / "a.py"), "jfesgan.b": str(pkg / "b.py"), "jfesgan": ""}
  assert _imports("jfesgan.b", str(pkg / "b.py"), modules) == [("jfesgan.a", False)]
  assert _imports("jfesgan.a", str(pkg / "a.py"), modules) == [("jfesgan.b", True)]


def test_the_top_of_the_package_stays_small():
  top = [f for f in os.listdir(ROOT) if f.endswith(".py")]
  assert len(top) <= 14, sorted(top)
