"""scripts/check_names.py: no code compares a modality's or family's name outside that
modality's or family's own package. The real tree passes; a planted comparison fails."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_names", REPO / "scripts" / "check_names.py")
check_names = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_names)

MODALITIES, FAMILIES = {"images", "tables", "text"}, {"gan", "diffusion", "tabular"}


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "genforge"
    for name, code in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(code)
    return root


def test_the_tree_compares_no_names_outside_their_packages():
    root = REPO / "genforge"
    assert check_names.violations(root, *check_names.names()) == []


def test_planted_comparisons_are_found_and_own_packages_are_not(tmp_path):
    root = tree(tmp_path, {
        "cli/x.py": 'def f(m):\n    if m.modality == "images":\n        return 1\n',
        "serve/y.py": 'FORMATS = {"tables": ("csv",)}\n',
        "api.py": 'def g(t, f):\n    return t["diffusion"] if f in ("gan", "vae") else None\n',
        "eval/z.py": 'match kind:\n    case "text":\n        pass\n',
        # allowed: a modality's own folders, a family's package, names not compared
        "modalities/images/a.py": 'ok = kind == "images"\n',
        "eval/tables/b.py": 'KEYS = {"tables": 1}\n',
        "families/gan/spec.py": 'modalities = ("images", "tables")\nok = k == "text"\n',
        "cli/msg.py": 'print("images and text")\n',
    })
    found = check_names.violations(root, MODALITIES, FAMILIES)
    where = sorted(line.split(":")[0] for line in found)
    assert where == ["genforge/api.py", "genforge/api.py", "genforge/cli/x.py",
                     "genforge/eval/z.py", "genforge/serve/y.py"]
    assert any("the family name 'diffusion'" in line for line in found)
    assert any("the modality name 'images'" in line for line in found)
