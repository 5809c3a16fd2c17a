"""`build_sc`: a prediction's picture (a classifier's heatmap overlay, a detector's boxes) as a DICOM
Secondary Capture in the source image's study (highdicom), burned-in, referencing the source image
and labelled not for diagnostic use, so any viewer can show it next to the original."""

from __future__ import annotations

import io

import highdicom as hd
import numpy as np
from PIL import Image
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from medsight.deploy.prediction import Prediction
from medsight.errors import PacsError
from medsight.pacs.sr import no_names_in_warnings, not_for_diagnosis

__all__ = ["DEFAULT_SC_SERIES_NUMBER", "build_sc", "overlay_for", "patient_orientation"]

DEFAULT_SC_SERIES_NUMBER = 9902
_AXES = (("L", "R"), ("P", "A"), ("H", "F"))  # +x, -x; +y, -y; +z, -z (DICOM patient coordinates)


def overlay_for(prediction: Prediction) -> bytes:
    """The picture to capture: the detector's annotated image or the classifier's heatmap overlay."""
    png = prediction.annotated_png if prediction.is_detection else prediction.heatmap_png
    if png is None:
        raise PacsError(f"{prediction.source}: the prediction has no picture to capture; predict "
                        "with heatmap=True (a detector draws its boxes then too)")
    return png


def patient_orientation(source: Dataset) -> tuple[str, str] | None:
    """(row, column) directions as patient-orientation letters from ImageOrientationPatient,
    the dominant axis of each; None when the source has no orientation."""
    iop = source.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return None
    letters = []
    for vector in (np.asarray(iop[:3], float), np.asarray(iop[3:], float)):
        axis = int(np.argmax(np.abs(vector)))
        letters.append(_AXES[axis][0 if vector[axis] > 0 else 1])
    return letters[0], letters[1]


def build_sc(source: Dataset, image_png: bytes, *, series_uid: str, instance_uid: str,
             series_number: int = DEFAULT_SC_SERIES_NUMBER, instance_number: int = 1,
             description: str | None = None, model: dict | None = None) -> Dataset:
    """The Secondary Capture of `image_png` (RGB) in `source`'s patient and study, referencing it."""
    try:
        rgb = np.asarray(Image.open(io.BytesIO(image_png)).convert("RGB"))
    except Exception as exc:  # PIL raises several types for undecodable data
        raise PacsError(f"the picture to capture is not a readable image: {exc}") from exc
    orientation = patient_orientation(source)
    spacing = source.get("PixelSpacing")
    same_grid = rgb.shape[:2] == (source.get("Rows"), source.get("Columns"))
    with no_names_in_warnings():
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source, pixel_array=rgb, photometric_interpretation="RGB", bits_allocated=8,
            coordinate_system="PATIENT" if orientation else None, series_instance_uid=series_uid,
            series_number=series_number, sop_instance_uid=instance_uid,
            instance_number=instance_number, manufacturer="medsight",
            pixel_spacing=tuple(float(v) for v in spacing) if spacing and same_grid else None,
            patient_orientation=orientation, transfer_syntax_uid=ExplicitVRLittleEndian)
    sc.BurnedInAnnotation = "YES"
    sc.SeriesDescription = (description or not_for_diagnosis(model or {}, "SC"))[:64]
    sc.ImageComments = "AI result, not verified by a clinician: NOT FOR DIAGNOSTIC USE"
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = [ref]
    return sc
