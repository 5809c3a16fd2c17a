"""The one JSON converter: numpy and paths to plain Python, NaN and inf to None (strict JSON).

At the bottom of the package (like `errors`), so every layer that writes JSON uses this copy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np


def jsonable(value: Any, strict: bool = False) -> Any:
    """A JSON-ready copy of `value`: mappings (str keys), lists, numbers, strings, None.

    Tuples and arrays become lists, numpy scalars Python numbers, paths strings, NaN and inf
    None. Anything else is returned as it is, or with ``strict=True`` raises TypeError.
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, strict) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, strict) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v, strict) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, str) or not strict:
        return value
    raise TypeError(f"value {value!r} of type {type(value).__name__} is not JSON data")
