"""The package's shape: each part imports only the parts below it, and functions stay short.

The layers, lowest first (a part may import itself and what is listed before it):
errors, wall_clock, lifetime, config -> problem (vLLM's rules, shape, device, space) -> kernel ->
bench.protocol -> files -> bench -> study -> search -> consolidate -> plan -> report -> run ->
evaluate -> the commands (check, __main__).
"""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "autotune"
# bench.protocol (the Measurement and the Benchmarker Protocol) is the seam itself and imports
# nothing: the recorded tables (files) hold Measurements, the benchmarkers (bench) read tables.
LAYERS = ["errors", "wall_clock", "lifetime", "config", "problem", "kernel", "bench.protocol",
          "files", "bench", "study", "search", "consolidate", "plan", "report", "run", "evaluate", "check",
          "__main__"]
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    """Every module but the package's own (empty) __init__."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "autotune":
            out[name] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The autotune modules a file imports, at the top or inside functions (not for typing)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("autotune."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("autotune"):
                for a in node.names:  # `from autotune.x import y`: y may be a module
                    sub = f"{node.module}.{a.name}"
                    found.add(sub if sub in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in known and m != "autotune"}


def layer(module: str) -> str:
    """The entry of LAYERS a module belongs to (autotune.bench.protocol: bench.protocol)."""
    parts = module.split(".")[1:]
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    raise AssertionError(f"{module}: not in LAYERS")


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) for name, path in mods.items()}


def test_every_part_imports_only_the_parts_below_it():
    wrong = []
    for module, imported in graph().items():
        mine = LAYERS.index(layer(module))
        for other in imported:
            theirs = LAYERS.index(layer(other))
            if theirs > mine:
                wrong.append(f"{module} imports {other}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_module_imports_itself_back():
    edges = graph()
    cycles = []

    def walk(node: str, stack: list[str], done: set[str]) -> None:
        if node in stack:
            cycles.append(" -> ".join(stack[stack.index(node):] + [node]))
            return
        if node in done:
            return
        done.add(node)
        for nxt in sorted(edges.get(node, ())):
            walk(nxt, stack + [node], done)

    done: set[str] = set()
    for start in sorted(edges):
        walk(start, [], done)
    assert not cycles, "\n".join(cycles)


def test_each_module_imports_alone():
    # One fresh interpreter, each module imported with no other autotune module loaded: an
    # import that works only after another module was loaded first fails here. (A package's
    # __main__ runs its command when imported.)
    importable = [m for m in sorted(modules())
                  if not m.endswith(".__main__") or m == "autotune.__main__"]
    script = (
        "import importlib, sys\n"
        f"names = {importable!r}\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m == 'autotune' or m.startswith('autotune.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]



def test_no_function_is_longer_than_sixty_lines_outside_the_kernel():
    long = []
    for name, path in modules().items():
        if layer(name) == "kernel":
            continue  # the Triton kernel and its launch stay as vLLM writes them
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert not long, "\n".join(long)
