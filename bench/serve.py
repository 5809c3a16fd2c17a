"""Service throughput and latency: `medsight serve` over loopback HTTP with 1, 4 and 16 concurrent
single-image clients, side by side in one run with the bare `Predictor` and bare ONNX Runtime.

For each model (``resnet18_28`` at 28 px, torchvision ``resnet18`` at 224 px; bundles made as
bench/predict.py makes them: one epoch on 24 BreastMNIST images, weights as good as random, which
is all a speed figure needs), in this order:

1. bare ORT: an ``onnxruntime.InferenceSession`` on the bundle's graph with the runtime's session
   options, ``session.run`` at batch 32 on already prepared tensors (images/s, median of rounds);
2. bare Predictor: ``Predictor.predict(image)`` on one already decoded image at a time (latency);
3. the service: ``medsight serve`` (a subprocess) with ``--max-batch 32 --max-wait-ms 5``, for
   each concurrency level N, N client threads, each with its own keep-alive ``httpx.Client``,
   POST /v1/predictions one real image at a time (BreastMNIST test PNGs at 28 px; BCCD blood-smear
   JPEGs, made grayscale and resized to 224 x 224, at 224 px; every upload made a distinct file
   by a numbered PNG text chunk / JPEG comment, same pixels) for a fixed time after a warm-up;
   latency percentiles over every request, throughput = 201 answers / time; then, as a
   diagnostic outside the targets, one client against a server started with ``--max-wait-ms 0``
   (what the batcher's wait for company costs a request that has none);
4. bare ORT again (the target uses the faster of its two measurements, the stricter comparison).

On a 2-core machine the clients themselves cost CPU (the multipart framing is built once, so what
is left is httpx and the sockets). By default the server (and its decode workers, which inherit the
affinity) is pinned to all cores but the first and the clients to the first; the bare measurements
run on the server's cores, so the service is compared with ORT on the same CPU. The CPU time the
server and the clients used per level is recorded, so a client-bound level can be seen.

    .venv/bin/python bench/serve.py --write          # measure (<= 10 min), JSON + BENCHMARKS.md
    .venv/bin/python bench/serve.py --write --no-run # re-render from bench/results/serve.json
    .venv/bin/python bench/serve.py --quick          # a short run, printed, nothing saved
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import platform
import resource
import statistics
import struct
import sys
import tempfile
import threading
import time
import zlib
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, cpu_flags, cpu_model, load_average, replace_section, write_json  # noqa: E402
from live_service import LiveService, cpu_seconds, start_service  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
RESULT = ROOT / "bench" / "results" / "serve.json"
MARKDOWN = ROOT / "BENCHMARKS.md"
HEADING = "## Service throughput and latency"
MODELS = {"resnet18_28": 28, "resnet18": 224}
LEVELS = (1, 4, 16)
BATCH = 32
THROUGHPUT_TARGET = 0.90  # service at 16 clients / bare ORT at batch 32
LATENCY_TARGET = 1.15  # service p50 at 1 client / bare Predictor p50
SERVER_ARGS = ("--workers", "2", "--max-batch", str(BATCH), "--max-wait-ms", "5",
               "--rate-limit", "100000000", "--queue-size", "256")
"""The server's settings: the defaults of `medsight serve` except the rate limit, which is per
key and would answer this load 429 (600 a minute by default)."""


# -- inputs ---------------------------------------------------------------------------------------
def upload_images(size: int, n: int, data_dir: Path = DATA) -> list[tuple[str, bytes]]:
    """`n` real images as uploaded files (name, bytes): BreastMNIST test PNGs at 28 px, else
    BCCD JPEGs made grayscale and resized to `size` x `size` (JPEG, quality 90)."""
    from PIL import Image as PILImage

    out = []
    if size <= 28:
        from medsight.data.open import open_source

        split = open_source(str(data_dir / "medmnist" / "breastmnist.npz")).split("test")
        for i in range(n):
            buf = io.BytesIO()
            PILImage.fromarray(split.image(i).pixels[0].astype(np.uint8)).save(buf, format="PNG")
            out.append((f"breast_{i:03d}.png", buf.getvalue()))
        return out
    jpegs = sorted((data_dir / "bccd" / "JPEGImages").glob("*.jpg"))[:n]
    for path in jpegs:
        with PILImage.open(path) as im:
            small = im.convert("L").resize((size, size), PILImage.Resampling.BILINEAR)
        buf = io.BytesIO()
        small.save(buf, format="JPEG", quality=90)
        out.append((path.stem + f"_{size}.jpg", buf.getvalue()))
    return out


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with one `file` part, and its content type."""
    head, tail, ctype = multipart_parts(name)
    return head + data + tail, ctype


