"""Fail if code compares a modality or family name outside that modality's or family's own
package.

    python scripts/check_names.py [ROOT]        # ROOT: the genforge package folder

A modality or a family is one object that the engines ask (genforge.modalities.base.Modality,
genforge.families.spec.FamilySpec); branching on its name elsewhere is what the redesign of
issue 31 removed. Flagged, for a name the registry finds (genforge's own and installed
plug-ins): the name as a string constant in a comparison (`== "images"`, `in ("ar", "vae")`),
as a dict literal's key, as a subscript (`FAMILIES["diffusion"]`) or as a `case` pattern.
A modality's name is allowed in its own folders, genforge/modalities/<m>/ and
genforge/eval/<m>/; a family's package, genforge/families/<f>/, may name the modalities it
makes and check its data's kind (and keys its networks by names such as "vae"): families are
kept apart by the import-linter independence contract, not by this check.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path


def names() -> tuple[set[str], set[str]]:
    """(modality names, family names), as the registry finds them."""
    from genforge.registry import families, modalities

    return set(modalities()), set(families())


def _constants(node: ast.AST) -> Iterator[ast.Constant]:
    """String constants of `node` itself or of a tuple/list/set literal it is."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node
    elif isinstance(node, ast.Tuple | ast.List | ast.Set):
        for item in node.elts:
            yield from _constants(item)


def _compared(tree: ast.AST) -> Iterator[ast.Constant]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                yield from _constants(side)
        elif isinstance(node, ast.Dict):
            for key in node.keys:
                if key is not None:
                    yield from _constants(key)
        elif isinstance(node, ast.Subscript):
            yield from _constants(node.slice)
        elif isinstance(node, ast.MatchValue):
            yield from _constants(node.value)


def own(path: Path, root: Path, name: str) -> bool:
    """Whether `path` lies in a folder that belongs to `name`."""
    parts = path.relative_to(root).parts
    if len(parts) > 2 and parts[0] == "families":
        return True
    return len(parts) > 2 and parts[0] in ("modalities", "eval") and parts[1] == name


def violations(root: Path, modality_names: set[str], family_names: set[str]) -> list[str]:
    found = []
    watched = modality_names | family_names
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for constant in _compared(tree):
            name = constant.value
            if name in watched and not own(path, root, name):
                kind = "modality" if name in modality_names else "family"
                found.append(f"{path.relative_to(root.parent)}:{constant.lineno}: the {kind} "
                             f"name {name!r} is compared; ask the {kind} object instead")
    return found


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / \
        "genforge"
    found = violations(root, *names())
    for line in found:
        print(line)
    print(f"{len(found)} comparisons of modality or family names outside their packages")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
