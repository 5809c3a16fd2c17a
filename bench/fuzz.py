"""Fuzz the readers: mutated real DICOM/JPEG/PNG/NIfTI files and decompression bombs.

Every input goes through `medsight.io.decode_pool.DecodePool` (one worker, a time and memory
limit), one at a time, so each case is timed on its own and a decoder that kills its process
costs one input, not the run. Each input either decodes or is `UnreadableImage`; the outcome is
one of ``decoded``, ``unreadable`` (refused with a reason, in-process), ``crashed`` (the worker
died: abort, segfault), ``timed_out`` or ``out_of_memory``. Case ``i`` is regenerated exactly
from ``(--seed, i)`` (`case`), so every crash can be replayed.

    .venv/bin/python bench/fuzz.py --run --inputs 10000 # -> bench/results/fuzz.json
    .venv/bin/python bench/fuzz.py --write              # JSON -> "## Fuzzing the readers"

Service mode (``--service``): the same cases uploaded over loopback HTTP to a real
``medsight serve`` (a subprocess serving a bundle made as bench/predict.py makes resnet18_28) by
several concurrent clients; after every group of inputs the server must still run and answer
/healthz. Recorded: inputs tried, HTTP status histogram (by mutation / bomb), every 5xx and
transport error with its case, server deaths, decode workers lost, peak RSS of the server
process (VmHWM) and of its fork server and decode workers (polled VmHWM), the server log's
tracebacks.

    .venv/bin/python bench/fuzz.py --service --run --write  # -> bench/results/fuzz_service.json
    .venv/bin/python bench/fuzz.py --service --quick --run  # a short run, for the tests
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import random
import struct
import sys
import textwrap
import time
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from PIL import Image as PILImage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_model, load_average, replace_section, write_json  # noqa: E402

from medsight.errors import UnreadableImage  # noqa: E402
from medsight.io import Image  # noqa: E402
from medsight.io.decode_pool import DecodePool  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULT = ROOT / "bench" / "results" / "fuzz.json"
MARKDOWN = ROOT / "BENCHMARKS.md"
HEADING = "## Fuzzing the readers"
SERVICE_RESULT = ROOT / "bench" / "results" / "fuzz_service.json"
SERVICE_HEADING = "## Fuzzing the service"
SERVICE_ARGS = ("--workers", "2", "--decode-timeout", "10", "--decode-memory-mb", "2048",
                "--rate-limit", "100000000")
"""The server's settings in service mode: the reader fuzz's time and memory limits per decode,
two decode workers, and no rate limit to speak of (it is per key, and one key sends everything)."""

SEEDS = (  # (path under shared/data, what it exercises)
    ("dicom/pydicom/CT_small.dcm", "DICOM explicit VR LE, CT"),
    ("dicom/pydicom/MR_small_implicit.dcm", "DICOM implicit VR"),
    ("dicom/pydicom/MR_small_bigendian.dcm", "DICOM explicit VR big endian"),
    ("dicom/pydicom/MR_small_RLE.dcm", "DICOM RLE"),
    ("dicom/pydicom/SC_rgb_rle_2frame.dcm", "DICOM RLE RGB, 2 frames"),
    ("dicom/pydicom/MR_small_jp2klossless.dcm", "DICOM JPEG 2000 lossless"),
    ("dicom/pydicom/JPEG2000.dcm", "DICOM JPEG 2000"),
    ("dicom/pydicom_data/emri_small_jpeg_2k_lossless.dcm", "DICOM JPEG 2000, 10 frames"),
    ("dicom/pydicom/SC_rgb_jpeg_dcmtk.dcm", "DICOM JPEG baseline YBR"),
    ("dicom/pydicom/JPGExtended.dcm", "DICOM JPEG extended 12-bit"),
    ("dicom/pydicom/MR_small_jpeg_ls_lossless.dcm", "DICOM JPEG-LS"),
    ("dicom/pydicom/image_dfl.dcm", "DICOM deflated"),
    ("dicom/pydicom/rtdose.dcm", "DICOM RTDOSE, 15 frames"),
    ("bccd/JPEGImages/BloodImage_00000.jpg", "JPEG photograph"),
    ("bccd/JPEGImages/BloodImage_00000.jpg#png", "PNG (the JPEG re-encoded, 64 px crop)"),
    ("nifti/standard.nii.gz", "NIfTI-1 gzip"),
    ("nifti/example_nifti2.nii.gz", "NIfTI-2 gzip, 4D"),
    ("nifti/anatomical.nii", "NIfTI-1 big endian"),
)
BOMB_EVERY = 10
"""One case in `BOMB_EVERY` is a decompression bomb (cycling through `bombs`), the rest mutations."""

_INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF)
_INTERESTING_INTS = (0, 1, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
_HEADER_BYTES = 4096


def seed_bytes(name: str, data_dir: Path = DATA) -> bytes:
    """The bytes of a seed file (``#png``: the image re-encoded as a 64 x 64 PNG crop)."""
    path, _, variant = name.partition("#")
    raw = (data_dir / path).read_bytes()
    if variant != "png":
        return raw
    out = io.BytesIO()
    PILImage.open(io.BytesIO(raw)).crop((200, 200, 264, 264)).save(out, format="PNG")
    return out.getvalue()


def mutate(data: bytes, rng: random.Random) -> bytes:
    """1-4 random edits: bytes and ints set to edge values, truncation, duplicated or cut chunks.

    Half of the positions fall in the first 4 kB, where headers and codestream markers live.
    Gzip seeds are mutated inside (inflated, edited, re-compressed) half of the time, so the
    readers see valid gzip around broken content.
    """
    if data[:2] == b"\x1f\x8b" and rng.random() < 0.5:
        return gzip.compress(mutate(gzip.decompress(data), rng), compresslevel=1, mtime=0)
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not out:
            break
        pos = rng.randrange(min(len(out), _HEADER_BYTES)) if rng.random() < 0.5 else rng.randrange(len(out))
        op = rng.choice(("byte", "byte", "int", "truncate", "duplicate", "cut"))
        if op == "byte":
            out[pos] = rng.choice(_INTERESTING) if rng.random() < 0.5 else rng.randrange(256)
        elif op == "int":
            size = rng.choice((2, 4))
            value = rng.choice(_INTERESTING_INTS) & ((1 << 8 * size) - 1)
            out[pos : pos + size] = value.to_bytes(size, rng.choice(("little", "big")))
        elif op == "truncate":
            del out[pos:]
        elif op == "duplicate":
            out[pos:pos] = out[pos : pos + rng.randint(1, 256)]
        else:
            del out[pos : pos + rng.randint(1, 256)]
    return bytes(out)


def _nifti_header(shape: tuple[int, ...], version: int = 1) -> bytes:
    klass = nib.Nifti1Header if version == 1 else nib.Nifti2Header
    header = klass()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    return header.binaryblock + bytes(4)


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(1 << 16)))
            + chunk(b"IEND", b""))


