"""A briefly trained CenterNet exported to ONNX (decoding inside the graph) gives PyTorch's boxes
within 1e-3 px on real BCCD smears, for any batch size."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import shared_path

from medsight.data.sources import from_voc
from medsight.errors import InvalidConfig
from medsight.models.detector_inference import preprocess_with_geometry
from medsight.models.export_detector import (
    BOXES_NAME,
    INPUT_NAME,
    LABELS_NAME,
    SCORES_NAME,
    check_detector_parity,
    export_detector_onnx,
)
from medsight.models.export_onnx import onnx_session
from medsight.models.torch_detector import TorchDetector

pytestmark = pytest.mark.usefixtures("two_torch_threads")


@pytest.fixture(scope="module")
def smears():
    data = from_voc(shared_path("bccd"), classes=["RBC", "WBC", "Platelets"])
    return data.split("train").subset([0, 1], name="train2"), data.split("test").subset(
        [0, 1, 2], name="test3")


@pytest.fixture(scope="module")
def detector(smears):
    return TorchDetector(preprocess=[{"resize": {"size": [96, 128]}}],
                         network_params={"width": 16, "neck": 32}, epochs=8, batch_size=2,
                         augment=None, lr=3e-3, schedule="constant", score_threshold=0.3,
                         max_detections=50, device="cpu", threads=2).fit(smears[0])


def test_onnx_boxes_equal_pytorch_within_a_thousandth_of_a_pixel(detector, smears, tmp_path):
    path = export_detector_onnx(detector, tmp_path / "det.onnx")
    test = smears[1]
    x = np.stack([preprocess_with_geometry(test.image(i), detector.preprocess_).pixels
                  for i in range(len(test))])
    parity = check_detector_parity(detector, path, x)
    assert parity["detections"] > 0
    assert parity["max_box_diff_px"] < 1e-3 and parity["max_score_diff"] < 1e-5
    assert parity["labels_identical"]
    session = onnx_session(path)
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    one = dict(zip([BOXES_NAME, SCORES_NAME, LABELS_NAME],
                   session.run(None, {INPUT_NAME: x[:1]}), strict=True))
    assert one[BOXES_NAME].shape == (1, 50, 4) and one[LABELS_NAME].dtype == np.int64
    assert (np.diff(one[SCORES_NAME][0]) <= 0).all()  # sorted by score


def test_a_torchvision_detector_is_refused_with_the_reason(detector, tmp_path):
    other = TorchDetector(network="retinanet_fpn")
    other.model_ = SimpleNamespace(network=SimpleNamespace(loss_kind="torchvision"))
    with pytest.raises(InvalidConfig, match="data-dependent"):
        export_detector_onnx(other, tmp_path / "x.onnx")
