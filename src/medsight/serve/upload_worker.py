"""What a decode worker does with one upload: recognise it, check its declared size, de-identify
it, read it and prepare it for the model. Runs only in `DecodePool` workers, never in the server,
so a hostile file that crashes, hangs or exhausts a decoder costs one worker and one 422.

The worker returns what the server stores (the de-identified bytes and their sha256, the patient
pseudonym, the shifted study date) with the `Prepared` model input; nothing identifying leaves it.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.deploy.prepare import Prepared, PreparePlan
from medsight.errors import MedsightError, UnreadableImage
from medsight.io import read_image, sniff_format
from medsight.io.image import Image
from medsight.io.limits import check_zip_members

SOURCE = "upload"  # how errors name an upload: its file name may itself identify the patient
_ZIP = b"PK\x03\x04"
RASTER = ("png", "jpeg", "tiff")


@dataclass(frozen=True)
class UploadJob:
    """One upload (``mode="upload"``) or a stored de-identified image (``mode="stored"``,
    `stored_format` naming it) to prepare with `plan`, under `max_pixels`."""

    plan: PreparePlan = field(repr=False)
    data: bytes = field(repr=False)  # never in a repr: it is the patient's file
    secret: bytes = field(repr=False)
    max_pixels: int = 0
    mode: str = "upload"
    stored_format: str | None = None
    keep_image: bool = False


@dataclass
class UploadResult:
    """A prepared upload and what is stored of it (de-identified)."""

    prepared: Prepared
    format: str
    stored: bytes
    stored_format: str
    sha256: str
    patient_pseudonym: str | None
    study_date: str | None


@dataclass(frozen=True)
class UploadRejected:
    """Why an upload cannot be predicted: `status` is the HTTP status (413, 415, 422)."""

    status: int
    reason: str


def process_upload(job: UploadJob) -> UploadResult | UploadRejected:
    """The decode pool's work function for the service (top level, picklable)."""
    t0 = time.perf_counter()
    try:
        stored_format = job.stored_format if job.mode == "stored" else None
        fmt, image, stored, pseudonym, study_date = _read(job, stored_format)
    except _Rejected as exc:
        return UploadRejected(exc.status, exc.reason)
    except UnreadableImage as exc:
        status = 413 if exc.reason.startswith("too large") else 422
        return UploadRejected(status, exc.reason)
    except MemoryError:
        return UploadRejected(413, "the image is too large to decode in this service's memory limit")
    except Exception as exc:  # noqa: BLE001 - a decoder's own error on a corrupt file
        return UploadRejected(422, f"the file is corrupt or not supported ({type(exc).__name__}: "
                                   f"{str(exc)[:200]})")
    read_ms = (time.perf_counter() - t0) * 1e3
    prepared = job.plan.prepare(SOURCE, image, read_ms, keep_image=job.keep_image)
    if isinstance(prepared, MedsightError):
        return UploadRejected(422, f"the image cannot be given to this model: {_reason(prepared)}")
    return UploadResult(prepared, fmt, stored, _stored_format(fmt, stored),
                        hashlib.sha256(stored).hexdigest(), pseudonym, study_date)


class _Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _reason(exc: MedsightError) -> str:
    return getattr(exc, "reason", None) or str(exc)


def _stored_format(fmt: str, stored: bytes) -> str:
    """How the stored bytes are read back: a raster upload is kept as PNG only when PNG can hold
    its pixels (`_png_or_npy`), else as .npy."""
    if fmt in RASTER:
        return "png" if stored.startswith(b"\x89PNG\r\n\x1a\n") else "npy"
    return {"dicom": "dcm", "dicom-zip": "zip", "nifti": "nii"}.get(fmt, "npy")


