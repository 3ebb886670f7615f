"""The package layering of DESIGN.md, checked by an AST scan of every module (function-level imports included).

Floors, bottom up: engine (the runtime) <- models <- data <- rl <- evals <- engine.commands (the roof). A module
may import its own package and any floor below it; nothing imports a floor above it, so there is no
package-level cycle, and no library module imports a command module.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = ("engine", "models", "data", "rl", "evals", "commands")
PACKAGES = ("engine", "models", "data", "rl", "evals")


def floor_of(module: str) -> str | None:
    if module == "engine.commands" or module.startswith("engine.commands."):
        return "commands"
    top = module.split(".")[0]
    return top if top in PACKAGES else None


def project_imports() -> list[tuple[str, str, int, str]]:
    """(importing module, imported module, line, file) for every import of a project package."""
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                else:
                    continue
                out.extend((module, n, node.lineno, str(path.relative_to(ROOT))) for n in names if floor_of(n))
    return out


def test_the_scan_sees_every_package():
    edges = project_imports()
    assert {floor_of(src) for src, *_ in edges} == set(FLOORS)
    # function-level imports are seen too: the train command imports rl.learner inside a function
    assert any(src == "engine.commands.train" and dst.startswith("rl.learner") for src, dst, *_ in edges)


def test_no_module_imports_a_floor_above_its_own():
    bad = [f"{path}:{line}: {src} ({floor_of(src)}) imports {dst} ({floor_of(dst)})"
           for src, dst, line, path in project_imports()
           if FLOORS.index(floor_of(dst)) > FLOORS.index(floor_of(src))]
    assert not bad, "\n".join(bad)


def test_no_package_level_cycle():
    graph: dict[str, set[str]] = {f: set() for f in FLOORS}
    for src, dst, *_ in project_imports():
        if floor_of(src) != floor_of(dst):
            graph[floor_of(src)].add(floor_of(dst))

    def reaches(a: str, b: str, seen: set[str]) -> bool:
        return any(n == b or (n not in seen and reaches(n, b, seen | {n})) for n in graph[a])

    cycles = [f for f in FLOORS if reaches(f, f, {f})]
    assert not cycles, {f: sorted(graph[f]) for f in cycles}


def test_no_library_module_imports_a_command():
    bad = [f"{path}:{line}: {src} imports {dst}" for src, dst, line, path in project_imports()
           if floor_of(dst) == "commands" and floor_of(src) != "commands"]
    assert not bad, "\n".join(bad)


def test_no_module_level_cycle():
    """No two modules import each other, directly or through others (e.g. a report module and its plots)."""
    imports = project_imports()
    modules = {src for src, *_ in imports}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for src, dst, *_ in imports:
        while dst and dst not in modules:  # `from pkg.mod import name` names a module or an attribute of one
            dst = dst.rpartition(".")[0]
        if dst and dst != src and not src.startswith(dst + "."):  # a package's own __init__ is not a cycle edge
            graph[src].add(dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in sorted(modules):
        if m not in index:
            visit(m)
    assert not cycles, cycles
