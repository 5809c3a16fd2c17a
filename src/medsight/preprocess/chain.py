"""`Preprocess`: the one saved, replayable chain of preprocessing steps.

Training, evaluation, offline prediction and the server all run the same `Preprocess`, stored
in the model bundle as canonical JSON and pinned by its `fingerprint`. A chain is written in
code, or loaded from a YAML/JSON config such as
``[{"window": {"preset": "lung"}}, {"crop_foreground": {}}, {"resize": {"size": [64, 64]}}]``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from medsight.errors import InvalidConfig
from medsight.io.image import Image
from medsight.preprocess.base import Step, build_step

FORMAT = "medsight.preprocess/1"


def _parse_item(item: Any, where: str) -> tuple[str, Mapping[str, Any]]:
    """One config entry -> (name, params). Accepts ``"name"``, ``{name: params}`` and
    ``{"name": name, "params": params}``."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, Mapping):
        if "name" in item and set(item) <= {"name", "params"}:
            name, params = item["name"], item.get("params")
        elif len(item) == 1:
            ((name, params),) = item.items()
        else:
            raise InvalidConfig(
                f"{where}: a step is written {{name: {{params}}}}; got several keys {list(item)}"
            )
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise InvalidConfig(f"{where}: parameters of step {name!r} must be a mapping, "
                                f"got {params!r}")
        return str(name), params
    raise InvalidConfig(f"{where}: a step must be a name or a mapping, got {item!r}")


