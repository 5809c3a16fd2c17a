"""Everything `medsight.__all__` promises resolves to a real object."""

import subprocess
import sys

import medsight


def test_every_export_resolves() -> None:
    for name in medsight.__all__:
        assert getattr(medsight, name) is not None, name


def test_import_is_light() -> None:
    code = "import sys, medsight; print('torch' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
