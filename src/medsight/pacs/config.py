"""`PacsConfig`: how to reach one PACS, over DICOMweb (a URL) or DIMSE (AE title, host, port), from
YAML or flags; the password is never part of it, only where to read it (a 0600 file or a variable)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medsight.errors import InvalidConfig

__all__ = ["PASSWORD_ENV", "PacsConfig", "beside", "read_mapping", "validated"]

M = TypeVar("M", bound=BaseModel)

PASSWORD_ENV = "MEDSIGHT_PACS_PASSWORD"
_AE_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _-.")


def _check_ae(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value.strip()) <= 16 or set(value) - _AE_CHARS:
        raise ValueError(f"AE title {value!r}: 1-16 characters, letters, digits, space and _ - .")
    return value.strip()


class PacsConfig(BaseModel):
    """One PACS. ``url`` (a DICOMweb root such as ``http://pacs:8042/dicom-web``) selects DICOMweb;
    without it ``ae_title``/``host``/``port`` select DIMSE. ``calling_ae`` is medsight's own AE title;
    ``scp_port`` the port of medsight's storage SCP (the C-MOVE destination, which the PACS must know
    under ``calling_ae``). HTTP basic auth reads the password from ``password_file`` (must be 0600)
    or the ``MEDSIGHT_PACS_PASSWORD`` variable, never from the YAML itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(None, description="DICOMweb root URL (QIDO/WADO/STOW)")
    username: str | None = Field(None, description="HTTP basic-auth user")
    password_file: Path | None = Field(None, description="file holding the password (mode 0600)")
    ca_bundle: Path | None = Field(None, description="CA certificates for an https URL")
    ae_title: str | None = Field(None, description="the PACS's AE title (DIMSE)")
    host: str | None = Field(None, description="the PACS's host (DIMSE)")
    port: int | None = Field(None, ge=1, le=65535, description="the PACS's DICOM port (DIMSE)")
    calling_ae: str = Field("MEDSIGHT", description="medsight's own AE title")
    scp_port: int | None = Field(None, ge=1, le=65535,
                                 description="port of medsight's storage SCP (C-MOVE destination)")
    scp_host: str = Field("127.0.0.1", description="address medsight's storage SCP binds")
    timeout_s: float = Field(30.0, gt=0, description="seconds allowed per request")

    _check_ae_titles = field_validator("ae_title", "calling_ae")(_check_ae)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url {value!r} must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_transport(self) -> PacsConfig:
        dimse = (self.ae_title, self.host, self.port)
        if self.url is None and None in dimse:
            raise ValueError("give a DICOMweb url, or all of ae_title, host and port for DIMSE")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs a username")
        return self

    @property
    def transport(self) -> str:
        """"dicomweb" when a URL is configured, else "dimse"."""
        return "dicomweb" if self.url else "dimse"

    @property
    def display(self) -> str:
        """Where this PACS is, for messages (never the password)."""
        if self.url:
            return self.url
        return f"{self.ae_title}@{self.host}:{self.port}"

    def password(self) -> str | None:
        """The basic-auth password: the file's first line (refused unless 0600), else the variable."""
        if self.username is None:
            return None
        if self.password_file is not None:
            path = Path(self.password_file)
            try:
                mode = stat.S_IMODE(os.stat(path).st_mode)
            except OSError as exc:
                raise InvalidConfig(f"PACS password file {path}: {exc.strerror}") from exc
            if mode & 0o077:
                raise InvalidConfig(f"PACS password file {path} may be read by group or others "
                                    f"(mode {mode:04o}); run `chmod 600 {path}`")
            return path.read_text(encoding="utf-8").splitlines()[0] if path.stat().st_size else ""
        value = os.environ.get(PASSWORD_ENV)
        if value is None:
            raise InvalidConfig(f"PACS user {self.username!r} needs a password: set password_file "
                                f"(mode 0600) or ${PASSWORD_ENV}")
        return value

    @classmethod
    def of(cls, values: dict[str, Any], where: str = "PACS configuration") -> PacsConfig:
        """Validated from a mapping, with a message that names `where` and each bad field."""
        return validated(cls, values, where, top="pacs")

    @classmethod
    def from_yaml(cls, path: Path | str, section: str | None = "pacs") -> PacsConfig:
        """Read from YAML: the ``pacs:`` mapping of the file (or the whole file without one)."""
        path = Path(path)
        doc = read_mapping(path, "PACS configuration")
        values = doc.get(section, doc) if section else doc
        if not isinstance(values, dict):
            raise InvalidConfig(f"{path}: `{section}` must be a mapping")
        return cls.of(beside(values, path), where=str(path))


def validated(model: type[M], values: dict[str, Any], where: str, top: str) -> M:
    """`model` built from `values`; any problem is one `InvalidConfig` naming `where` and each
    bad key by its path (`top` for the mapping itself)."""
    try:
        return model(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or top}: {e['msg']}"
                             for e in exc.errors())
        raise InvalidConfig(f"{where}: {problems}") from None
    except TypeError as exc:
        raise InvalidConfig(f"{where}: {exc}") from None


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """The YAML mapping in `path`, or an `InvalidConfig` that names the file and `what` it is."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidConfig(f"cannot read the {what} {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidConfig(f"{path}: the {what} must be a mapping, got {type(doc).__name__}")
    return doc


def beside(values: dict[str, Any], path: Path) -> dict[str, Any]:
    """A PACS mapping read from `path`: its `password_file` taken relative to the file's folder."""
    if values.get("password_file") is None:
        return values
    return {**values, "password_file": path.parent / Path(values["password_file"]).expanduser()}