def _read(job: UploadJob, stored_format: str | None
          ) -> tuple[str, Image, bytes, str | None, str | None]:
    """(format, image, de-identified bytes to store, pseudonym, shifted study date)."""
    data = job.data
    if not data:
        raise _Rejected(422, "the uploaded file is empty")
    if stored_format == "npy":
        pixels = np.load(io.BytesIO(data), allow_pickle=False)
        return "array", Image(pixels=pixels, source=SOURCE), data, None, None
    if data.startswith(_ZIP):
        return _dicom_zip(job)
    fmt = sniff_format(data[:4096])
    if fmt == "dicom":
        return _dicom(job)
    if fmt == "nifti":
        return _nifti(job)
    if fmt in RASTER:
        return _raster(job, fmt)
    raise _Rejected(415, "unsupported file type: upload a DICOM file, a zip of one DICOM series, "
                         "a NIfTI volume (.nii or .nii.gz) or a PNG, JPEG or TIFF image")


def _too_many(count: int, job: UploadJob, what: str) -> None:
    if count > job.max_pixels:
        raise _Rejected(413, f"the image is too large: {what} = {count:,} pixels, more than this "
                             f"service accepts ({job.max_pixels:,}); send a smaller image")


# -- DICOM -----------------------------------------------------------------------------------------
def _declared_pixels(ds: Any) -> int:
    def number(keyword: str, default: int) -> int:
        try:
            return max(1, int(ds.get(keyword, default) or default))
        except (TypeError, ValueError):
            return default
    return number("Rows", 1) * number("Columns", 1) * number("NumberOfFrames", 1) \
        * number("SamplesPerPixel", 1)


def _deidentified(data: bytes, job: UploadJob, pseudonymizer: Any) -> tuple[Any, str, str | None]:
    """The parsed, de-identified data set, the patient pseudonym and the shifted study date."""
    from medsight.data.deid import deidentify_dataset
    from medsight.io.dicom import load_dataset

    ds = load_dataset(io.BytesIO(data), SOURCE)
    if job.mode == "stored":
        return ds, str(ds.get("PatientID", "") or "") or None, _date(ds)
    _too_many(_declared_pixels(ds), job, "rows x columns x frames x samples")
    try:
        pseudonym = deidentify_dataset(ds, pseudonymizer)
    except MedsightError:
        raise
    except Exception as exc:  # a value the profile cannot process: nothing identifying is kept
        raise _Rejected(422, f"the DICOM header cannot be de-identified ({type(exc).__name__}); "
                             "the file is not stored") from exc
    return ds, pseudonym, _date(ds)


def _date(ds: Any) -> str | None:
    value = str(ds.get("StudyDate", "") or "")
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return None


def _dicom_bytes(ds: Any) -> bytes:
    for tag in [t for t in ds.keys() if t.group == 0]:  # command-set elements: not for a file
        del ds[tag]
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


def _pseudonymizer(job: UploadJob) -> Any:
    from medsight.data.deid import Pseudonymizer

    return Pseudonymizer(job.secret)


def _dicom(job: UploadJob) -> tuple[str, Image, bytes, str | None, str | None]:
    from medsight.io.dicom import dataset_to_image

    ds, pseudonym, study_date = _deidentified(job.data, job, _pseudonymizer(job))
    stored = job.data if job.mode == "stored" else _dicom_bytes(ds)
    return "dicom", dataset_to_image(ds, SOURCE), stored, pseudonym, study_date


