"""The top-level packages depend on each other one way: the tests use the benchmarks and the
harness, the benchmarks use the harness, the harness uses neither. So each benchmark runs as
`python -m benchmarks.<name>` from the checkout with nothing added to sys.path, and no module
needs another that needs it back.

Imports are read from the source (ast), at the top of a file and inside functions alike: a lazy
import is a dependency too, it only fails later.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def is_module_here(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """Every module the file imports; `from a import b` counts as `a`, and as `a.b` where b is a
    module of this repository."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] if node.level else [])
            module = ".".join(part for part in (base, node.module) if part)
            out.add(module)
            out |= {f"{module}.{alias.name}" for alias in node.names if is_module_here(f"{module}.{alias.name}")}
    return out


def package_files(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (REPO / package).rglob("*.py"))


def imports_of(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> set[tuple[str, str]]:
    return {(str(path.relative_to(REPO)), name) for path in package_files(*packages)
            for name in imports(path) if name.split(".")[0] in forbidden}


def test_the_benchmarks_import_nothing_from_the_tests():
    assert imports_of(("benchmarks",), ("tests",)) == set()


def test_the_harness_imports_neither_the_tests_nor_the_benchmarks():
    assert imports_of(("harness",), ("tests", "benchmarks")) == set()


def test_no_module_of_the_benchmarks_the_harness_or_the_tests_helpers_needs_itself_back():
    files = {module_name(p): p for p in package_files("benchmarks", "harness", "tests/support")}
    # Importing a.b.c runs a/__init__.py and a/b/__init__.py first: those are needed too.
    needs = {module: {".".join(parts[:i]) for name in imports(path) if (parts := name.split("."))
                      for i in range(1, len(parts) + 1)} & files.keys() - {module}
             for module, path in files.items()}

    def cycle_from(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        return next((c for dep in sorted(needs[module]) if (c := cycle_from(dep, [*path, module]))), None)

    assert {m: cycle_from(m, []) for m in files if cycle_from(m, [])} == {}


def test_no_benchmark_or_harness_module_changes_sys_path():
    """They run as modules of their packages from the checkout; a path set up by hand would hide
    an import that only works from one directory."""
    touching = {str(path.relative_to(REPO)) for path in package_files("benchmarks", "harness")
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Attribute) and node.attr == "path"
                and isinstance(node.value, ast.Name) and node.value.id == "sys"}
    assert touching == set()
