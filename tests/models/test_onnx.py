"""ONNX export: dynamic batch axis, logits/features outputs, parity with PyTorch on real images."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from conftest import shared_path
from torch import nn

from medsight.errors import InvalidConfig
from medsight.models.export_onnx import check_onnx_parity, export_onnx, onnx_session
from medsight.models.networks import ACSConv, create_network

TOLERANCE = 1e-4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _input_sensitive(net: nn.Module, x: torch.Tensor) -> None:
    """Make sure the exported outputs vary between the real images far more than the bound.

    With torch's default init alexnet_small (no BatchNorm, logits only) has logits that vary by
    ~5e-5 between images, so an ONNX graph that ignored its input would pass a 1e-4 bound; it
    gets He-init weights (logits then vary by ~4e-2). BatchNorm networks export their feature
    maps, which vary by O(1) at default init; He init without trained BatchNorm statistics would
    only inflate their activations.
    """
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        for module in net.modules():
            if isinstance(module, nn.Conv2d | nn.Linear | ACSConv):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
    net.eval()
    with torch.no_grad():
        maps, logits = net.features_and_logits(x)
    exported = [logits, maps] if net.global_pool else [logits]
    assert max(float(out.std(dim=0).max()) for out in exported) > 100 * TOLERANCE


def _last_linear(net: nn.Module) -> nn.Linear:
    return [m for m in net.classifier.modules() if isinstance(m, nn.Linear)][-1]


def _batch_axis(path) -> str:
    return onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0].dim_param


@pytest.mark.parametrize(("name", "outputs"), [
    ("resnet18_28", ["logits", "features"]),
    ("alexnet_small", ["logits"]),  # its head reads a 3x3 grid, not a global pool
])
def test_2d_export_matches_pytorch_on_breastmnist_and_random_inputs(name, outputs, breastmnist,
                                                                     tmp_path):
    torch.manual_seed(0)
    images = np.load(breastmnist)["train_images"][:3].astype(np.float32) / 255.0
    real = torch.from_numpy(images)[:, None]  # (3, 1, 28, 28)
    net = create_network(name)
    _input_sensitive(net, real)
    path = export_onnx(net, tmp_path / f"{name}.onnx", input_shape=(1, 1, 28, 28))

    session = onnx_session(path)
    assert [o.name for o in session.get_outputs()] == outputs
    assert _batch_axis(path) == "batch"
    for batch in (1, 3):
        assert check_onnx_parity(net, path, real[:batch]) < TOLERANCE
        assert check_onnx_parity(net, path, torch.rand(batch, 1, 28, 28)) < TOLERANCE
    got = session.run(None, {"input": real.numpy()})
    assert got[0].shape == (3, 2)
    if "features" in outputs:
        assert got[1].shape == (3, net.num_features, 4, 4)

    # the check can fail: a network changed after export no longer matches its file
    with torch.no_grad():
        _last_linear(net).bias.add_(0.5)
    assert check_onnx_parity(net, path, real) > 0.4


def test_acs_3d_export_matches_pytorch_on_adrenal_volumes(tmp_path):
    torch.manual_seed(0)
    volumes = np.load(shared_path("medmnist", "adrenalmnist3d.npz"))["train_images"][:3]
    real = torch.from_numpy(volumes.astype(np.float32) / 255.0)[:, None]  # (3, 1, 28, 28, 28)
    net = create_network("resnet18_acs")
    _input_sensitive(net, real)
    path = export_onnx(net, tmp_path / "acs.onnx", input_shape=(1, 1, 28, 28, 28))
    assert _batch_axis(path) == "batch"
    for batch in (1, 3):
        assert check_onnx_parity(net, path, real[:batch]) < TOLERANCE
    assert check_onnx_parity(net, path, torch.rand(2, 1, 28, 28, 28)) < TOLERANCE


def test_export_options_modes_and_bad_input(tmp_path):
    net = create_network("resnet18_28").train()
    path = export_onnx(net, tmp_path / "logits_only.onnx", (2, 1, 32, 32), with_features=False)
    assert net.training, "export must restore training mode"
    assert [o.name for o in onnx_session(path).get_outputs()] == ["logits"]
    assert check_onnx_parity(net, path, torch.rand(5, 1, 32, 32)) < TOLERANCE

    default = export_onnx(create_network("alexnet_small", in_channels=3), tmp_path / "d.onnx")
    assert onnx_session(default).get_inputs()[0].shape == ["batch", 3, 28, 28]

    with pytest.raises(InvalidConfig, match="C=1"):
        export_onnx(net, tmp_path / "x.onnx", (1, 3, 28, 28))
    with pytest.raises(InvalidConfig, match="at least 63 px"):
        export_onnx(create_network("alexnet"), tmp_path / "x.onnx", (1, 1, 32, 32))
    with pytest.raises(InvalidConfig, match="not found"):
        check_onnx_parity(net, tmp_path / "missing.onnx", torch.rand(1, 1, 28, 28))


def test_fitted_classifier_exports_with_its_input_standardisation(tmp_path, breastmnist) -> None:
    """What gets deployed is the fitted model (standardisation + network), not the bare net."""
    from medsight.data.sources.medmnist import from_medmnist
    from medsight.models.export_onnx import export_classifier_onnx
    from medsight.models.torch_classifier import TorchClassifier

    ds = from_medmnist(breastmnist)
    train = ds.split("train").subset(range(48))
    est = TorchClassifier(network="alexnet_small", epochs=1, batch_size=16, threads=1,
                          preprocess=[{"minmax": {}}], seed=0).fit(train)
    path = export_classifier_onnx(est, tmp_path / "clf.onnx")
    x = np.stack([est.preprocess_(ds.split("test").image(i)).pixels for i in range(5)])
    assert check_onnx_parity(est.model_, path, x) < 1e-4
    session = onnx_session(path)
    (logits,) = session.run(["logits"], {"input": x.astype(np.float32)})[:1]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = est.predict_proba(ds.split("test").subset(range(5)))
    np.testing.assert_allclose(proba, expected, atol=1e-5)
