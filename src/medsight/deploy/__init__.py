"""Deployment: verifiable model bundles and their ONNX Runtime model (no torch when predicting).

`create_bundle(run_dir, out)` turns a `medsight train` run folder into one ``.msb`` file;
`open_bundle(path)` verifies it and gives a `Bundle` with its manifest, preprocessing chain,
`ModelRuntime` and model card. `create_bundle` (and the run-folder reading behind it) is
imported on first use, so opening a bundle stays light.
"""

from typing import Any

from medsight.deploy.bundle import Bundle, open_bundle, verify_bundle
from medsight.deploy.runtime import ModelRuntime, RuntimeOutput

__all__ = ["Bundle", "ModelRuntime", "RuntimeOutput", "create_bundle", "open_bundle", "verify_bundle"]


def __getattr__(name: str) -> Any:
    if name == "create_bundle":
        from medsight.deploy.bundle_create import create_bundle

        return create_bundle
    raise AttributeError(f"module 'medsight.deploy' has no attribute {name!r}")
