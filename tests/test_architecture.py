"""The import rules of docs/architecture.md hold: every ``import srlane...`` of every module (also
the ones inside functions) is checked against the rules block of the page, and importing
``srlane.data`` loads nothing of ``srlane.evaluation``, ``srlane.benchmarks`` or ``srlane.engine``."""
import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "srlane"


def rules() -> dict[str, set[str]]:
    """``part -> parts it must not import`` from the ```rules block of the page."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```rules\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md has no ```rules block"
    out = {}
    for line in block.group(1).splitlines():
        if line.strip():
            part, banned = line.split("must not import")
            out[part.strip()] = {name.strip() for name in banned.split(",")}
    return out


def part_of(module: str) -> str:
    """``srlane.data.dataset`` -> ``data``; ``srlane.lanes`` -> ``lanes``."""
    return module.split(".")[1]


def project_imports(path: Path) -> set[str]:
    """The ``srlane`` modules a file imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("srlane."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "srlane":
                found.update(f"srlane.{alias.name}" for alias in node.names)
            elif node.module.startswith("srlane."):
                found.add(node.module)
    return found


def test_every_module_keeps_the_import_rules():
    banned = rules()
    parts = {part_of("srlane." + p.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", "."))
             for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE}
    assert set(banned) <= parts and {"data", "models", "evaluation", "benchmarks", "engine"} <= set(banned)
    broken = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.name == "__init__.py":
            continue
        module = "srlane." + path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        for imported in project_imports(path):
            if part_of(imported) in banned.get(part_of(module), set()):
                broken.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not broken, broken


def test_importing_data_loads_no_metric_benchmark_or_engine():
    code = ("import sys, srlane.data; print(sorted({m.split('.')[1] for m in sys.modules "
            "if m.startswith('srlane.') and m.count('.') >= 1}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(ast.literal_eval(out.stdout))
    assert "data" in loaded and not loaded & {"evaluation", "benchmarks", "engine", "synthetic", "models"}


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` a file imports by name: ``from srlane.engine import checkpoint``
    is ``srlane.engine.checkpoint`` when that is a module, else the package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in modules else node.module)
    return found & modules


def test_no_import_circle():
    """No module imports itself back through others (hooks and the runner once did): every import
    statement of the package counts, those inside functions and under TYPE_CHECKING too."""
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in PACKAGE.rglob("*.py")}
    graph = {module: imported_modules(path, set(files)) for module, path in files.items()}
    circles, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        for imported in sorted(graph[module]):
            if imported in path:
                circles.append(" -> ".join(path[path.index(imported):] + [imported]))
            elif imported not in done:
                visit(imported, path + [imported])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert not circles, circles