def _jpeg_declaring(data: bytes, size: int) -> bytes:
    out = bytearray(data)
    sof = out.find(b"\xff\xc0")
    struct.pack_into(">HH", out, sof + 5, size, size)  # height, width after length and precision
    return bytes(out)


def _dicom_declaring(data: bytes) -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 100000
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _zip_declaring(size: int) -> bytes:
    """A zip whose only member says it inflates to `size` bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train_images.npy", bytes(1 << 20))
    data = bytearray(buffer.getvalue())
    struct.pack_into("<I", data, data.rfind(b"PK\x01\x02") + 24, size)
    return bytes(data)


def _deflated_dicom_bomb(data: bytes, gigabytes: int) -> bytes:
    from medsight.io.dicom_deflate import _dataset_start

    engine = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = bytes(64 << 20)
    body = b"".join(engine.compress(block) for _ in range(gigabytes * 16)) + engine.flush()
    return data[: _dataset_start(data)] + body


def bombs(data_dir: Path = DATA, *, slow: bool = True) -> list[tuple[str, bytes]]:
    """(name, bytes) of decompression bombs and lying headers; ``slow=False`` leaves out the
    deflated-DICOM bomb, which takes seconds to refuse (it must be inflated to the limit)."""
    zeros_gz = gzip.compress(bytes(64 << 20), compresslevel=9)
    jpeg = (data_dir / "bccd/JPEGImages/BloodImage_00000.jpg").read_bytes()
    ct = (data_dir / "dicom/pydicom/CT_small.dcm").read_bytes()
    out = [
        ("nifti.gz of zeros declaring 2048^3", gzip.compress(_nifti_header((2048,) * 3)) + zeros_gz * 128),
        ("nifti-1 declaring 32767^4", _nifti_header((32767,) * 4)),
        ("nifti-2 declaring 2^40 x 2^20", _nifti_header((1 << 40, 1 << 20), version=2)),
        ("gzip of 8 GiB zeros (not NIfTI)", zeros_gz * 128),
        ("png declaring 100000^2", _png_declaring(100_000, 100_000)),
        ("jpeg declaring 65500^2", _jpeg_declaring(jpeg, 65500)),
        ("dicom declaring 65535^2 x 100000 frames", _dicom_declaring(ct)),
        ("zip member declaring 16 GiB", _zip_declaring(0xFFFFFFFF)),
    ]
    if slow:
        dfl = (data_dir / "dicom/pydicom/image_dfl.dcm").read_bytes()
        out.append(("deflated dicom inflating to 3 GiB", _deflated_dicom_bomb(dfl, 3)))
    return out


@dataclass
class Case:
    index: int
    kind: str  # "mutation" or "bomb"
    name: str  # the seed file, or the bomb
    data: bytes


def case(index: int, seed: int, seeds: list[tuple[str, bytes]], bomb_list: list[tuple[str, bytes]]) -> Case:
    """Input number `index` of the run with `seed`: a bomb every `BOMB_EVERY`, else a mutation."""
    if bomb_list and index % BOMB_EVERY == BOMB_EVERY - 1:
        name, data = bomb_list[(index // BOMB_EVERY) % len(bomb_list)]
        return Case(index, "bomb", name, data)
    rng = random.Random(seed * 1_000_003 + index)
    name, data = seeds[rng.randrange(len(seeds))]
    return Case(index, "mutation", name, mutate(data, rng))


def outcome(result: Any) -> str:
    """decoded / unreadable / crashed / timed_out / out_of_memory."""
    if isinstance(result, Image):
        return "decoded"
    assert isinstance(result, UnreadableImage), f"neither an Image nor UnreadableImage: {result!r}"
    reason = result.reason
    if reason.startswith(("decoder crashed", "decoder exited")):
        return "crashed"
    if reason.startswith("timed out"):
        return "timed_out"
    if "out of memory" in reason:
        return "out_of_memory"
    return "unreadable"


def _reason_kind(reason: str) -> str:
    """The reason up to its first colon or parenthesis: 'corrupt DICOM header', 'too large', ..."""
    for stop in (":", " ("):
        reason = reason.split(stop, 1)[0]
    return reason.strip()


def run(inputs: int, seed: int, timeout_s: float, memory_mb: int, slow_s: float,
        slow_bombs: bool = True) -> dict[str, Any]:
    """Fuzz `inputs` cases through a one-worker pool; the record BENCHMARKS.md is written from."""
    seeds = [(name, seed_bytes(name)) for name, _ in SEEDS]
    bomb_list = bombs(slow=slow_bombs)
    counts: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {"mutation": Counter(), "bomb": Counter()}
    reasons: Counter[str] = Counter()
    notable: list[dict[str, Any]] = []
    bomb_report: dict[str, dict[str, Any]] = {}
    panics = 0
    seconds: list[float] = []
    start = time.perf_counter()
    with DecodePool(workers=1, timeout_s=timeout_s, memory_mb=memory_mb, window=1) as pool:
        pool.result(pool.submit(seeds[0][1]))  # start the worker first: case 0 is timed alone
        for index in range(inputs):
            c = case(index, seed, seeds, bomb_list)
            t0 = time.perf_counter()
            result = pool.result(pool.submit(c.data))
            took = time.perf_counter() - t0
            seconds.append(took)
            kind = outcome(result)
            counts[kind] += 1
            by_kind[c.kind][kind] += 1
            if isinstance(result, UnreadableImage):
                reasons[_reason_kind(result.reason)] += 1
                panics += "decoder panicked" in result.reason
            if c.kind == "bomb":
                seen = bomb_report.setdefault(c.name, {"max_s": 0.0, "reason": result.reason})
                seen["max_s"] = round(max(seen["max_s"], took), 3)
            if kind not in ("decoded", "unreadable") or took > slow_s:
                notable.append({"case": index, "input": c.name, "kind": c.kind, "outcome": kind,
                                "seconds": round(took, 3), "bytes": len(c.data),
                                "reason": getattr(result, "reason", None)})
            if (index + 1) % 100 == 0:
                print(f"{index + 1}/{inputs} {dict(counts)}", flush=True)
        stats = pool.stats
    return {
        "protocol": {"inputs": inputs, "seed": seed, "timeout_s": timeout_s, "memory_mb": memory_mb,
                     "slow_s": slow_s, "bomb_every": BOMB_EVERY, "workers": 1,
                     "seeds": [{"file": n, "what": w} for n, w in SEEDS],
                     "bombs": [name for name, _ in bomb_list]},
        "counts": dict(counts),
        "by_kind": {k: dict(v) for k, v in by_kind.items()},
        "reasons": dict(reasons.most_common()),
        "panics_caught": panics,
        "bombs": bomb_report,
        "notable": notable,
        "seconds": {"total": round(time.perf_counter() - start, 1),
                    "median": round(float(np.median(seconds)), 4),
                    "p99": round(float(np.percentile(seconds, 99)), 3),
                    "max": round(max(seconds), 3)},
        "peak_worker_rss_mb": round(stats.peak_worker_rss_mb, 1),
        "machine": {"cpu": cpu_model(), "python": platform.python_version(), "load": load_average(),
                    "libraries": {p: metadata.version(p) for p in (
                        "pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg",
                        "pylibjpeg-rle", "nibabel", "pillow")}},
    }


def render(result: dict[str, Any]) -> str:
    """The "## Fuzzing the readers" section of BENCHMARKS.md."""
    p, c, s = result["protocol"], result["counts"], result["seconds"]
    n = p["inputs"]
    lines = [
        HEADING,
        "",
        f"{n} hostile inputs, one at a time through `DecodePool` (1 worker, {p['timeout_s']:g} s and "
        f"{p['memory_mb']} MB per input): mutations (1-4 edits: edge-value bytes and ints, "
        "truncation, duplicated or cut chunks, half in the first 4 kB; gzip seeds also mutated "
        f"inside) of {len(p['seeds'])} real files from `shared/data` (DICOM explicit/implicit/big "
        "endian, RLE, JPEG baseline/extended, JPEG-LS, JPEG 2000, deflate, multi-frame; a JPEG "
        "photograph and a PNG; NIfTI-1/2, gzip and plain), and one input in "
        f"{p['bomb_every']} a decompression bomb or lying header ({len(p['bombs'])} kinds: "
        + "; ".join(p["bombs"]) + f"). Seed {p['seed']}.",
        "",
        "| outcome | mutations | bombs | all |",
        "|---|---|---|---|",
    ]
    for kind in ("decoded", "unreadable", "crashed", "timed_out", "out_of_memory"):
        m, b = result["by_kind"]["mutation"].get(kind, 0), result["by_kind"]["bomb"].get(kind, 0)
        lines.append(f"| {kind} | {m} | {b} | {c.get(kind, 0)} |")
    lines += [
        "",
        f"Time per input: median {s['median'] * 1000:.0f} ms, p99 {s['p99']:.2f} s, max "
        f"{s['max']:.2f} s (including the pipe to the worker); total {s['total'] / 60:.1f} min. "
        f"Peak RSS of a worker: {result['peak_worker_rss_mb']:.0f} MB.",
        "",
        "Most common reasons for refusal: " + ", ".join(
            f"{k} ({v})" for k, v in sorted(result["reasons"].items(), key=lambda kv: -kv[1])[:8])
        + f". Rust decoder panics caught in-process and reported unreadable: {result['panics_caught']}.",
        "",
        "| bomb | refused as | slowest refusal s |",
        "|---|---|---|",
        *(f"| {name} | {textwrap.shorten(b['reason'], 90, placeholder=' …')} | {b['max_s']:.3f} |"
          for name, b in result["bombs"].items()),
        "",
    ]
    notable = result["notable"]
    if notable:
        lines += ["Crashes, timeouts, memory exhaustion and inputs slower than "
                  f"{p['slow_s']:g} s (replay: `case(i, seed)` in `bench/fuzz.py`):", "",
                  "| case | input | outcome | s | reason |", "|---|---|---|---|---|"]
        for e in notable[:20]:
            reason = (e["reason"] or "").replace("|", "/")[:90]
            lines.append(f"| {e['case']} | {e['input']} | {e['outcome']} | {e['seconds']:.2f} | {reason} |")
        if len(notable) > 20:
            lines.append(f"| ... | {len(notable) - 20} more in `bench/results/fuzz.json` | | | |")
        lines.append("")
    crashed = c.get("crashed", 0)
    lines += [
        f"**Verdict:** every one of the {n} inputs decoded or was reported unreadable with a reason; "
        + (f"{crashed} killed {'its' if crashed == 1 else 'their'} worker process (reported as crashed, "
           "the run went on)"
           if crashed else "none killed its worker")
        + ". In-process, `read_image` turns decoder panics (pylibjpeg-rle) and bombs into "
        "`UnreadableImage`; a decoder that aborts the interpreter can only be contained by the pool: "
        "python-gdcm, one of pydicom's plugins, throws uncaught C++ exceptions (`gdcm::Exception`, "
        "`std::string`) on some broken JPEG and JPEG 2000 codestreams.",
        "",
        f"CPU {result['machine']['cpu']}, load {result['machine']['load']}, run under `nice` on a shared "
        "2-core machine. Raw record: `bench/results/fuzz.json`. Rerun: `make bench-fuzz RUN=1` "
        "(`.venv/bin/python bench/fuzz.py --run --write`; `--inputs N` for longer runs).",
        "",
    ]
    return "\n".join(lines)


def write_section(result: dict[str, Any], path: Path = MARKDOWN) -> None:
    """Replace (or append) only this benchmark's section; re-read the file right before."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(replace_section(text, HEADING, render(result)))