def _dicom_zip(job: UploadJob) -> tuple[str, Image, bytes, str | None, str | None]:
    """A zip of one DICOM series: every member de-identified, read as one volume."""
    from medsight.io.dicom_series import group_series, read_dicom_series

    try:
        archive = zipfile.ZipFile(io.BytesIO(job.data))
        check_zip_members(archive, SOURCE)
        members = [m for m in archive.infolist() if not m.is_dir()]
    except zipfile.BadZipFile as exc:
        raise _Rejected(422, f"the zip archive is corrupt: {exc}") from exc
    if not members:
        raise _Rejected(422, "the zip archive holds no files; zip the DICOM files of one series")
    inflated = sum(m.file_size for m in members)
    if inflated > 4 * job.max_pixels:
        raise _Rejected(413, f"the zip inflates to {inflated:,} bytes, more than this service "
                             f"accepts ({4 * job.max_pixels:,}); send a smaller series")
    if all(m.filename.endswith(".npy") for m in members):
        raise _Rejected(415, "a .npz archive of arrays is not an image upload; upload the image "
                             "itself (DICOM, NIfTI, PNG, JPEG or TIFF) or a zip of one DICOM series")
    pz = _pseudonymizer(job)
    declared, pseudonym, study_date = 0, None, None
    with tempfile.TemporaryDirectory(prefix="medsight-series-") as tmp:
        paths = []
        for k, info in enumerate(members):
            try:
                with archive.open(info) as member:  # the head first: no inflating a non-DICOM
                    head = member.read(4096)
                    if sniff_format(head) != "dicom":
                        raise _Rejected(415, f"zip member {k + 1} is not a DICOM file; the zip must "
                                             "hold the DICOM files of one series only")
                    data = head + member.read()
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise _Rejected(422, f"zip member {k + 1} cannot be extracted: {exc}") from exc
            ds, pseudonym, study_date = _deidentified(data, job, pz)
            declared += _declared_pixels(ds)
            _too_many(declared, job, "the series' slices x rows x columns")
            path = Path(tmp) / f"{k:05d}.dcm"
            path.write_bytes(data if job.mode == "stored" else _dicom_bytes(ds))
            paths.append(path)
        groups = group_series(paths)
        if len(groups) != 1:
            raise _Rejected(422, f"the zip holds {len(groups)} DICOM series; upload one series "
                                 "per request")
        image = read_dicom_series(paths)
        stored = job.data if job.mode == "stored" else _zip_of(paths)
    return "dicom-zip", image, stored, pseudonym, study_date


def _zip_of(paths: list[Path]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for path in paths:
            info = zipfile.ZipInfo(path.name, date_time=(1980, 1, 1, 0, 0, 0))
            out.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buf.getvalue()


# -- NIfTI and rasters ---------------------------------------------------------------------------
def _nifti(job: UploadJob) -> tuple[str, Image, bytes, str | None, str | None]:
    """NIfTI with its free-text header fields and extensions (which may carry names or a DICOM
    header) removed before it is read or stored."""
    from medsight.io.nifti import open_nifti, read_nifti

    img = open_nifti(job.data, SOURCE)
    _too_many(int(np.prod(img.header.get_data_shape(), dtype=np.int64)), job, "the volume's voxels")
    if job.mode == "stored":
        return "nifti", read_nifti(job.data, SOURCE), job.data, None, None
    header = img.header
    for name in ("descrip", "aux_file", "intent_name", "db_name"):
        if name in header:
            header[name] = b""
    header.extensions.clear()
    clean = type(img)(np.asanyarray(img.dataobj), img.affine, header)
    stored = clean.to_bytes()
    return "nifti", read_nifti(stored, SOURCE), stored, None, None


def _raster(job: UploadJob, fmt: str) -> tuple[str, Image, bytes, str | None, str | None]:
    """PNG/JPEG/TIFF: stored as a PNG of the decoded pixels (no EXIF or text chunks), or as a
    numpy array when PNG cannot hold them (float TIFF, many pages)."""
    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(job.data)) as im:
                width, height = im.size
                pages = int(getattr(im, "n_frames", 1) or 1)
    except PILImage.DecompressionBombError as exc:
        raise _Rejected(413, f"the image is too large: {exc}; send a smaller image") from exc
    except Exception as exc:  # noqa: BLE001 - any header failure is a corrupt upload
        raise _Rejected(422, f"corrupt {fmt.upper()} image: {exc}") from exc
    _too_many(width * height * pages, job, "width x height x pages")
    image = read_image(job.data)
    return fmt, image, _png_or_npy(image), None, None


def _png_or_npy(image: Image) -> bytes:
    from PIL import Image as PILImage

    px = image.pixels
    plane = px[0] if px.shape[0] == 1 else np.moveaxis(px, 0, -1) if px.shape[0] in (3, 4) else None
    if px.ndim == 3 and plane is not None and px.dtype in (np.uint8, np.uint16) \
            and not (px.dtype == np.uint16 and px.shape[0] != 1):
        buf = io.BytesIO()
        PILImage.fromarray(np.ascontiguousarray(plane)).save(buf, format="PNG")
        return buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, px, allow_pickle=False)
    return buf.getvalue()


__all__ = ["UploadJob", "UploadRejected", "UploadResult", "process_upload"]
