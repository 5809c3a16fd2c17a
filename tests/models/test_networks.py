"""The network registry: every network trains one step, AlexNet's exact shape, weight loading, ACS."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torchvision import models as tvm

from medsight.errors import InvalidConfig
from medsight.models.networks import (
    ACSConv,
    adapt_input_channels,
    convert_2d_to_3d,
    create_network,
    embed,
    list_networks,
    network_info,
)
from medsight.models.networks.weights import first_conv_key

NAMES = [info.name for info in list_networks("classification")]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The test machine has 2 shared cores; one thread per test process is fastest overall."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_registry_lists_the_required_networks():
    required = {"alexnet", "alexnet_small", "resnet18_28", "resnet50_28", "resnet18", "resnet34",
                "resnet50", "densenet121", "efficientnet_b0", "convnext_tiny", "resnet18_3d",
                "resnet18_acs", "resnet18_25d"}
    assert required <= set(NAMES)
    for info in list_networks():
        assert info.dims in (2, 3) and info.description
        assert 1 <= info.min_size <= info.default_size
        assert info.input_shape(1) == (1, *[info.default_size] * info.dims)
    assert network_info("alexnet").min_size == 63


def test_parameter_counts_are_those_of_the_built_networks():
    for name in ("resnet18_28", "resnet18_acs", "alexnet_small"):
        built = sum(p.numel() for p in create_network(name).parameters())
        assert network_info(name).parameters == built
    # ACS keeps the 2D kernels, so it has exactly the 2D network's parameters; real 3D has ~3x.
    assert network_info("resnet18_acs").parameters == network_info("resnet18_28").parameters
    assert network_info("resnet18_3d").parameters > 2.5 * network_info("resnet18_28").parameters


@pytest.mark.parametrize("name", NAMES)
def test_one_training_step_on_one_channel_input(name):
    """Forward, cross-entropy, backward, SGD step at the smallest sensible size with batch 2.

    That is the default size capped at 64 px: the ImageNet-stem networks (stride 32) reduce 28-32
    px inputs to 1x1 maps, where batch-2 BatchNorm statistics are degenerate and the gradients
    explode (1e9 for efficientnet_b0 at 28 px); 64 px leaves 2x2 maps. 3D networks use 28^3.
    """
    torch.manual_seed(0)
    info = network_info(name)
    size = min(info.default_size, 64)
    net = create_network(name, in_channels=1, num_classes=3)
    x = torch.rand(2, 1, *[size] * info.dims)
    target = torch.tensor([0, 2])
    params = dict(net.named_parameters())
    first = params[first_conv_key(net)]
    head = [p for n, p in net.classifier.named_parameters() if n.endswith("weight")][-1]
    first_before, head_before = first.detach().clone(), head.detach().clone()

    net.train()
    logits = net(x)
    assert logits.shape == (2, 3)
    loss = F.cross_entropy(logits, target)
    assert torch.isfinite(loss)
    torch.optim.SGD(net.parameters(), lr=0.01).zero_grad()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    torch.optim.SGD(net.parameters(), lr=0.01).step()
    assert not torch.equal(first, first_before), "gradient did not reach the first conv"
    assert not torch.equal(head, head_before), "classifier did not change"

    # the protocol on the same network (one sample, eval mode): feature maps, logits, embedding
    net.eval()
    with torch.no_grad():
        maps, logits = net.features_and_logits(x[:1])
    assert torch.isfinite(logits).all() and logits.shape == (1, 3)
    assert maps.dim() == 2 + info.dims and maps.shape[:2] == (1, net.num_features)
    vectors = embed(net.train(), x[:1])
    assert net.training, "embed must restore the train/eval mode"
    assert vectors.shape == (1, net.num_features)
    assert torch.allclose(vectors, maps.flatten(2).mean(2), atol=1e-5)


def test_alexnet_is_the_specified_architecture_with_hand_counted_parameters():
    net = create_network("alexnet", in_channels=3, num_classes=10)
    conv = lambda c_in, c_out, k: c_out * c_in * k * k + c_out  # noqa: E731
    fc = lambda n_in, n_out: n_out * n_in + n_out  # noqa: E731
    expected = (
        conv(3, 64, 11)         # 23_296
        + conv(64, 192, 5)      # 307_392
        + conv(192, 384, 3)     # 663_936
        + conv(384, 256, 3)     # 884_992
        + conv(256, 256, 3)     # 590_080
        + fc(256 * 6 * 6, 4096)  # 9216 -> 4096: 37_752_832
        + fc(4096, 4096)        # 16_781_312
        + fc(4096, 10)          # 40_970
    )
    assert expected == 23_296 + 307_392 + 663_936 + 884_992 + 590_080 + 37_752_832 \
        + 16_781_312 + 40_970 == 57_044_810
    assert sum(p.numel() for p in net.parameters()) == expected

    kinds = [type(m).__name__ for m in net.features]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "LocalResponseNorm", "Conv2d", "ReLU",
                     "MaxPool2d", "LocalResponseNorm", "Conv2d", "ReLU", "Conv2d", "ReLU",
                     "Conv2d", "ReLU", "MaxPool2d"]
    c1 = net.features[0]
    assert (c1.kernel_size, c1.stride, c1.padding) == ((11, 11), (4, 4), (2, 2))
    lrn = net.features[3]
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)
    assert [type(m).__name__ for m in net.classifier] == [
        "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert net.classifier[2].p == net.classifier[5].p == 0.5

    net.eval()
    with torch.no_grad():
        maps, logits = net.features_and_logits(torch.rand(2, 3, 224, 224))
    assert maps.shape == (2, 256, 6, 6)
    assert logits.shape == (2, 10)


def test_alexnet_small_keeps_alexnets_shape_at_28_px():
    net = create_network("alexnet_small").eval()
    assert [type(m).__name__ for m in net.features].count("Conv2d") == 5
    assert [type(m).__name__ for m in net.features].count("LocalResponseNorm") == 2
    assert [type(m).__name__ for m in net.classifier].count("Linear") == 3
    with torch.no_grad():
        maps = net.forward_features(torch.rand(1, 1, 28, 28))
    assert maps.shape == (1, 256, 3, 3)


def test_too_small_inputs_raise_naming_the_minimum():
    alex = create_network("alexnet").eval()
    with pytest.raises(InvalidConfig, match="at least 63 px"):
        alex(torch.rand(1, 1, 62, 62))
    with torch.no_grad():
        assert alex(torch.rand(1, 1, 63, 63)).shape == (1, 2)
    with pytest.raises(InvalidConfig, match="at least 32 px"):
        create_network("convnext_tiny")(torch.rand(1, 1, 31, 40))


def test_wrong_input_layout_and_bad_arguments_raise_invalid_config():
    net = create_network("resnet18_28", in_channels=1)
    with pytest.raises(InvalidConfig, match="C=1"):
        net(torch.rand(1, 3, 28, 28))
    with pytest.raises(InvalidConfig, match=r"\(N, C, D, H, W\)"):
        create_network("resnet18_3d")(torch.rand(1, 1, 28, 28))
    with pytest.raises(InvalidConfig, match="resnet18_28"):
        create_network("resnet19")
    with pytest.raises(InvalidConfig, match="unknown option"):
        create_network("resnet18_28", dropout=0.1)
    with pytest.raises(InvalidConfig, match="num_classes"):
        create_network("resnet18_28", num_classes=0)
    assert create_network("alexnet_small", dropout=0.25).classifier[2].p == 0.25


# ----------------------------------------------------------------------------- local weights
def test_three_channel_weights_load_into_one_channel_network_by_summing(tmp_path, caplog):
    torch.manual_seed(1)
    rgb = create_network("resnet18_28", in_channels=3, num_classes=10).eval()
    path = tmp_path / "rgb.pt"
    torch.save(rgb.state_dict(), path)

    with caplog.at_level(logging.INFO, logger="medsight.models.networks.weights"):
        grey = create_network("resnet18_28", in_channels=1, num_classes=2, weights=path).eval()
    assert torch.equal(grey.conv1.weight, rgb.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(grey.layer3[1].conv2.weight, rgb.layer3[1].conv2.weight)
    assert torch.equal(grey.bn1.running_var, rgb.bn1.running_var)
    assert grey.classifier.weight.shape == (2, 512)  # head left at initialisation
    assert "3 to 1 input channels" in caplog.text and "classifier" in caplog.text

    # why summing: a grey image copied into R, G and B gets exactly the RGB network's features
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(grey.forward_features(x),
                              rgb.forward_features(x.expand(-1, 3, -1, -1)), atol=1e-4)


def test_checkpoint_dicts_wrapper_prefixes_and_torchvision_keys_load(tmp_path):
    source = create_network("alexnet_small", num_classes=3)
    path = tmp_path / "ckpt.pt"
    wrapped = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"epoch": 4, "model_state_dict": wrapped, "optimizer": {}}, path)
    loaded = create_network("alexnet_small", num_classes=3, weights=path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    tv = tvm.resnet18(weights=None, num_classes=5)  # torchvision layout: head is `fc`
    torch.save(tv.state_dict(), tmp_path / "tv.pt")
    net = create_network("resnet18", in_channels=3, num_classes=5, weights=tmp_path / "tv.pt")
    assert torch.equal(net.classifier.weight, tv.fc.weight)
    assert torch.equal(net.conv1.weight, tv.conv1.weight)


def test_two_d_checkpoint_loads_into_acs_network_unchanged():
    two_d = create_network("resnet18_28")
    acs = create_network("resnet18_acs", weights=two_d.state_dict())
    for key, value in two_d.state_dict().items():
        assert torch.equal(acs.state_dict()[key], value), key


def test_weights_that_do_not_fit_raise_invalid_config(tmp_path):
    torch.save(create_network("resnet18_28").state_dict(), tmp_path / "r18.pt")
    with pytest.raises(InvalidConfig, match=r"r18\.pt do not fit network resnet50_28"):
        create_network("resnet50_28", weights=tmp_path / "r18.pt")
    with pytest.raises(InvalidConfig, match="not found"):
        create_network("resnet18_28", weights=tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(InvalidConfig, match="cannot read weights file"):
        create_network("resnet18_28", weights=tmp_path / "junk.pt")


def test_adapt_input_channels_cycles_and_rescales():
    weight = torch.arange(2 * 3 * 1 * 1, dtype=torch.float32).reshape(2, 3, 1, 1)
    two = adapt_input_channels(weight, 2)
    assert torch.equal(two, weight[:, :2] * 1.5)
    five = adapt_input_channels(weight, 5)
    assert torch.equal(five, weight[:, [0, 1, 2, 0, 1]] * 0.6)
    one_to_three = adapt_input_channels(weight[:, :1], 3)
    assert torch.allclose(one_to_three.sum(1), weight[:, 0])


# ------------------------------------------------------------------------------------ ACS
@pytest.mark.parametrize("stride", [1, 2])
def test_acs_views_are_2d_convolutions_of_the_three_planes(stride):
    torch.manual_seed(2)
    conv = nn.Conv2d(2, 6, kernel_size=3, stride=stride, padding=1)
    volume = torch.rand(1, 2, 7, 8, 9)  # (N, C, D, H, W)
    with torch.no_grad():
        axial = ACSConv.from_conv2d(conv, split=(6, 0, 0))(volume)
        coronal = ACSConv.from_conv2d(conv, split=(0, 6, 0))(volume)
        sagittal = ACSConv.from_conv2d(conv, split=(0, 0, 6))(volume)
        assert axial.shape == coronal.shape == sagittal.shape
        s = stride
        for i, d in enumerate(range(0, 7, s)):  # H x W planes
            assert torch.allclose(axial[:, :, i], conv(volume[:, :, d]), atol=1e-6)
        for i, h in enumerate(range(0, 8, s)):  # D x W planes
            assert torch.allclose(coronal[:, :, :, i], conv(volume[:, :, :, h]), atol=1e-6)
        for i, w in enumerate(range(0, 9, s)):  # D x H planes
            assert torch.allclose(sagittal[..., i], conv(volume[..., w]), atol=1e-6)

        mixed = ACSConv.from_conv2d(conv)  # default split of 6 channels: 2 per view
        assert mixed.split == (2, 2, 2)
        out = mixed(volume)
        assert torch.allclose(out[:, :2], axial[:, :2], atol=1e-6)
        assert torch.allclose(out[:, 2:4], coronal[:, 2:4], atol=1e-6)
        assert torch.allclose(out[:, 4:], sagittal[:, 4:], atol=1e-6)


def test_acs_conversion_of_a_network():
    net = convert_2d_to_3d(create_network("resnet18_28"))
    assert net.dims == 3
    assert isinstance(net.conv1, ACSConv) and net.conv1.split == (22, 21, 21)
    assert isinstance(net.bn1, nn.BatchNorm3d)
    assert not any(isinstance(m, nn.Conv2d | nn.BatchNorm2d) for m in net.modules())
    with pytest.raises(InvalidConfig, match="ConvTranspose2d"):
        convert_2d_to_3d(nn.Sequential(nn.ConvTranspose2d(1, 1, 2)))


def test_cnn3d_small_is_light_and_takes_any_volume_size():
    net = create_network("cnn3d_small", in_channels=1, num_classes=2)
    n_params = sum(p.numel() for p in net.parameters())
    assert 200_000 < n_params < 240_000  # w=8: 0.22 M, ~50x fewer than resnet18_3d
    assert network_info("resnet18_3d").parameters > 50 * n_params
    net.eval()
    for size in (28, 40, 64):
        maps, logits = net.features_and_logits(torch.rand(2, 1, size, size, size))
        assert logits.shape == (2, 2) and maps.shape[:2] == (2, 64)
    wide = create_network("cnn3d_small", width=16)
    assert wide.num_features == 128
    with pytest.raises(InvalidConfig, match="width"):
        create_network("cnn3d_small", width=0)
    with pytest.raises(InvalidConfig, match="at least 8"):
        net(torch.rand(1, 1, 4, 28, 28))


def test_each_network_says_its_task_and_estimators_refuse_the_other():
    from medsight.models.torch_classifier import TorchClassifier
    from medsight.models.torch_detector import TorchDetector

    detectors = {info.name for info in list_networks("detection")}
    assert {"centernet_small", "centernet_resnet18", "retinanet_fpn", "faster_rcnn_fpn"} <= detectors
    assert not detectors & set(NAMES)
    with pytest.raises(InvalidConfig, match="is a detector"):
        TorchClassifier(network="centernet_small").validate_params()
    with pytest.raises(InvalidConfig, match="is a classifier"):
        TorchDetector(network="resnet18_28").validate_params()
