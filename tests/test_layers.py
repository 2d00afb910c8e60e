"""The package's import layers (docs/architecture.md): every import points down, none cycles."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pyro_circuits"

#: Layers, lowest first. A module may import a lower layer, and its own layer where that layer
#: is one unit (the ground floor, the top floor) or within its own unit (a method's subpackage).
LAYERS = [
    ("checks", "parallel", "property", "sites", "space", "threads"),
    ("handlers",),
    ("datasets", "metrics"),
    ("models",),
    ("guides",),
    ("results", "diagnostics"),
    ("epi", "sbi", "svi", "baselines"),
    ("catalog", "compare", "reports", "plots", "cli", "tune", "tune_models"),
]
SHARED_FLOORS = {0, 5, len(LAYERS) - 1}
#: Models import only the ground floor and the handlers (DESIGN.md).
MODEL_FLOORS = {0, 1}


def _unit(module: str) -> str:
    """``pyro_circuits.epi.fit`` → ``epi``; the package itself → ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _level(unit: str) -> int:
    for level, units in enumerate(LAYERS):
        if unit in units:
            return level
    raise AssertionError(f"pyro_circuits.{unit} is in no layer: add it to LAYERS and the map")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every absolute import of a file, function-level imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _package_imports(path: Path) -> set[str]:
    """The package modules a file imports (``from pkg import mod`` resolved to the module)."""
    return {
        name
        for name in _imports(path)
        if name.startswith("pyro_circuits.") and (name in MODULES or name.count(".") == 1)
    }


def test_every_package_module_sits_in_a_layer():
    for module in MODULES:
        if module != "pyro_circuits":
            _level(_unit(module))


def _upward(module: str, imported: str) -> bool:
    """Whether ``module`` importing ``imported`` breaks the layers."""
    unit, other = _unit(module), _unit(imported)
    level, other_level = _level(unit), _level(other)
    if unit == "models" and other_level not in MODEL_FLOORS | {level}:
        return True
    same_floor = other_level == level and (level in SHARED_FLOORS or other == unit)
    return not (other_level < level or same_floor)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "pyro_circuits"))
def test_imports_point_down(module):
    for imported in _package_imports(MODULES[module]):
        assert not _upward(module, imported), f"{module} imports {imported} (against the layers)"


def test_no_import_cycles():
    edges = {
        m: {i for i in _package_imports(p) if i in MODULES and not MODULES[i].name == "__init__.py"}
        for m, p in MODULES.items()
    }
    state: dict[str, int] = {}

    def visit(module, stack):
        state[module] = 1
        for other in edges[module]:
            assert state.get(other) != 1, "cycle: " + " -> ".join([*stack, module, other])
            if other not in state:
                visit(other, [*stack, module])
        state[module] = 2

    for module in MODULES:
        if module not in state:
            visit(module, [])


def test_nothing_imports_the_benchmarks_and_no_module_the_cli():
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        for imported in _imports(path):
            assert not imported.startswith("benchmarks"), f"{path} imports {imported}"
    for module, path in MODULES.items():
        if module != "pyro_circuits.cli":
            assert not any(i.startswith("pyro_circuits.cli") for i in _imports(path)), module


@pytest.mark.parametrize(
    "module, imported, upward",
    [
        ("pyro_circuits.models.stg", "pyro_circuits.epi", True),  # a model above a method
        ("pyro_circuits.models.stg", "pyro_circuits.datasets", True),  # models: ground, handlers
        ("pyro_circuits.sbi.npe", "pyro_circuits.epi", True),  # a method importing another
        ("pyro_circuits.property", "pyro_circuits.results", True),
        ("pyro_circuits.sbi.npe", "pyro_circuits.sbi.bridge", False),
        ("pyro_circuits.compare", "pyro_circuits.catalog", False),
        ("pyro_circuits.models.stg", "pyro_circuits.handlers", False),
    ],
)
def test_the_rule_tells_up_from_down(module, imported, upward):
    assert _upward(module, imported) == upward
