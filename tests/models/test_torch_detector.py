"""TorchDetector on a few real BCCD smears at 96x128: it learns boxes, round-trips, resumes exactly,
and its CenterNet targets decode back to the boxes they were drawn from."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import shared_path
from torchvision.ops import box_iou

from medsight.data.dataset import Dataset, Record, Task
from medsight.data.sources import from_voc, make_phantoms
from medsight.errors import InvalidConfig, InvalidDataset
from medsight.models import clone, load_estimator
from medsight.models.networks import create_network
from medsight.models.networks.detection import centernet_decode
from medsight.models.torch_detector import TorchDetector
from medsight.train.checkpoint import LAST, load_checkpoint
from medsight.train.detection_targets import centernet_targets
from medsight.train.loop import TrainEvent

pytestmark = pytest.mark.usefixtures("two_torch_threads")
CLASSES = ["RBC", "WBC", "Platelets"]
WBC = 1


@pytest.fixture(scope="module")
def bccd() -> Dataset:
    return from_voc(shared_path("bccd"), classes=CLASSES)


@pytest.fixture(scope="module")
def two(bccd) -> Dataset:
    train = bccd.split("train")
    return train.subset([0, 1], name="two")


def _params(**kw):
    base = dict(preprocess=[{"resize": {"size": [96, 128]}}],
                network_params={"width": 16, "neck": 32}, epochs=30, batch_size=2, augment=None,
                lr=3e-3, schedule="constant", score_threshold=0.3, device="cpu", threads=2,
                deterministic=True)
    return {**base, **kw}


@pytest.fixture(scope="module")
def overfit(two) -> TorchDetector:
    return TorchDetector(**_params()).fit(two)


def test_training_on_two_smears_lowers_the_loss_and_finds_each_wbc(overfit, two):
    losses = [h["loss"] for h in overfit.history_]
    assert losses[-1] < losses[0] / 5
    found = overfit.predict_detections(two)
    for record, det in zip(two.records, found, strict=True):
        truth = torch.as_tensor(record.boxes.array()[record.boxes.label_array() == WBC])
        mine = det.above(overfit.score_threshold_)
        wbc = torch.as_tensor(mine.xyxy[mine.labels == WBC])
        assert len(truth) == 1 and len(wbc) >= 1
        # boxes come back in the ORIGINAL 640x480 pixels
        assert float(box_iou(truth, wbc).max()) > 0.5
        assert (det.xyxy[:, [0, 2]] <= 640).all() and (det.xyxy[:, [1, 3]] <= 480).all()
    counts = overfit.predict(two)
    assert counts.shape == (2, 3) and counts.dtype == np.int64
    assert (counts[:, WBC] == 1).all()


def test_save_load_gives_identical_detections_and_clone_keeps_params(overfit, two, tmp_path):
    loaded = load_estimator(overfit.save(tmp_path / "m"))
    assert isinstance(loaded, TorchDetector) and loaded.score_threshold_ == overfit.score_threshold_
    for a, b in zip(overfit.predict_detections(two), loaded.predict_detections(two), strict=True):
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.labels, b.labels)
    assert clone(overfit).get_params() == overfit.get_params()
    assert loaded.task_ is Task.DETECTION and loaded.classes_ == CLASSES


def test_probabilities_are_refused_and_unreadable_images_give_none(overfit, two, tmp_path, caplog):
    with pytest.raises(InvalidConfig, match="boxes"):
        overfit.predict_proba(two)
    missing = Record(str(tmp_path / "gone.jpg"), None, boxes=None)
    mixed = Dataset([two.records[0], missing], Task.DETECTION, CLASSES)
    found = overfit.predict_detections(mixed)
    assert found[0] is not None and found[1] is None and "gone.jpg" in caplog.text
    assert overfit.predict(mixed)[1].tolist() == [-1, -1, -1]


class Kill(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_weights(bccd, tmp_path):
    train = bccd.split("train").subset([2, 3, 4], name="three")
    val = bccd.split("val").subset([0, 1], name="val2")
    params = _params(epochs=2, batch_size=3, augment="detection", score_threshold=None,
                     preprocess=[{"resize": {"size": [64, 96], "anti_aliasing": False}}])
    reference = TorchDetector(**params).fit(train, val)

    def crash(event: TrainEvent) -> None:
        if event.stage == "epoch" and event.epoch == 1:
            raise Kill()

    ckpt = tmp_path / "ckpt"
    with pytest.raises(Kill):
        TorchDetector(**params, checkpoint_dir=str(ckpt), progress=crash).fit(train, val)
    assert load_checkpoint(ckpt / LAST)["epoch"] == 1
    resumed = TorchDetector(**params, checkpoint_dir=str(ckpt), resume=True).fit(train, val)
    assert resumed.resumed_from_ == 1
    ref, res = reference.model_.state_dict(), resumed.model_.state_dict()
    for key in ref:
        assert torch.equal(ref[key], res[key]), key
    assert [h["val_map50"] for h in resumed.history_] == [h["val_map50"] for h in reference.history_]
    assert resumed.score_threshold_ == reference.score_threshold_


def test_centernet_targets_decode_back_to_their_boxes():
    boxes = [torch.tensor([[10.0, 20.0, 50.0, 44.0], [60.0, 8.0, 70.0, 30.0]])]
    labels = [torch.tensor([2, 0])]
    t = centernet_targets(boxes, labels, num_classes=3, grid=(16, 24), stride=4)
    assert t.mask.sum() == 2 and t.heat.max() == 1.0
    logits = torch.logit(t.heat.clamp(1e-6, 1 - 1e-6))
    got, scores, lab = centernet_decode(logits, t.size, t.offset, 4, 5, (64, 96))
    order = torch.argsort(lab[0, :2])
    torch.testing.assert_close(got[0, :2][order], boxes[0][[1, 0]], atol=1e-4, rtol=0)
    assert lab[0, :2][order].tolist() == [0, 2] and math.isclose(float(scores[0, 0]), 1.0,
                                                                 rel_tol=1e-5)


def test_a_torchvision_retinanet_trains_a_step_and_predicts_on_the_cpu(two):
    est = TorchDetector(**_params(network="retinanet_fpn", preprocess=[
        {"resize": {"size": [64, 64]}}], network_params={"backbone": "resnet18"}, epochs=1))
    est.fit(two)
    assert math.isfinite(est.history_[0]["loss"])
    found = est.predict_detections(two)
    assert len(found) == 2 and all(len(d) <= est.max_detections for d in found)
    assert all(((d.labels >= 0) & (d.labels < 3)).all() for d in found)


def test_bad_inputs_get_clear_errors(two):
    with pytest.raises(InvalidConfig, match="classifier"):
        TorchDetector(network="resnet18_28").validate_params()
    with pytest.raises(InvalidConfig, match="monitor"):
        TorchDetector(monitor="auc").validate_params()
    with pytest.raises(InvalidDataset, match="detection dataset"):
        TorchDetector(**_params(epochs=1)).fit(make_phantoms(n=8, size=16, seed=1))


def test_local_weights_load_and_other_classes_keep_a_fresh_heatmap_head(tmp_path):
    torch.manual_seed(0)
    source = create_network("centernet_small", in_channels=3, num_classes=3, width=8, neck=16)
    path = tmp_path / "det.pt"
    torch.save({"state_dict": source.state_dict()}, path)
    same = create_network("centernet_small", in_channels=3, num_classes=3, width=8, neck=16,
                          weights=str(path))
    x = torch.rand(1, 3, 64, 64)
    source.eval(), same.eval()
    with torch.no_grad():
        for a, b in zip(source(x), same(x), strict=True):
            torch.testing.assert_close(a, b)
    other = create_network("centernet_small", in_channels=3, num_classes=5, width=8, neck=16,
                           weights=str(path))
    assert other.classifier.weight.shape[0] == 5
    torch.testing.assert_close(other.size_head.weight, source.size_head.weight)


def test_a_local_torchvision_resnet18_checkpoint_fills_the_centernet_trunk(tmp_path):
    from torchvision.models import resnet18

    trunk = resnet18(weights=None)
    path = tmp_path / "r18.pt"
    torch.save(trunk.state_dict(), path)
    net = create_network("centernet_resnet18", in_channels=1, num_classes=3,
                         backbone_weights=str(path))
    torch.testing.assert_close(net.backbone.stages[3][1].conv2.weight, trunk.layer4[1].conv2.weight)
    # grey input: the RGB kernels summed (a grey image in R=G=B gives the RGB response)
    torch.testing.assert_close(net.backbone.stem[0].weight, trunk.conv1.weight.sum(1, keepdim=True))
    with pytest.raises(InvalidConfig, match="lack"):
        torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "bad.pt")
        create_network("centernet_resnet18", backbone_weights=str(tmp_path / "bad.pt"))
