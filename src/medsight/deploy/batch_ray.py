"""``medsight predict --engine ray``: the local batch path (`medsight.deploy.batch`) spread over a
pool of Ray actors with Ray Data, results streamed into one Parquet file.

read (`gather_inputs` on the driver: paths only, never pixels) -> Ray Data ``from_items`` ->
``map_batches`` on a pool of `_PredictActor` (each one `Predictor` of the bundle, its inputs
decoded in its own sandboxed `DecodePool`, then preprocessed and run through ONNX Runtime in
batches) -> the driver iterates the output stream and writes each row once
(`medsight.deploy.results_parquet`, the layout the local engine writes for ``.parquet`` too).

Exactly one row per input, even when an actor dies: Ray Data recreates a lost actor and re-runs
its batch (its actor pools' defaults: ``max_restarts=-1``, ``max_task_retries=-1``; an input that
crashes or hangs its decoder only loses that decoder process, inside the actor, and is an error
row, so no input can kill actors for ever); each row carries the ordinal of its input, the
driver drops any row it has already written and checks at the end that every input has one; the
file is written under a temporary name and renamed into place only when complete, so a retried or
failed job never leaves duplicated or partial results. An unreadable input is a row with its
``error``, the same reason the local engine gives. The bundle is verified and the licence checked
on the driver (as locally); the actors get the bundle's bytes through the object store and verify
them again, so the nodes of a cluster need no shared filesystem for it (the inputs must be
readable at the same paths on every node). A detector's boxes and counts are columns of the file;
its COCO file and annotated images are the local engine's.

Ray is an optional extra (``pip install 'medsight[ray]'``) imported only when this engine runs.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from medsight.deploy.batch import KEPT_ROWS, PARQUET, BatchSummary, failure_row
from medsight.deploy.bundle_archive import bundle_bytes, read_bundle
from medsight.deploy.entitlement import entitle, record_use
from medsight.deploy.inputs import Input, SeriesInput, gather_inputs, source_label
from medsight.deploy.licence_store import LicenceStore
from medsight.deploy.manifest_inputs import with_fields
from medsight.deploy.prediction import Prediction
from medsight.deploy.results_parquet import ParquetResultsWriter
from medsight.errors import InvalidConfig, MedsightError

INSTALL_HINT = "pip install 'medsight[ray]'"
BATCHES_PER_BLOCK = 8  # per Ray Data block, and at least one block per actor: every actor busy
SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOCAL_OBJECT_STORE_MB = 512  # a local cluster's object store: bounded, Ray Data backpressures


def import_ray(loopback: bool = False) -> Any:
    """The ``ray`` module, or an `InvalidConfig` saying how to install it. With `loopback` (a
    local cluster is to be started) and Ray not imported yet, Ray is put in its single-node mode
    (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read when Ray is imported): its GCS, raylet and
    workers then listen on 127.0.0.1 only, not on every interface."""
    if loopback and "ray" not in sys.modules:
        os.environ.setdefault(SINGLE_NODE_ENV, "0")
    try:
        import ray
        import ray.data  # noqa: F401  (the extra's Ray Data, not only Ray core)
    except ImportError as exc:
        raise InvalidConfig(f"--engine ray needs Ray, which is not installed: {INSTALL_HINT} "
                            f"({exc})") from exc
    return ray


def predict_paths_ray(
    bundle: str | os.PathLike[str],
    paths: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    address: str | None = None,
    actors: int | None = None,
    timeout_s: float = 30.0,
    memory_mb: int | None = 4096,
    batch_size: int = 32,
    progress: Callable[[int, int | None], None] | None = None,
    licences: LicenceStore | None = None,
    allow_unsigned: bool = False,
) -> BatchSummary:
    """Predict every input under `paths` with `bundle` on Ray and write `out` (``.parquet``).

    Uses the Ray cluster this process is connected to, else joins the one at `address`, else
    starts a local one (listening on loopback only, no dashboard, Ray's token authentication,
    `actors` CPUs or all of them) and stops it at the end. `actors` actors (default: one per CPU
    of the cluster) each decode their inputs in one worker process (each input under `timeout_s`
    and `memory_mb`) and run `batch_size` images per runtime call. `licences` and
    `allow_unsigned` entitle the run as in `predict_paths`. `progress(done, total)` is called as
    rows are written."""
    out = Path(out)
    if out.suffix.lower() != PARQUET:
        raise InvalidConfig(f"--out {out}: the Ray engine writes Parquet; name the file "
                            f"results{PARQUET}")
    ray = import_ray(loopback=address is None)
    paths = [Path(p) for p in paths]
    summary = BatchSummary()
    entitled = None
    if licences is not None:
        entitled = entitle(bundle, allow_unsigned=allow_unsigned, store=licences)
        summary.entitlement = entitled.describe()
        opened = entitled.bundle
    else:
        from medsight.deploy.bundle import open_bundle

        opened = open_bundle(bundle)
    detector = opened.runtime.is_detector
    volumes = len(opened.runtime.input_shape) == 4
    classes = [str(c) for c in opened.manifest["classes"]]

    def skip(_path: str) -> None:
        summary.skipped += 1

    fields: dict[int, dict[str, Any]] = {}  # a manifest input's source: row and UIDs
    items = list(gather_inputs(paths, volumes=volumes, on_skip=skip, fields=fields))  # no pixels
    with _cluster(ray, address, actors) as cpus:
        writer = ParquetResultsWriter(out, classes, detection=detector)
        try:
            written = np.zeros(len(items), dtype=bool)
            for index, row in _predicted_rows(ray, bundle, items, actors or cpus, timeout_s,
                                              memory_mb, batch_size,
                                              entitled.warnings if entitled else []):
                if written[index]:
                    continue  # a batch re-run after its actor died: its rows are already in
                written[index] = True
                row = with_fields(row, fields.get(index))
                writer.write(row)
                _count(summary, row)
                if progress is not None:
                    progress(summary.n, len(items))
            missing = np.flatnonzero(~written)
            if missing.size:
                raise MedsightError(f"the Ray job returned no result for {missing.size} of "
                                    f"{len(items)} inputs (first: {source_label(items[missing[0]])}"
                                    f"); nothing was written to {out}")
        except BaseException:
            writer.abort()
            raise
        writer.close()
    summary.out = out
    if entitled is not None and summary.ok:
        record_use(entitled)
    return summary


def _count(summary: BatchSummary, row: dict[str, Any]) -> None:
    summary.n += 1
    if row.get("error") is not None:
        summary.failures.append((row["path"], row["error"]))
        return
    summary.warned += bool(row["warnings"])
    if len(summary.first) < KEPT_ROWS:
        summary.first.append(Prediction.from_dict(row))


def _predicted_rows(ray: Any, bundle: str | os.PathLike[str], items: list[Input], actors: int,
                    timeout_s: float, memory_mb: int | None, batch_size: int,
                    extra_warnings: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(input ordinal, results row)`` as Ray Data returns them, in input order."""
    from ray.data import ActorPoolStrategy, DataContext

    if not items:
        return
    encoded = [{"i": i, "item": _encode(item)} for i, item in enumerate(items)]
    bundle_ref = ray.put(bundle_bytes(read_bundle(bundle)))
    blocks = min(len(items), max(actors, -(-len(items) // (batch_size * BATCHES_PER_BLOCK))))
    with _data_context(DataContext.get_current()):
        ds = ray.data.from_items(encoded, override_num_blocks=blocks)
        del encoded
        ds = ds.map_batches(
            _PredictActor, batch_size=batch_size, batch_format="numpy",
            compute=ActorPoolStrategy(size=actors), num_cpus=1,
            fn_constructor_kwargs={"bundle": [bundle_ref], "batch_size": batch_size,
                                   "timeout_s": timeout_s, "memory_mb": memory_mb,
                                   "extra_warnings": list(extra_warnings)})
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for index, row in zip(batch["i"].tolist(), batch["row"].tolist(), strict=True):
                yield int(index), json.loads(row)


class _PredictActor:
    """One Ray actor: the bundle opened once (its hashes and signature verified again here), a
    one-worker decode pool, and the shared `Predictor` over the batches Ray Data hands it."""

    def __init__(self, bundle: list[Any], batch_size: int, timeout_s: float,
                 memory_mb: int | None, extra_warnings: list[str]) -> None:
        import ray

        from medsight.deploy.bundle import open_bundle
        from medsight.deploy.inputs import read_input
        from medsight.deploy.predictor import Predictor
        from medsight.io.decode_pool import DecodePool

        with tempfile.TemporaryDirectory(prefix="medsight-ray-") as tmp:
            path = Path(tmp) / "bundle.msb"
            path.write_bytes(ray.get(bundle[0]))
            opened = open_bundle(path)
        self.pool = DecodePool(work=read_input, workers=1, timeout_s=timeout_s,
                               memory_mb=memory_mb)
        self.pool.start()
        self.predictor = Predictor(opened, pool=self.pool, batch_size=batch_size)
        self.extra = extra_warnings

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [_decode(text) for text in batch["item"].tolist()]
        rows = []
        for item, result in self.predictor.stream(items):
            if isinstance(result, MedsightError):
                row = failure_row(source_label(item), str(result))
            else:
                if self.extra:
                    result.warnings = [*result.warnings, *self.extra]
                row = result.to_dict()
            rows.append(json.dumps(row, allow_nan=False))
        return {"i": batch["i"], "row": np.array(rows, dtype=object)}

    def __del__(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.close()


def _encode(item: Input) -> str:
    if isinstance(item, SeriesInput):
        return json.dumps({"files": list(item.files), "label": item.label})
    return json.dumps({"path": str(item)})


def _decode(text: str) -> Input:
    d = json.loads(text)
    return SeriesInput(tuple(d["files"]), d["label"]) if "files" in d else d["path"]


@contextmanager
def _cluster(ray: Any, address: str | None, cpus: int | None) -> Iterator[int]:
    """The Ray cluster to use (see `predict_paths_ray`); yields its number of CPUs."""
    started = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if address:
            ray.init(address=address, log_to_driver=True, logging_level="WARNING")
        else:
            ray.init(num_cpus=cpus or os.cpu_count() or 1, include_dashboard=False,
                     _node_ip_address="127.0.0.1", logging_level="WARNING",
                     object_store_memory=LOCAL_OBJECT_STORE_MB << 20)
        started = True
    try:
        yield max(1, int(ray.cluster_resources().get("CPU", 1)))
    finally:
        if started:
            ray.shutdown()


@contextmanager
def _data_context(ctx: Any) -> Iterator[None]:
    """Input order kept (the rows come out as the local engine writes them), Ray Data's own
    progress bars off (the caller shows progress); the caller's settings restored after."""
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars,
             ctx.print_on_execution_start)
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    try:
        yield
    finally:
        (ctx.execution_options.preserve_order, ctx.enable_progress_bars,
         ctx.print_on_execution_start) = saved


__all__ = ["INSTALL_HINT", "import_ray", "predict_paths_ray"]