def multipart_parts(name: str) -> tuple[bytes, bytes, str]:
    """(head, tail, content type) of a one-file multipart body: built once, so per request the
    clients only join bytes."""
    boundary = "medsightbench" + os.urandom(8).hex()
    mime = "image/png" if name.endswith(".png") else "image/jpeg"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: {mime}\r\n\r\n").encode()
    return head, f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def tagged(data: bytes, seq: int) -> bytes:
    """`data` (a PNG or a JPEG) made a distinct file with the same pixels: a PNG tEXt chunk or
    a JPEG comment holding `seq`. Each request then uploads a file the service has not seen, as
    in a clinic, instead of the 64 images again and again (duplicates are looked up and linked)."""
    text = b"bench\x00%d" % seq
    if data.startswith(b"\x89PNG"):
        chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
        return data[:33] + chunk + data[33:]  # after the signature and IHDR
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + data[2:]  # after SOI


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=float)
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "n": int(a.size)}


# -- 1 and 2: bare ORT and bare Predictor -----------------------------------------------------------
def _decoded(uploads: list[tuple[str, bytes]]) -> list[Any]:
    from medsight.io import read_image

    return [read_image(data) for _, data in uploads]


def bare_ort(bundle: Path, uploads: list[tuple[str, bytes]], batch: int = BATCH, rounds: int = 5,
             min_images: int = 256) -> dict[str, Any]:
    """Images/s of ``session.run`` at `batch` on the prepared tensors of `uploads` (repeated to
    at least `min_images`); median over `rounds`."""
    import onnxruntime as ort

    from medsight.deploy.bundle_archive import read_bundle
    from medsight.deploy.predictor import Predictor
    from medsight.deploy.runtime import session_options

    predictor = Predictor(bundle, batch_size=batch)
    spec = predictor.bundle.manifest["runtime"]
    opts = session_options()
    session = ort.InferenceSession(read_bundle(bundle)[spec["graph"]], opts,
                                   providers=["CPUExecutionProvider"])
    tensors = [predictor.plan.prepare("bench", im).tensor.pixels for im in _decoded(uploads)]
    reps = max(1, -(-min_images // len(tensors)))
    x = np.stack((tensors * reps)[:max(min_images, batch)]).astype(np.float32)
    x = x[: len(x) // batch * batch]
    feed, out = spec["input_name"], [spec["probabilities_output"]]
    session.run(out, {feed: x[:batch]})  # warm-up
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for s in range(0, len(x), batch):
            session.run(out, {feed: x[s:s + batch]})
        rates.append(len(x) / (time.perf_counter() - t0))
    return {"batch": batch, "images": len(x), "rounds": rounds, "images_per_s": statistics.median(rates),
            "rounds_images_per_s": rates, "intra_op_threads": opts.intra_op_num_threads}


def bare_predictor(bundle: Path, uploads: list[tuple[str, bytes]], calls: int = 200) -> dict[str, Any]:
    """Latency of ``Predictor.predict(image)`` on one decoded image at a time (`calls` calls,
    cycling through `uploads`, after a warm-up)."""
    from medsight.deploy.predictor import Predictor

    predictor = Predictor(bundle, batch_size=BATCH)
    images = _decoded(uploads)
    for im in images[:4]:
        predictor.predict(im)
    ms = []
    for i in range(calls):
        t0 = time.perf_counter()
        predictor.predict(images[i % len(images)])
        ms.append((time.perf_counter() - t0) * 1e3)
    return percentiles(ms)


# -- 3: the service -------------------------------------------------------------------------------
def load_level(svc: LiveService, uploads: list[tuple[str, bytes]], clients: int, seconds: float,
               warmup_s: float = 1.0, first_seq: int = 0) -> dict[str, Any]:
    """`clients` threads POST /v1/predictions back to back for `warmup_s` + `seconds`, each
    upload a distinct file (`tagged` with a sequence number from `first_seq`); latencies and
    statuses of the requests started after the warm-up. The warm-up starts once every client has
    had one answer (a fresh decode worker's first upload can take longer than a short warm-up)."""
    parts = [(multipart_parts(name), data) for name, data in uploads]
    seq = itertools.count(first_seq)
    import httpx

    stop_at: list[float] = [float("inf")]
    measure_from: list[float] = [float("inf")]
    results: list[list[tuple[float, int]]] = [[] for _ in range(clients)]
    errors: list[str] = []
    ready = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        with httpx.Client(base_url=svc.url, headers=svc.auth("clinician"), timeout=120) as http:
            (head, tail, ctype), data = parts[k % len(parts)]
            try:  # one unmeasured answer first
                http.post("/v1/predictions", content=head + tagged(data, next(seq)) + tail,
                          headers={"Content-Type": ctype})
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            ready.wait()
            i = k + clients
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at[0]:
                    return
                (head, tail, ctype), data = parts[i % len(parts)]
                i += clients
                body = head + tagged(data, next(seq)) + tail
                try:
                    r = http.post("/v1/predictions", content=body, headers={"Content-Type": ctype})
                    code = r.status_code
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    code = 0
                if t0 >= measure_from[0]:
                    results[k].append(((time.perf_counter() - t0) * 1e3, code))

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    before = svc.metrics()
    now = time.perf_counter()
    measure_from[0], stop_at[0] = now + warmup_s, now + warmup_s + seconds
    time.sleep(max(0.0, measure_from[0] - time.perf_counter()))
    server_cpu0, client_cpu0 = cpu_seconds(svc.proc.pid), _own_cpu()
    wall0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall0  # to the end of the last request (each ends after stop_at)
    server_cpu, client_cpu = cpu_seconds(svc.proc.pid) - server_cpu0, _own_cpu() - client_cpu0
    after = svc.metrics()
    rows = [r for per in results for r in per]
    ok = [ms for ms, code in rows if code == 201]
    statuses: dict[str, int] = {}
    for _, code in rows:
        statuses[str(code)] = statuses.get(str(code), 0) + 1
    batches = after.get("medsight_batch_size_count", 0) - before.get("medsight_batch_size_count", 0)
    items = after.get("medsight_batch_size_sum", 0) - before.get("medsight_batch_size_sum", 0)
    return {"clients": clients, "seconds": wall, "requests": len(rows), "statuses": statuses,
            "next_seq": next(seq),
            "errors": errors[:5], **(percentiles(ok) if ok else {"n": 0}),
            "images_per_s": len(ok) / wall if wall > 0 else 0.0,
            "mean_batch": items / batches if batches else None,
            "server_cpu_cores": server_cpu / wall if wall > 0 else None,
            "client_cpu_cores": client_cpu / wall if wall > 0 else None}


def _own_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# -- one model, the whole run -----------------------------------------------------------------------
def cpu_split(cores: list[int], pin: bool) -> tuple[list[int] | None, list[int] | None]:
    """(server cores, client cores): the first core for the clients (they use a fraction of it),
    the others for the server; nothing pinned on one core or when `pin` is off."""
    if not pin or len(cores) < 2:
        return None, None
    return cores[1:], cores[:1]


def serve_levels(bundle: Path, data_dir: Path, uploads: list[tuple[str, bytes]], levels: tuple[int, ...],
                 seconds: float, warmup_s: float, server_args: tuple[str, ...],
                 server_cpus: list[int] | None, client_cpus: list[int] | None, label: str
                 ) -> tuple[list[dict[str, Any]], bool]:
    """A fresh `medsight serve` (on `server_cpus`) loaded at each level by clients on
    `client_cpus`: the rows, and whether the server was still alive at the end."""
    every = sorted(os.sched_getaffinity(0))
    svc = start_service([bundle], data_dir, *server_args, cpus=server_cpus)
    rows = []
    try:
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)
        seq = 0
        for n in levels:
            row = load_level(svc, uploads, n, seconds, warmup_s, first_seq=seq)
            seq = row["next_seq"]
            print(f"{label} {n} clients: {row['images_per_s']:.1f} img/s, p50 {row.get('p50_ms', 0):.2f} "
                  f"p95 {row.get('p95_ms', 0):.2f} p99 {row.get('p99_ms', 0):.2f} ms, mean batch "
                  f"{row['mean_batch'] or 0:.1f}, statuses {row['statuses']}, server CPU "
                  f"{row['server_cpu_cores']:.2f} cores, clients {row['client_cpu_cores']:.2f}", flush=True)
            rows.append(row)
        alive = svc.alive()
    finally:
        os.sched_setaffinity(0, every)
        svc.stop()
    return rows, alive


def without_wait(server_args: tuple[str, ...]) -> tuple[str, ...]:
    """`server_args` with ``--max-wait-ms 0`` (a batch runs as soon as the batcher has one item)."""
    args = list(server_args)
    if "--max-wait-ms" in args:
        args[args.index("--max-wait-ms") + 1] = "0"
    else:
        args += ["--max-wait-ms", "0"]
    return tuple(args)


def measure_model(name: str, bundle: Path, size: int, tmp: Path, *, seconds: float, warmup_s: float,
                  calls: int, rounds: int, levels: tuple[int, ...] = LEVELS, pin: bool = True,
                  n_images: int = 64, server_args: tuple[str, ...] = SERVER_ARGS,
                  no_wait_probe: bool = True) -> dict[str, Any]:
    """Bare ORT, bare Predictor, the service at each level, bare ORT again: one model's row.
    `no_wait_probe`: also one client against a server with ``--max-wait-ms 0`` (a diagnostic:
    what the batcher's wait costs a lone request)."""
    every = sorted(os.sched_getaffinity(0))
    server_cpus, client_cpus = cpu_split(every, pin)
    uploads = upload_images(size, n_images)

    def on_server_cpus(f: Any, *args: Any, **kw: Any) -> Any:
        if server_cpus:
            os.sched_setaffinity(0, server_cpus)
        try:
            return f(*args, **kw)
        finally:
            os.sched_setaffinity(0, every)

    ort_before = on_server_cpus(bare_ort, bundle, uploads, rounds=rounds)
    predictor = on_server_cpus(bare_predictor, bundle, uploads, calls=calls)
    print(f"{name}: bare ORT batch {BATCH} {ort_before['images_per_s']:.1f} img/s; bare Predictor p50 "
          f"{predictor['p50_ms']:.2f} ms", flush=True)
    service_rows, alive = serve_levels(bundle, tmp / f"data_{name}", uploads, levels, seconds, warmup_s,
                                       server_args, server_cpus, client_cpus, name)
    probe: list[dict[str, Any]] = []
    if no_wait_probe:
        probe, alive_too = serve_levels(bundle, tmp / f"data_{name}_nowait", uploads, (1,), seconds,
                                        warmup_s, without_wait(server_args), server_cpus, client_cpus,
                                        f"{name} --max-wait-ms 0")
        alive = alive and alive_too
    ort_after = on_server_cpus(bare_ort, bundle, uploads, rounds=rounds)
    print(f"{name}: bare ORT again {ort_after['images_per_s']:.1f} img/s", flush=True)
    sizes = [len(d) for _, d in uploads]
    return {"model": name, "size": size,
            "uploads": {"count": len(uploads), "bytes_mean": float(np.mean(sizes)),
                        "kind": "png" if size <= 28 else "jpeg"},
            "bare_ort_before": ort_before, "bare_ort_after": ort_after,
            "bare_ort_images_per_s": max(ort_before["images_per_s"], ort_after["images_per_s"]),
            "bare_predictor": predictor, "service": service_rows, "service_no_wait": probe,
            "server_alive_after": alive, "server_cpus": server_cpus, "client_cpus": client_cpus}


def verdicts(row: dict[str, Any]) -> dict[str, Any]:
    """Throughput at the most clients vs bare ORT, p50 at one client vs the bare Predictor."""
    by = {r["clients"]: r for r in row["service"]}
    out: dict[str, Any] = {}
    most = max(by, default=0)
    if most and by[most].get("n"):
        ratio = by[most]["images_per_s"] / row["bare_ort_images_per_s"]
        out["throughput"] = {"clients": most, "ratio": ratio, "met": ratio >= THROUGHPUT_TARGET}
    if 1 in by and by[1].get("n"):
        ratio = by[1]["p50_ms"] / row["bare_predictor"]["p50_ms"]
        out["latency"] = {"ratio": ratio, "met": ratio <= LATENCY_TARGET}
    return out


def machine() -> dict[str, Any]:
    flags = cpu_flags()
    return {"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)),
            "flags": [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
                      if f in flags],
            "python": platform.python_version(),
            "versions": {p: metadata.version(p) for p in ("onnxruntime", "fastapi", "uvicorn",
                                                          "starlette", "httpx", "numpy")}}


def run(models: list[str], *, seconds: float, warmup_s: float, calls: int, rounds: int,
        pin: bool = True, levels: tuple[int, ...] = LEVELS) -> dict[str, Any]:
    from predict import make_bundle  # bench/predict.py: the same tiny runs

    load_before = load_average()
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="medsight_bench_serve_") as tmp_name:
        tmp = Path(tmp_name)
        for name in models:
            print(f"bundling {name} at {MODELS[name]} px", flush=True)
            bundle = make_bundle(name, MODELS[name], tmp)
            row = measure_model(name, bundle, MODELS[name], tmp, seconds=seconds, warmup_s=warmup_s,
                                calls=calls, rounds=rounds, levels=levels, pin=pin)
            row["verdicts"] = verdicts(row)
            rows.append(row)
    return {"models": rows, "machine": machine(), "server_args": list(SERVER_ARGS),
            "protocol": {"seconds_per_level": seconds, "warmup_s": warmup_s, "predictor_calls": calls,
                         "ort_rounds": rounds, "levels": list(levels), "pinned": pin},
            "load_before": load_before, "load_after": load_average(),
            "wall_s": time.perf_counter() - t0,
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


# -- report -----------------------------------------------------------------------------------------
def _cores(c: list[int] | None) -> str:
    return "any core" if not c else "core " + ",".join(map(str, c))


def render(result: dict[str, Any]) -> str:
    m, p = result["machine"], result["protocol"]
    first = result["models"][0] if result["models"] else {}
    pin = (f"server (and its decode workers) pinned to {_cores(first.get('server_cpus'))}, clients to "
           f"{_cores(first.get('client_cpus'))}, bare runs on the server's core"
           if first.get("server_cpus") else "nothing pinned")
    lines = [HEADING, "",
             f"`bench/serve.py` ({result['when']}; CPU {m['cpu']}, {m['cores']} cores, flags "
             f"{', '.join(m['flags']) or 'none of AVX2/AVX-512/bf16'}; Python {m['python']}, "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
             + f"; load average before/after {result['load_before']} / {result['load_after']}). "
             "Rerun: `make bench-serve RUN=1`.", "",
             f"Loopback HTTP, single-image POST /v1/predictions, N client threads each with a "
             f"keep-alive httpx client, {p['seconds_per_level']:g} s per level after "
             f"{p['warmup_s']:g} s of warm-up, every upload a distinct file (a numbered PNG text chunk "
             f"or JPEG comment on {first.get('uploads', {}).get('count', 64)} real images); {pin}. "
             "Server: `medsight serve "
             + " ".join(result["server_args"]) + "`. Bundles: one epoch on 24 BreastMNIST images "
             "(as bench/predict.py). Bare ORT: `session.run` at batch 32 on prepared tensors, before "
             "and after the service levels (the faster is the reference). Bare Predictor: "
             f"`Predictor.predict` on one decoded image, {p['predictor_calls']} calls. The "
             "`--max-wait-ms 0` row is a second server measured the same way (not used for the targets). "
             "CPU columns: "
             "cores' worth of CPU the server process tree and the client threads used.", "",
             "| model | input | run | images/s | p50 ms | p95 ms | p99 ms | mean batch | server CPU "
             "| client CPU | statuses |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["models"]:
        inp = f"{row['size']} px {row['uploads']['kind'].upper()}"
        bp = row["bare_predictor"]
        before, after = row["bare_ort_before"]["images_per_s"], row["bare_ort_after"]["images_per_s"]
        lines.append(f"| {row['model']} | {inp} | bare ORT, batch {BATCH} (before / after) | "
                     f"{before:.1f} / {after:.1f} | | | | | | | |")
        lines.append(f"| {row['model']} | {inp} | bare Predictor, 1 image | {1e3 / bp['mean_ms']:.1f} | "
                     f"{bp['p50_ms']:.2f} | {bp['p95_ms']:.2f} | {bp['p99_ms']:.2f} | 1 | | | |")
        probe = [(r, " (`--max-wait-ms 0`, diagnostic)") for r in row.get("service_no_wait") or []]
        for r, extra in [(r, "") for r in row["service"]] + probe:
            st = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
            who = f"{r['clients']} client{'s' if r['clients'] > 1 else ''}{extra}"
            nan = float("nan")
            lines.append(
                f"| {row['model']} | {inp} | service, {who} | {r['images_per_s']:.1f} | "
                f"{r.get('p50_ms', nan):.2f} | {r.get('p95_ms', nan):.2f} | {r.get('p99_ms', nan):.2f} | "
                f"{r['mean_batch'] or 0:.1f} | {r['server_cpu_cores']:.2f} | {r['client_cpu_cores']:.2f} "
                f"| {st} |")
    lines += ["", "Targets (from the numbers above, pass or fail as measured):", ""]
    for row in result["models"]:
        v = row.get("verdicts") or verdicts(row)
        parts = []
        if "throughput" in v:
            t = v["throughput"]
            parts.append(f"throughput at {t['clients']} clients = {t['ratio']:.2f} x bare ORT at batch "
                         f"{BATCH} (target >= {THROUGHPUT_TARGET:.2f}): "
                         f"**{'met' if t['met'] else 'missed'}**")
        if "latency" in v:
            t = v["latency"]
            parts.append(f"p50 at 1 client = {t['ratio']:.2f} x the bare Predictor's (target <= "
                         f"{LATENCY_TARGET:.2f}): **{'met' if t['met'] else 'missed'}**")
        alive = "" if row.get("server_alive_after", True) else "; the server was NOT alive afterwards"
        lines.append(f"- {row['model']}: " + "; ".join(parts) + alive)
    notes = result.get("notes") or []
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    lines += ["", f"Raw record: `bench/results/serve.json` (whole run {result['wall_s'] / 60:.1f} min)."]
    return "\n".join(lines) + "\n"


def write_section(result: dict[str, Any], path: Path = MARKDOWN) -> None:
    """Replace (or append) only this benchmark's section; re-read the file right before."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(replace_section(text, HEADING, render(result)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds per level")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per level")
    ap.add_argument("--calls", type=int, default=300, help="bare Predictor calls")
    ap.add_argument("--rounds", type=int, default=5, help="bare ORT rounds")
    ap.add_argument("--no-pin", action="store_true", help="do not pin server and clients to cores")
    ap.add_argument("--quick", action="store_true", help="a short run (1.5 s per level)")
    ap.add_argument("--no-run", action="store_true", help="only re-render the saved result")
    ap.add_argument("--write", action="store_true", help="save JSON and write BENCHMARKS.md")
    ap.add_argument("--note", action="append", default=[], help="a note line for the section")
    args = ap.parse_args(argv)
    if args.no_run:
        result = json.loads(RESULT.read_text())
        if args.note:
            result["notes"] = args.note
    else:
        if args.quick:
            args.seconds, args.warmup, args.calls, args.rounds = 1.5, 0.5, 50, 2
        result = run(args.models, seconds=args.seconds, warmup_s=args.warmup, calls=args.calls,
                     rounds=args.rounds, pin=not args.no_pin)
        result["notes"] = args.note
        if args.write:
            write_json(RESULT, result)
    if args.write:
        write_section(result)
    print(render(result))


if __name__ == "__main__":
    main()
