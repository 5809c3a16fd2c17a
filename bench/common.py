"""Shared helpers of the benchmark scripts: the machine a result was measured on, JSON records.

Every benchmark writes one small JSON file per run into ``bench/results/``; the markdown in
``BENCHMARKS.md`` is regenerated from those files, so a table is always backed by a record of
the hardware, the load on the machine and the settings that produced it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def cpu_model() -> str:
    """The CPU model name from ``lscpu`` (falls back to `platform.processor`)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        match = re.search(r"^Model name:\s*(.+)$", out, re.MULTILINE)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (empty when unavailable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    match = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
    return set(match.group(1).split()) if match else set()


def hardware() -> dict[str, Any]:
    """What a timing depends on: CPU model, cores, SIMD level, torch version, threads, GPU."""
    import torch

    flags = cpu_flags()
    simd = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "simd": simd,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "python": platform.python_version(),
    }


def load_average() -> list[float]:
    """The 1/5/15-minute load averages: how busy the (shared) machine was."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write `record` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    tmp.replace(path)


def read_json_dir(folder: Path) -> list[dict[str, Any]]:
    """Every ``*.json`` record in `folder` (sorted by name); unreadable files are skipped."""
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def replace_section(markdown: str, heading: str, body: str) -> str:
    """`markdown` with the ``## heading`` section (up to the next ``## ``) replaced by `body`.

    Other sections are kept as they are; a missing section is appended. `body` starts with the
    heading line itself.
    """
    lines = markdown.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == heading), None)
    block = body.rstrip("\n") + "\n"
    if start is None:
        sep = "" if not markdown or markdown.endswith("\n\n") else (
            "\n" if markdown.endswith("\n") else "\n\n")
        return markdown + sep + block
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    tail = lines[end:]
    return "".join(lines[:start]) + block + ("\n" if tail else "") + "".join(tail)
