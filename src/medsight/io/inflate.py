"""Bounded decompression of gzip and raw-deflate bytes: chunk by chunk, refusing bombs early.

`inflate` feeds the compressed bytes in small pieces and asks zlib for at most one chunk at a
time, so memory stays at what is kept: it stops after `want` bytes (a reader asks for what the
header declares, no more), and raises `UnreadableImage` "too large" as soon as the stream
inflates past `MAX_INFLATED_BYTES`.
Multi-member gzip files (concatenated streams, as ``cat a.gz b.gz``) are followed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from medsight.errors import UnreadableImage
from medsight.io.limits import check_inflated

GZIP_WBITS = 16 + zlib.MAX_WBITS
DEFLATE_WBITS = -zlib.MAX_WBITS
_IN_CHUNK = 1 << 16
_OUT_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


def inflate(
    data: bytes,
    source: str,
    *,
    what: str,
    wbits: int = GZIP_WBITS,
    want: int | None = None,
    keep: bool = True,
    limit: int | None = None,
) -> bytes:
    """The first `want` inflated bytes (all when None); a stream past the limit is refused.

    The limit is `MAX_INFLATED_BYTES`, or `limit` when smaller (what the content's own header
    declares, plus room). With ``keep=False`` the stream is only measured and b"" is returned.
    Corrupt or truncated streams raise `UnreadableImage` naming `what`.
    """
    out: list[bytes] = []
    size = 0
    try:
        for chunk in _chunks(data, wbits, source, what):
            size += len(chunk)
            check_inflated(size, source, what)
            if limit is not None and size > limit:
                raise UnreadableImage(
                    source, f"too large: {what} inflates to more than the {limit} bytes its header allows"
                )
            if keep:
                out.append(chunk)
            if want is not None and size >= want:
                break
    except zlib.error as exc:
        raise UnreadableImage(source, f"corrupt {what}: {exc}") from exc
    raw = b"".join(out)
    return raw if want is None else raw[:want]


def _chunks(data: bytes, wbits: int, source: str, what: str) -> Iterator[bytes]:
    """Inflated chunks of at most `_OUT_CHUNK` bytes, from input pieces of `_IN_CHUNK` bytes."""
    view = memoryview(data)
    pos = 0
    engine = zlib.decompressobj(wbits)
    started = False
    piece: bytes | memoryview = b""
    while True:
        if not piece:
            if pos >= len(view):
                break
            piece, pos = view[pos : pos + _IN_CHUNK], pos + _IN_CHUNK
        started = True
        chunk = engine.decompress(piece, _OUT_CHUNK)
        piece = engine.unconsumed_tail
        if chunk:
            yield chunk
        if engine.eof:
            if wbits != GZIP_WBITS:
                return
            piece = engine.unused_data
            if len(piece) < len(_GZIP_MAGIC) and pos < len(view):
                piece, pos = bytes(piece) + bytes(view[pos : pos + _IN_CHUNK]), pos + _IN_CHUNK
            if not bytes(piece[:2]) == _GZIP_MAGIC:
                return  # no further gzip member: trailing padding or garbage is ignored
            engine, started = zlib.decompressobj(wbits), False
    if started and not engine.eof:
        raise UnreadableImage(source, f"truncated {what}: the compressed stream ends early")