# -- service mode ---------------------------------------------------------------------------------
_EXT = {"dcm": "upload.dcm", "jpg": "upload.jpg", "png": "upload.png", "nii": "upload.nii",
        "gz": "upload.nii.gz"}


def _upload_name(c: Case) -> str:
    """A plausible file name for the case (the service sniffs the content, never the name)."""
    if c.name.endswith("#png"):
        return "upload.png"
    return _EXT.get(c.name.rsplit(".", 1)[-1], "upload.bin")


class _PeakRss:
    """Polls VmHWM of the server process and of its descendants (fork server, decode workers)
    every `every_s` seconds on a thread; a worker killed between two polls is missed, so the
    worker figure is a lower bound (the main process's VmHWM is exact)."""

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        import threading

        self.pid, self.every_s = pid, every_s
        self.main_kb = self.child_kb = 0
        self.children_seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        from live_service import descendants, status_kb

        while not self._stop.is_set():
            self.poll(descendants, status_kb)
            self._stop.wait(self.every_s)

    def poll(self, descendants: Any, status_kb: Any) -> None:
        self.main_kb = max(self.main_kb, status_kb(self.pid, "VmHWM"))
        for child in descendants(self.pid):
            self.children_seen.add(child)
            self.child_kb = max(self.child_kb, status_kb(child, "VmHWM"))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def service_bundle(tmp: Path) -> Path:
    """The bundle the service serves: bench/predict.py's resnet18_28 (one epoch, 24 images)."""
    from predict import make_bundle

    return make_bundle("resnet18_28", 28, tmp)


