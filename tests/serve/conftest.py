"""Real services for the service tests: a tiny bundle trained once per session on real images, and
`medsight serve` started as a subprocess on a free loopback port with users and keys made in its
database beforehand. Tests using them are marked ``xdist_group("serve")`` so they share a worker."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import shared_path, tiny_nets
from serve.live import LiveServer, start_server
from tiny_runs import tiny_run, torch_model


@pytest.fixture(scope="session")
def serve_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="session")
def serve_bundle(serve_root: Path) -> Path:
    """A tiny CAM-able CNN on 20 px BreastMNIST, bundled (positive class: malignant)."""
    from medsight.deploy import create_bundle

    tiny_nets()
    run = tiny_run(serve_root / "tiny_cnn", shared_path("medmnist", "breastmnist.npz"),
                   [{"resize": {"size": [20, 20]}}, {"minmax": {}}],
                   torch_model("tiny_cnn_test", epochs=1), positive="malignant")
    return create_bundle(run, serve_root / "tiny_cnn.msb")


@pytest.fixture(scope="session")
def live_server(serve_root: Path, serve_bundle: Path) -> Iterator[LiveServer]:
    """One service for the whole session (tests must not depend on its record count)."""
    server = start_server([serve_bundle], serve_root / "live")
    yield server
    server.stop()


@pytest.fixture
def server_factory(tmp_path: Path, serve_bundle: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start dedicated services (own data dir and flags); all stopped after the test."""
    started: list[LiveServer] = []

    def start(*args: str, name: str = "data", bundles: list[Path] | None = None, **kw) -> LiveServer:
        server = start_server(bundles or [serve_bundle], tmp_path / name, *args, **kw)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def detector_bundle(serve_root: Path) -> Path:
    """A CenterNet detector trained one epoch on 6 BCCD smears per split, bundled."""
    from deploy.tiny_detector import detector_run

    from medsight.deploy import create_bundle

    return create_bundle(detector_run(serve_root / "detector"), serve_root / "detector.msb")


@pytest.fixture(scope="session")
def detection_server(serve_root: Path, serve_bundle: Path, detector_bundle: Path
                     ) -> Iterator[LiveServer]:
    """A service with the detector (default) and the tiny classifier."""
    server = start_server([detector_bundle, serve_bundle], serve_root / "detection")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def volume_bundle(serve_root: Path) -> Path:
    """cnn3d_small on 16^3 AdrenalMNIST3D volumes, bundled (takes DICOM series as volumes)."""
    from medsight.deploy import create_bundle

    run = tiny_run(serve_root / "cnn3d", shared_path("medmnist", "adrenalmnist3d.npz"),
                   [{"resize": {"size": [16, 16, 16]}}, {"minmax": {}}], torch_model("cnn3d_small"),
                   limit=16)
    return create_bundle(run, serve_root / "cnn3d.msb")


@pytest.fixture(scope="session")
def series_server(serve_root: Path, serve_bundle: Path, volume_bundle: Path) -> Iterator[LiveServer]:
    """A service with two models: the 2D one (default) and the 3D one."""
    server = start_server([serve_bundle, volume_bundle], serve_root / "two-models")
    yield server
    server.stop()
