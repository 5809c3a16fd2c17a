"""`ParquetResultsWriter`: ``medsight predict`` results as one Parquet file, the same for the local
and the Ray engine, streamed in row groups and moved into place only when complete.

One row per input, with the fields of the JSON output as columns, typed so that pandas and pyarrow
users get what they would expect (``pd.read_parquet(path)``: a dict per cell for a struct, a list
for a list):

- ``path`` (string), ``label`` (string), ``confidence`` and ``threshold`` (float64);
- ``probabilities``: a struct with one float64 field per class of the bundle, in class order
  (``df["probabilities"][0]["malignant"]``, or ``pc.struct_field``); for a detector, whose JSON
  has an empty ``{}``, the column is all null (null type);
- ``warnings``: list of strings;
- ``timings_ms``: struct of float64 ``read``, ``preprocess``, ``checks``, ``inference``,
  ``heatmap``, ``drawing``, ``total`` (null where a step did not run);
- ``input``: struct ``shape`` (list of int64), ``channels`` (int64), ``modality``,
  ``photometric`` (strings), ``spacing`` (list of float64), ``min``, ``max`` (float64);
- ``model``: struct of strings ``name``, ``version``, ``uuid``, ``kind``;
- a detector adds ``boxes`` (list of struct ``label``, ``score``, ``box``: [x1, y1, x2, y2]
  float64) and ``counts`` (struct of int64, one field per class); drawn heatmaps add ``heatmap``
  (struct ``method``, ``class``, ``grid``, ``shape``);
- ``source``: for an input named by a manifest (null otherwise), struct ``manifest_row``
  (int64, 1-based) and the row's DICOM ``study_uid``, ``series_uid``, ``sop_uid`` (strings);
- ``error`` (string): null for a prediction, the reason for an input that could not be
  predicted; such a row has null ``label``, ``probabilities`` and ``confidence``.

The file is written under a temporary name in the same folder and renamed over ``path`` by
`close`, so a reader never sees half a file and a failed run leaves no partial results.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

TIMINGS = ("read", "preprocess", "checks", "inference", "heatmap", "drawing", "total")
ROW_GROUP = 2048  # rows buffered before a row group is written: bounded memory on any archive


def results_schema(classes: list[str], detection: bool = False, heatmap: bool = False):
    """The pyarrow schema of a results file for a bundle with `classes` (see the module)."""
    import pyarrow as pa

    fields = [
        ("path", pa.string()),
        ("label", pa.string()),
        ("probabilities", pa.null() if detection
         else pa.struct([(c, pa.float64()) for c in classes])),
        ("confidence", pa.float64()),
        ("threshold", pa.float64()),
        ("warnings", pa.list_(pa.string())),
        ("timings_ms", pa.struct([(t, pa.float64()) for t in TIMINGS])),
        ("input", pa.struct([("shape", pa.list_(pa.int64())), ("channels", pa.int64()),
                             ("modality", pa.string()), ("photometric", pa.string()),
                             ("spacing", pa.list_(pa.float64())), ("min", pa.float64()),
                             ("max", pa.float64())])),
        ("model", pa.struct([(k, pa.string()) for k in ("name", "version", "uuid", "kind")])),
    ]
    if detection:
        fields += [("boxes", pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64()),
                                                  ("box", pa.list_(pa.float64()))]))),
                   ("counts", pa.struct([(c, pa.int64()) for c in classes]))]
    if heatmap:
        fields.append(("heatmap", pa.struct([("method", pa.string()), ("class", pa.string()),
                                             ("grid", pa.string()),
                                             ("shape", pa.list_(pa.int64()))])))
    fields += [("source", pa.struct([("manifest_row", pa.int64()), ("study_uid", pa.string()),
                                     ("series_uid", pa.string()), ("sop_uid", pa.string())])),
               ("error", pa.string())]
    return pa.schema(fields)


class ParquetResultsWriter:
    """Write results rows (`Prediction.to_dict` objects or failure rows) to a Parquet file."""

    def __init__(self, path: str | os.PathLike[str], classes: list[str], detection: bool = False,
                 heatmap: bool = False) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.schema = results_schema(classes, detection, heatmap)
        self._detection = detection
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                   suffix=".tmp")
        os.close(fd)
        self._tmp = Path(tmp)
        self._writer = pq.ParquetWriter(self._tmp, self.schema)
        self._rows: list[dict[str, Any]] = []
        self.count = 0

    def write(self, row: dict[str, Any]) -> None:
        self._rows.append(self._typed(row))
        self.count += 1
        if len(self._rows) >= ROW_GROUP:
            self._flush()

    def close(self) -> None:
        """Write what is buffered, finish the file and move it over `path`."""
        self._flush()
        self._writer.close()
        with self._tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the temporary file: `path` is left as it was."""
        try:
            self._writer.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema))
            self._rows = []

    def _typed(self, row: dict[str, Any]) -> dict[str, Any]:
        unknown = set(row) - set(self.schema.names)
        if unknown:
            raise ValueError(f"results row has fields the Parquet schema lacks: {sorted(unknown)}")
        timings = row.get("timings_ms") or {}
        if set(timings) - set(TIMINGS):
            raise ValueError(f"unknown timing steps {sorted(set(timings) - set(TIMINGS))}")
        out = dict(row)
        if self._detection:
            out["probabilities"] = None
        model = row.get("model")
        if model:
            out["model"] = {k: None if v is None else str(v) for k, v in model.items()}
        if not timings:
            out["timings_ms"] = None
        if not row.get("input"):
            out["input"] = None
        return out


__all__ = ["ParquetResultsWriter", "TIMINGS", "results_schema"]