class Preprocess:
    """An ordered chain of `Step`s, applied one after the other to an `Image`.

    ``to_json``/``from_json`` round-trip exactly, so a reloaded chain produces the same bytes;
    the JSON is self-contained (an align reference is embedded). ``fingerprint`` is the sha256
    of the canonical JSON, computed once (the steps are a tuple and steps are not changed after
    construction); chains are equal, and hash equally, when their fingerprints are equal.
    ``describe`` is a readable summary. Each step appends what it did to
    ``image.metadata["preprocess"]``; the chain adds ``image.metadata["preprocess_fingerprint"]``.
    """

    def __init__(self, steps: Iterable[Step] = ()) -> None:
        self.steps: tuple[Step, ...] = tuple(steps)
        for i, s in enumerate(self.steps):
            if not isinstance(s, Step):
                raise InvalidConfig(f"preprocess step {i + 1} is not a Step: {s!r}")
        self._fingerprint: str | None = None

    # -- running ----------------------------------------------------------------------------
    def __call__(self, image: Image) -> Image:
        out = image
        for step in self.steps:
            out = step(out)
        if out is image:  # an empty chain still returns a new Image, never its input
            out = image.with_pixels(image.pixels)
        out.metadata = dict(out.metadata)
        out.metadata["preprocess_fingerprint"] = self.fingerprint()
        return out

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "steps": [s.to_dict() for s in self.steps]}

    def to_json(self, indent: int | None = None) -> str:
        """Canonical JSON (sorted keys, no spaces) unless `indent` asks for a readable form."""
        if indent is None:
            return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                              allow_nan=False)
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, allow_nan=False)

    def fingerprint(self) -> str:
        """sha256 (hex) of the canonical JSON: equal fingerprints mean identical preprocessing.

        Raises `InvalidConfig` when a step cannot be written (an align reference file missing).
        """
        if self._fingerprint is None:
            self._fingerprint = hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()
        return self._fingerprint

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Sequence[Any], base_dir: str | Path | None = None,
                  where: str = "preprocess config") -> Preprocess:
        """Build from `to_dict` output or a bare step list; relative reference files (align)
        resolve against `base_dir`."""
        if isinstance(data, Mapping):
            fmt = data.get("format", FORMAT)
            if fmt != FORMAT:
                raise InvalidConfig(f"{where}: unsupported format {fmt!r} (expected {FORMAT!r})")
            if "steps" not in data:
                raise InvalidConfig(f"{where}: missing 'steps'")
            items = data["steps"]
        else:
            items = data
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise InvalidConfig(f"{where}: steps must be a list, got {type(items).__name__}")
        steps = []
        for i, item in enumerate(items):
            name, params = _parse_item(item, f"{where}, step {i + 1}")
            try:
                step = build_step(name, params)
            except InvalidConfig as exc:
                raise InvalidConfig(f"{where}, step {i + 1}: {exc}") from exc
            if base_dir is not None:
                step = step.with_base_dir(str(base_dir))
            steps.append(step)
        return cls(steps)

    @classmethod
    def from_json(cls, text: str, base_dir: str | Path | None = None) -> Preprocess:
        """Rebuild a chain from `to_json` output."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise InvalidConfig(f"preprocess JSON is not valid JSON: {exc}") from exc
        return cls.from_dict(data, base_dir=base_dir, where="preprocess JSON")

    @classmethod
    def from_config(
        cls, config: Sequence[Any] | Mapping[str, Any] | str | Path,
        base_dir: str | Path | None = None,
    ) -> Preprocess:
        """Build from a list of ``{step: {params}}`` entries, or a YAML/JSON file holding one
        (either the list itself or a mapping with a ``preprocess`` or ``steps`` list).
        Relative file parameters resolve against the file's folder unless `base_dir` is given."""
        where = "preprocess config"
        if isinstance(config, (str, Path)):
            path = Path(config)
            where = str(path)
            try:
                config = yaml.safe_load(path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise InvalidConfig(f"cannot read preprocess config {path}: {exc}") from exc
            except yaml.YAMLError as exc:
                raise InvalidConfig(f"{path} is not valid YAML: {exc}") from exc
            if base_dir is None:
                base_dir = path.parent
        if isinstance(config, Mapping) and "format" not in config:
            for key in ("preprocess", "steps"):
                if key in config:
                    config = config[key]
                    break
            else:
                raise InvalidConfig(f"{where}: expected a list of steps or a mapping with a "
                                    f"'preprocess' list; got keys {list(config)}")
        if config is None:
            config = []
        return cls.from_dict(config, base_dir=base_dir, where=where)

    # -- description ----------------------------------------------------------------------------
    def describe(self) -> str:
        """A readable, numbered list of the steps and their parameters, for reports."""
        try:
            fp = self.fingerprint()[:12]
        except InvalidConfig:
            fp = "not serialisable yet"
        lines = [f"Preprocessing ({len(self.steps)} steps, fingerprint {fp}):"]
        if not self.steps:
            lines.append("  (none: images are used as read)")
        for i, s in enumerate(self.steps, 1):
            summary = s.summary()
            lines.append(f"  {i}. {s!r}" + (f" - {summary}" if summary else ""))
        return "\n".join(lines)

    # -- container protocol ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __getitem__(self, i: int) -> Step:
        return self.steps[i]

    def _identity(self) -> str | None:
        try:
            return self.fingerprint()
        except InvalidConfig:  # not writable (a missing reference file): only itself is equal
            return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Preprocess):
            return NotImplemented
        mine, theirs = self._identity(), other._identity()
        if mine is None or theirs is None:
            return self.steps == other.steps and mine == theirs
        return mine == theirs

    def __hash__(self) -> int:
        identity = self._identity()
        return hash(identity) if identity is not None else hash(len(self.steps))  # rare, still agrees

    def __repr__(self) -> str:
        return f"Preprocess([{', '.join(repr(s) for s in self.steps)}])"


def plain_spec(spec: Any) -> Any:
    """A preprocessing parameter in JSON-ready form, as estimators store it: a list of steps, a
    `Preprocess` JSON dict, or None (a `Preprocess` object given directly becomes its dict)."""
    if spec is None or isinstance(spec, (list, dict)):
        return spec
    if isinstance(spec, tuple):
        return list(spec)
    if isinstance(spec, Preprocess):
        return spec.to_dict()
    raise InvalidConfig(
        f"preprocess must be a list of steps, a Preprocess JSON dict or None; got {spec!r}"
    )
