"""Fail if any import cycle exists among genforge's modules (imports inside functions count).

    python scripts/check_import_cycles.py

import-linter's layers contract checks the direction between layers; this checks that no two
modules, in any layer, reach each other. It uses grimp, the graph library under import-linter.
"""

from __future__ import annotations

import sys

import grimp


def cycles(package: str = "genforge") -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    graph = grimp.build_graph(package)
    modules = sorted(graph.modules)
    # a package's __init__ importing its own submodules is not a cycle between modules
    edges = {m: sorted(i for i in graph.find_modules_directly_imported_by(m)
                       if i in graph.modules and not i.startswith(m + "."))
             for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for m in modules:
        if m not in index:
            visit(m)
    return found


if __name__ == "__main__":
    found = cycles()
    for component in found:
        print("import cycle: " + " <-> ".join(component))
    print(f"{len(found)} import cycles in genforge")
    sys.exit(1 if found else 0)
