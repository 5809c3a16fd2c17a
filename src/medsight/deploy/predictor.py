"""`Predictor`: the one prediction path (CLI, service, PACS watcher and batch jobs share it).

read (in a decode pool for untrusted files) -> the bundle's `Preprocess` -> `ModelRuntime.forward`
on ONNX Runtime -> decision with the bundle's threshold -> `Prediction`, with out-of-distribution
warnings and, on request, a heatmap mapped back onto the original image. A detector bundle takes
the same path with `ModelRuntime.detect`: its boxes are mapped back onto the original image through
the geometry the preprocessing recorded and counted at the bundle's score threshold
(`medsight.deploy.detections`); on request the image is drawn with them. numpy + ONNX Runtime
only: torch is never imported. Stateless: one runtime session shared by every thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight.deploy.bundle import Bundle, open_bundle
from medsight.deploy.inputs import Input, read_input, source_label
from medsight.deploy.prediction import Prediction
from medsight.deploy.prepare import Prepared, PreparePlan
from medsight.errors import MedsightError
from medsight.explain import (
    HeatmapGeometryUnknown,
    class_activation_map,
    image_png,
    new_transforms,
    occlusion_map,
    overlay_png,
    to_original,
    upsample,
)
from medsight.io.image import Image

DEFAULT_BATCH = 32


class Predictor:
    """Predict with a bundle (a `Bundle` or the path of one, verified on opening).

    ``pool`` (a `medsight.io.decode_pool.DecodePool` whose work function is
    `medsight.deploy.inputs.read_input`) reads paths and bytes in worker processes, as untrusted
    files should be; without it they are read in this process. ``batch_size`` bounds how many
    images go through the runtime at once (and how many `stream` holds in memory).

    A service that prepares inputs elsewhere (decode workers running `plan`) hands the
    `Prepared` inputs of a batch to `finish`, which is the rest of the same path.
    """

    def __init__(self, bundle: Bundle | str | Path, pool: Any = None,
                 batch_size: int = DEFAULT_BATCH) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
        self.pool = pool
        self.batch_size = max(1, int(batch_size))
        m = self.bundle.manifest
        self.runtime = self.bundle.runtime
        self.classes: list[str] = [str(c) for c in m["classes"]]
        self.task: str = m["task"]
        self.positive: int | None = m.get("positive_class")
        self.threshold: float | None = (m.get("threshold") or {}).get("value")
        # what every decision needs, read once: the threshold a Prediction reports, and for
        # binary models the positive class and the threshold applied to its probability
        self._reported_threshold = self.threshold if self.task in ("binary", "multilabel") else None
        self._positive = int(self.positive if self.positive is not None else 1)
        self._binary_threshold = 0.5 if self.threshold is None else float(self.threshold)
        self.input_spec: dict[str, Any] = m["input"]
        self.heatmap_method: str = (m.get("heatmap") or {}).get("method") or "occlusion"
        self.model_info = {k: m["model"].get(k) for k in ("name", "version", "uuid", "kind")}
        self.plan = PreparePlan.of(m, self.bundle.preprocess, self.runtime.input_shape)
        self.detection: Any = None  # a detector's DetectionSpec (classes, threshold, floor)
        if self.runtime.is_detector:
            from medsight.deploy.detections import DetectionSpec

            self.detection = DetectionSpec.of(m)
            self.threshold = self._reported_threshold = self.detection.threshold

    @property
    def is_volume(self) -> bool:
        """Whether the model takes volumes (C, D, H, W): folders' DICOM series are then inputs."""
        return len(self.runtime.input_shape) == 4

    # -- public API ---------------------------------------------------------------------------
    def predict(self, x: Input | Sequence[Input], heatmap: bool = False) -> Prediction | list[Prediction]:
        """One input (path, bytes, `Image`, `SeriesInput`) -> `Prediction`; a list -> a list.
        An unreadable or unprocessable input raises its `MedsightError`."""
        if isinstance(x, (list, tuple)):
            return self.predict_batch(x, heatmap=heatmap)
        return self.predict_batch([x], heatmap=heatmap)[0]

    def predict_batch(self, items: Iterable[Input], heatmap: bool = False) -> list[Prediction]:
        """Predictions of `items`, batched through the runtime; the first failure raises."""
        out = []
        for _item, result in self.stream(items, heatmap=heatmap):
            if isinstance(result, MedsightError):
                raise result
            out.append(result)
        return out

    def stream(self, items: Iterable[Input], heatmap: bool = False
               ) -> Iterator[tuple[Input, Prediction | MedsightError]]:
        """``(item, Prediction | MedsightError)`` for every item, in input order, holding at
        most `batch_size` images at a time: a failure is reported for its item and the rest
        still go on (what ``medsight predict`` streams over a folder)."""
        pending: list[tuple[Input, Prepared | MedsightError]] = []
        for item, image, read_ms in self._read(items):
            prepared = image if isinstance(image, MedsightError) else self._prepare(item, image, read_ms)
            pending.append((item, prepared))
            if len(pending) >= self.batch_size:
                yield from self._flush(pending, heatmap)
                pending = []
        yield from self._flush(pending, heatmap)

    # -- steps ----------------------------------------------------------------------------------
    def _read(self, items: Iterable[Input]) -> Iterator[tuple[Input, Image | MedsightError, float]]:
        if self.pool is not None:
            t0 = time.perf_counter()
            for item, result in self.pool.map(items):  # in-memory Images pass through read_input
                now = time.perf_counter()
                yield item, result, (now - t0) * 1e3
                t0 = now
            return
        for item in items:
            t0 = time.perf_counter()
            try:
                image: Image | MedsightError = read_input(item)
            except MedsightError as exc:
                image = exc
            yield item, image, (time.perf_counter() - t0) * 1e3

    def _prepare(self, item: Input, image: Image, read_ms: float) -> Prepared | MedsightError:
        return self.plan.prepare(source_label(item), image, read_ms)

    def _flush(self, pending: list[tuple[Input, Prepared | MedsightError]], heatmap: bool
               ) -> Iterator[tuple[Input, Prediction | MedsightError]]:
        ready = [p for _, p in pending if isinstance(p, Prepared)]
        predictions = iter(self.finish(ready, heatmap=heatmap))
        for item, p in pending:
            yield item, (p if isinstance(p, MedsightError) else next(predictions))

    def finish(self, ready: Sequence[Prepared], heatmap: bool = False) -> list[Prediction]:
        """The predictions of prepared inputs, run through the runtime as one batch (a heatmap
        needs the input's `image`, which `PreparePlan.prepare` keeps unless told not to)."""
        if not ready:
            return []
        tensors = [p.tensor.pixels for p in ready]
        x = tensors[0][None] if len(tensors) == 1 else np.stack(tensors)  # one: a view, no copy
        t0 = time.perf_counter()
        if self.detection is not None:
            found = self.runtime.detect(x, batch_size=self.batch_size)
            per_image = (time.perf_counter() - t0) * 1e3 / len(ready)
            return [self._detections(p, found.boxes[k], found.scores[k], found.labels[k], per_image,
                                     heatmap) for k, p in enumerate(ready)]
        want_maps = heatmap and self._uses_cam()
        out = self.runtime.forward(x, with_features=want_maps, batch_size=self.batch_size)
        per_image = (time.perf_counter() - t0) * 1e3 / len(ready)
        return [self._prediction(p, out.probabilities[k], per_image, heatmap,
                                 out.features[k] if out.features is not None else None)
                for k, p in enumerate(ready)]

    def _prediction(self, p: Prepared, proba: np.ndarray, inference_ms: float, heatmap: bool,
                    maps: np.ndarray | None) -> Prediction:
        label, confidence, explained = self._decide(proba)
        timings = {"read": p.read_ms, "preprocess": p.preprocess_ms, "checks": p.checks_ms,
                   "inference": inference_ms}
        pred = Prediction(
            source=p.source,
            probabilities=dict(zip(self.classes, proba.tolist(), strict=True)),
            label=label, confidence=confidence, threshold=self._reported_threshold,
            warnings=list(p.warnings), timings_ms=timings, input=dict(p.summary),
            model=self.model_info,
        )
        if heatmap:
            if p.image is None:
                raise ValueError(f"{p.source}: a heatmap needs the image as read; prepare it "
                                 "with keep_image=True")
            t0 = time.perf_counter()
            self._explain(pred, p, explained, maps)
            timings["heatmap"] = (time.perf_counter() - t0) * 1e3
        timings["total"] = sum(timings.values())
        return pred

    def _detections(self, p: Prepared, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                    inference_ms: float, draw: bool) -> Prediction:
        """A detector's `Prediction`: boxes on the original image, counts at the threshold and,
        with `draw` (what a heatmap is for a classifier), the image with its boxes."""
        from medsight.deploy import detections

        t0 = time.perf_counter()
        found = detections.to_original(boxes, scores, labels, self.detection,
                                       p.tensor.metadata.get("geometry", [])[p.geometry_before:],
                                       p.spatial_shape)
        rows, counts, label, confidence = detections.summarise(found, self.detection)
        timings = {"read": p.read_ms, "preprocess": p.preprocess_ms, "checks": p.checks_ms,
                   "inference": inference_ms + (time.perf_counter() - t0) * 1e3}
        pred = Prediction(source=p.source, probabilities={}, label=label, confidence=confidence,
                          threshold=self.detection.threshold, warnings=list(p.warnings),
                          timings_ms=timings, input=dict(p.summary), model=self.model_info,
                          boxes=rows, counts=counts)
        if draw:
            if p.image is None:
                raise ValueError(f"{p.source}: drawing the boxes needs the image as read; prepare "
                                 "it with keep_image=True")
            t1 = time.perf_counter()
            pred.image_png = image_png(p.image.pixels)
            pred.annotated_png = detections.annotated_png(p.image.pixels, found, self.detection)
            timings["drawing"] = (time.perf_counter() - t1) * 1e3
        timings["total"] = sum(timings.values())
        return pred

    def _decide(self, proba: np.ndarray) -> tuple[str, float, int]:
        """(label, confidence, class index a heatmap explains), as the estimator's `decide`."""
        if self.task == "multilabel":
            on = [c for c, v in zip(self.classes, proba, strict=True) if v >= 0.5]
            return "+".join(on), float(np.min(np.maximum(proba, 1 - proba))), int(np.argmax(proba))
        if self.task == "binary":
            pos = self._positive
            k = pos if proba[pos] >= self._binary_threshold else 1 - pos
            return self.classes[k], float(proba[k]), pos
        k = int(np.argmax(proba))
        return self.classes[k], float(proba[k]), k

    # -- heatmaps -------------------------------------------------------------------------------
    def _uses_cam(self) -> bool:
        return (self.heatmap_method == "cam" and self.runtime.cam_weights is not None
                and self.runtime.has_features)

    def _explain(self, pred: Prediction, p: Prepared, class_index: int,
                 maps: np.ndarray | None) -> None:
        x = p.tensor.pixels
        spatial = x.shape[1:]
        if maps is not None:
            heat = upsample(class_activation_map(maps, self.runtime.cam_weights, class_index,
                                                 softmax=self.task != "multilabel"), spatial)
            method = "cam"
        else:
            windows = 8 if len(spatial) == 2 else 4
            heat = occlusion_map(lambda b: self.runtime.forward(b, with_features=False).probabilities,
                                 x, class_index, windows=windows, batch_size=self.batch_size)
            method = "occlusion"
        grid = "original"
        try:
            before = len(p.image.metadata.get("geometry", []))
            heat = to_original(heat, new_transforms(p.tensor.metadata, before), p.image.spatial_shape)
            base = p.image.pixels
        except HeatmapGeometryUnknown as exc:
            pred.warnings.append(f"heatmap: {exc}")
            grid, base = "model input", x
        pred.heatmap = heat
        pred.heatmap_png = overlay_png(base, heat)
        pred.image_png = image_png(base)
        pred.heatmap_info = {"method": method, "class": self.classes[class_index], "grid": grid,
                             "shape": list(heat.shape)}

