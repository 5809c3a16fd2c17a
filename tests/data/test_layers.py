"""Arrows point down: `data` and `preprocess` never import (or name, in a string) a higher layer,
and the built-in ref schemes are registered by importing `medsight.data`, not looked up by name."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import medsight

SRC = Path(medsight.__file__).parent
ORDER = ["io", "data", "preprocess", "features", "models", "train", "evaluate", "experiment"]
ABOVE_ALL = {"deploy", "explain", "cli"}


def _named_modules(path: Path) -> set[str]:
    """Every ``medsight.*`` module a file imports or mentions in a string literal."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.update(w.strip("`'\".,:()") for w in node.value.split() if w.startswith("medsight."))
    return {n for n in names if n.startswith("medsight.")}


def _upward(layer: str) -> list[str]:
    higher = set(ORDER[ORDER.index(layer) + 1:]) | ABOVE_ALL
    found = []
    for path in sorted((SRC / layer).rglob("*.py")):
        for name in _named_modules(path):
            if name.split(".")[1] in higher:
                found.append(f"{path.relative_to(SRC)} -> {name}")
    return found


def test_data_and_preprocess_do_not_reach_up() -> None:
    assert _upward("data") == []
    assert _upward("preprocess") == []


def test_boxes_sit_below_every_layer() -> None:
    """`medsight.boxes` is shared by data, models, evaluate and deploy: it may import none of them."""
    assert _named_modules(SRC / "boxes.py") == set()


def test_region_refs_resolve_with_only_the_data_layer_imported() -> None:
    code = (
        "import sys\n"
        "from medsight.data.refs import resolve\n"
        "img = resolve('region:2,4,10,12|phantom:seed=0;size=32;index=1')\n"
        "assert img.pixels.shape == (1, 8, 8), img.pixels.shape\n"
        "assert img.metadata['montage']['box'] == [2, 4, 10, 12]\n"
        "above = [m for m in sys.modules if m.startswith('medsight.') and m.split('.')[1] not in "
        "('io', 'data', 'errors', 'boxes')]\n"
        "assert not above, above\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_data_and_preprocess_load_pandas_and_matplotlib_only_when_used() -> None:
    """Each costs ~0.5 s at import; a prediction server loading a bundle needs neither."""
    code = (
        "import sys\n"
        "import medsight.data, medsight.data.sources, medsight.preprocess\n"
        "print(sorted(m for m in ('pandas', 'matplotlib') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_pacs_uses_deploy_and_below_never_serve_train_or_cli() -> None:
    """The watcher, the clients and the DICOM writers run the one `Predictor`; the service imports
    `pacs` (to run the watcher), never the other way round."""
    above = {"serve", "train", "cli", "experiment", "experiment_detection"}
    found = [f"{path.relative_to(SRC)} -> {name}" for path in sorted((SRC / "pacs").rglob("*.py"))
             for name in _named_modules(path) if name.split(".")[1] in above]
    assert found == []
