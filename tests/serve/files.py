"""Real files for the service tests, built from shared/data: a zip of one real CT series."""

from __future__ import annotations

import io
import zipfile

from conftest import shared_path

CT_SERIES = shared_path("dicom", "pydicom", "dicomdirtests", "98892001", "CT5N")


def series_zip() -> bytes:
    """The five slices of a real CT series (pydicom's dicomdirtests CT5N) in one zip."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(CT_SERIES.iterdir()):
            z.writestr(f"CT5N/{path.name}", path.read_bytes())
    return buf.getvalue()
