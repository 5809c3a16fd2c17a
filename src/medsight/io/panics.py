"""Tell a decoder panic from the interpreter's own control flow, so readers can report it.

Rust decoders (pylibjpeg-rle, through pyo3) raise ``pyo3_runtime.PanicException`` on broken
data. It derives from BaseException, not Exception, so ``except Exception`` lets it through, and
its module cannot be imported to name the class. Anything outside Exception that is not
KeyboardInterrupt, SystemExit or GeneratorExit is such a panic.
"""

from __future__ import annotations

_CONTROL_FLOW = (KeyboardInterrupt, SystemExit, GeneratorExit)


def is_panic(exc: BaseException) -> bool:
    """True for a BaseException that is neither an Exception nor interpreter control flow."""
    return not isinstance(exc, (Exception, *_CONTROL_FLOW))


def panic_reason(exc: BaseException) -> str:
    """A one-line reason naming the panic, e.g. 'decoder panicked (PanicException: index ...)'."""
    detail = " ".join(str(exc).split())
    return f"decoder panicked ({type(exc).__name__}: {detail})"