def run_service(inputs: int, seed: int, clients: int = 4, group: int = 50, slow_bombs: bool = True,
                bundle: Path | None = None, server_args: tuple[str, ...] = SERVICE_ARGS,
                slow_s: float = 5.0) -> dict[str, Any]:
    """Upload `inputs` cases over HTTP with `clients` concurrent clients, `group` at a time, the
    server checked alive (process running, /healthz 200) after every group."""
    import tempfile
    from concurrent.futures import ThreadPoolExecutor
    from threading import local

    import httpx
    from live_service import descendants, start_service, status_kb

    seeds = [(name, seed_bytes(name)) for name, _ in SEEDS]
    bomb_list = bombs(slow=slow_bombs)
    statuses: dict[str, Counter[str]] = {"mutation": Counter(), "bomb": Counter()}
    details: Counter[str] = Counter()
    server_errors: list[dict[str, Any]] = []
    slow: list[dict[str, Any]] = []
    bomb_report: dict[str, dict[str, Any]] = {}
    seconds: list[float] = []
    health_checks, deaths = 0, 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medsight_fuzz_service_") as tmp_name:
        tmp = Path(tmp_name)
        bundle = bundle or service_bundle(tmp)
        svc = start_service([bundle], tmp / "data", *server_args)
        rss = _PeakRss(svc.proc.pid)
        here = local()

        def client() -> httpx.Client:
            if not hasattr(here, "http"):
                here.http = httpx.Client(base_url=svc.url, headers=svc.auth("clinician"), timeout=120)
            return here.http

        def upload(index: int) -> tuple[Case, int, str, float]:
            c = case(index, seed, seeds, bomb_list)
            t0 = time.perf_counter()
            try:
                r = client().post("/v1/predictions", files={"file": (_upload_name(c), c.data)})
                code, detail = r.status_code, _detail(r)
            except httpx.HTTPError as exc:
                code, detail = 0, f"{type(exc).__name__}: {exc}"
            return c, code, detail, time.perf_counter() - t0

        try:
            with ThreadPoolExecutor(clients) as ex:
                for first in range(0, inputs, group):
                    for c, code, detail, took in ex.map(upload, range(first, min(inputs, first + group))):
                        seconds.append(took)
                        statuses[c.kind][str(code)] += 1
                        if code != 201:
                            details[_reason_kind(detail)[:80]] += 1
                        if code >= 500 or code == 0:
                            server_errors.append({"case": c.index, "input": c.name, "kind": c.kind,
                                                  "status": code, "bytes": len(c.data),
                                                  "detail": detail[:300]})
                        if c.kind == "bomb":
                            seen = bomb_report.setdefault(c.name, {"max_s": 0.0, "status": code,
                                                                   "detail": detail})
                            seen["max_s"] = round(max(seen["max_s"], took), 3)
                        if took > slow_s:
                            slow.append({"case": c.index, "input": c.name, "kind": c.kind,
                                         "status": code, "seconds": round(took, 3), "detail": detail[:200]})
                    health_checks += 1
                    if not svc.alive():
                        deaths += 1
                        print(f"server died after input {min(inputs, first + group)}", flush=True)
                        break
                    done = min(inputs, first + group)
                    if done % max(group, 200) < group:
                        total = statuses["mutation"] + statuses["bomb"]
                        print(f"{done}/{inputs} {dict(total)}", flush=True)
            alive = svc.alive()
            metrics = svc.metrics() if alive else {}
            rss.poll(descendants, status_kb)
        finally:
            rss.stop()
            svc.stop()
        log = svc.log_text()
    tried = sum(sum(v.values()) for v in statuses.values())
    every = statuses["mutation"] + statuses["bomb"]
    return {
        "protocol": {"inputs": inputs, "tried": tried, "seed": seed, "clients": clients, "group": group,
                     "bomb_every": BOMB_EVERY, "server_args": list(server_args), "slow_s": slow_s,
                     "seeds": [{"file": n, "what": w} for n, w in SEEDS],
                     "bombs": [name for name, _ in bomb_list]},
        "statuses": {k: dict(sorted(v.items())) for k, v in statuses.items()},
        "status_all": dict(sorted(every.items())),
        "server_5xx": sum(n for code, n in every.items() if code.startswith("5")),
        "transport_errors": every.get("0", 0),
        "server_errors": server_errors[:50],
        "server_deaths": deaths,
        "health_checks": health_checks,
        "alive_at_end": alive,
        "decode_workers_lost": metrics.get("medsight_decode_workers_lost"),
        "details": dict(details.most_common(15)),
        "bombs": bomb_report,
        "slow": slow[:50],
        "peak_server_rss_mb": round(rss.main_kb / 1024, 1),
        "peak_worker_rss_mb": round(rss.child_kb / 1024, 1),
        "child_processes_seen": len(rss.children_seen),
        "log_tracebacks": log.count("Traceback (most recent call last)"),
        "log_errors": sum(" ERROR " in line for line in log.splitlines()),
        "seconds": {"total": round(time.perf_counter() - start, 1),
                    "median": round(float(np.median(seconds)), 4) if seconds else None,
                    "p99": round(float(np.percentile(seconds, 99)), 3) if seconds else None,
                    "max": round(max(seconds), 3) if seconds else None},
        "machine": {"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)),
                    "python": platform.python_version(), "load": load_average(),
                    "libraries": {p: metadata.version(p) for p in (
                        "fastapi", "uvicorn", "httpx", "pydicom", "nibabel", "pillow")}},
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _detail(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    return str(body.get("detail", "")) if isinstance(body, dict) else str(body)[:300]


def render_service(result: dict[str, Any]) -> str:
    """The "## Fuzzing the service" section of BENCHMARKS.md."""
    p, s = result["protocol"], result["seconds"]
    codes = sorted(set(result["statuses"]["mutation"]) | set(result["statuses"]["bomb"]), key=int)
    m = result["machine"]
    lines = [
        SERVICE_HEADING,
        "",
        f"`bench/fuzz.py --service` ({result['when']}): {p['tried']} hostile uploads (of {p['inputs']} "
        f"planned; the cases of `## Fuzzing the readers`, seed {p['seed']}: mutations of the same "
        f"{len(p['seeds'])} real files and, one input in {p['bomb_every']}, one of {len(p['bombs'])} "
        "bombs or lying headers) sent as POST /v1/predictions over loopback HTTP by "
        f"{p['clients']} concurrent clients to a real `medsight serve "
        + " ".join(p["server_args"]) + "` (bench/predict.py's resnet18_28 bundle); after every "
        f"{p['group']} inputs the process must still run and /healthz answer.",
        "",
        "| HTTP status | mutations | bombs | all |",
        "|---|---|---|---|",
    ]
    for code in codes:
        mu, b = result["statuses"]["mutation"].get(code, 0), result["statuses"]["bomb"].get(code, 0)
        label = "transport error" if code == "0" else code
        lines.append(f"| {label} | {mu} | {b} | {mu + b} |")
    lines += [
        "",
        f"Server deaths: **{result['server_deaths']}** ({result['health_checks']} health checks, alive "
        f"at the end: {'yes' if result['alive_at_end'] else 'no'}); 5xx answers: "
        f"**{result['server_5xx']}**; transport errors: {result['transport_errors']}; decode workers "
        f"lost (crashed or timed out, replaced): {result['decode_workers_lost']:g}; tracebacks in the "
        f"server log: {result['log_tracebacks']}."
        if result["decode_workers_lost"] is not None else
        f"Server deaths: **{result['server_deaths']}**; 5xx answers: **{result['server_5xx']}**; "
        f"transport errors: {result['transport_errors']}; the server's metrics could not be read at the end.",
        "",
        f"Peak memory: server process {result['peak_server_rss_mb']:.0f} MB (VmHWM); fork server and "
        f"decode workers, largest seen {result['peak_worker_rss_mb']:.0f} MB (VmHWM polled every 0.2 s "
        f"over {result['child_processes_seen']} processes; a worker killed between polls is missed). "
        f"Time per upload: median {s['median'] * 1000:.0f} ms, p99 {s['p99']:.2f} s, max {s['max']:.2f} s; "
        f"total {s['total'] / 60:.1f} min.",
        "",
        "Most common refusals (the answer's `detail` up to its first colon): " + ", ".join(
            f"{k} ({v})" for k, v in sorted(result["details"].items(), key=lambda kv: -kv[1])) + ".",
        "",
        "| bomb | status | answer | slowest s |",
        "|---|---|---|---|",
        *(f"| {name} | {b['status']} | {textwrap.shorten(b['detail'], 90, placeholder=' …')} | "
          f"{b['max_s']:.2f} |" for name, b in result["bombs"].items()),
        "",
    ]
    if result["server_errors"]:
        lines += ["5xx answers and transport errors (replay: `case(i, seed)` in `bench/fuzz.py`):", "",
                  "| case | input | status | detail |", "|---|---|---|---|"]
        for e in result["server_errors"][:20]:
            lines.append(f"| {e['case']} | {e['input']} | {e['status']} | "
                         f"{textwrap.shorten(e['detail'].replace('|', '/'), 90, placeholder=' …')} |")
        lines.append("")
    ok = result["server_deaths"] == 0 and result["server_5xx"] == 0 and result["transport_errors"] == 0
    lines += [
        "**Verdict:** " + ("every upload was answered 201 or a 4xx with a reason; the server never died "
                           "and answered no 5xx." if ok else
                           f"{result['server_deaths']} server deaths, {result['server_5xx']} 5xx answers "
                           f"and {result['transport_errors']} transport errors: see the table above."),
        "",
        f"CPU {m['cpu']}, {m['cores']} cores, load {m['load']}, shared machine. Raw record: "
        "`bench/results/fuzz_service.json`. Rerun: `make bench-fuzz-service RUN=1` "
        "(`.venv/bin/python bench/fuzz.py --service --run --write`; `--inputs N`).",
        "",
    ]
    return "\n".join(lines)


def write_service_section(result: dict[str, Any], path: Path = MARKDOWN) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(replace_section(text, SERVICE_HEADING, render_service(result)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true", help="fuzz and save the JSON record")
    ap.add_argument("--write", action="store_true", help="render the JSON into BENCHMARKS.md")
    ap.add_argument("--service", action="store_true",
                    help="upload the cases to a real `medsight serve` over HTTP")
    ap.add_argument("--inputs", type=int, default=None,
                    help="cases (default 10000; with --service 20000, --quick 40)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per input")
    ap.add_argument("--memory-mb", type=int, default=2048, help="address-space limit of the worker")
    ap.add_argument("--slow", type=float, default=1.0, help="report inputs slower than this (s)")
    ap.add_argument("--clients", type=int, default=4, help="--service: concurrent clients")
    ap.add_argument("--group", type=int, default=50,
                    help="--service: inputs between two checks that the server is alive")
    ap.add_argument("--quick", action="store_true",
                    help="--service: a short run (40 inputs, no slow deflate bomb)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if not (args.run or args.write):
        ap.error("give --run and/or --write")
    out = args.out or (SERVICE_RESULT if args.service else RESULT)
    inputs = args.inputs or (40 if args.quick else 20000 if args.service else 10000)
    if args.run:
        if not DATA.is_dir():
            ap.error(f"shared data not found at {DATA}")
        os.environ["RUST_BACKTRACE"] = "0"  # a decoder panic prints one line, not a backtrace
        os.environ["PYTHONWARNINGS"] = "ignore"  # the workers' pydicom warnings on broken files
        if args.service:
            result = run_service(inputs, args.seed, clients=args.clients, group=args.group,
                                 slow_bombs=not args.quick)
            keys = ("status_all", "server_deaths", "server_5xx", "decode_workers_lost",
                    "peak_server_rss_mb", "peak_worker_rss_mb", "seconds")
        else:
            result = run(inputs, args.seed, args.timeout, args.memory_mb, args.slow)
            keys = ("counts", "seconds", "peak_worker_rss_mb")
        if not args.quick:
            write_json(out, result)
        print(json.dumps({k: result[k] for k in keys}))
    if args.write:
        saved = json.loads(out.read_text())
        if args.service:
            write_service_section(saved)
        else:
            write_section(saved)
        print(f"wrote {SERVICE_HEADING if args.service else HEADING!r} in {MARKDOWN}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
