"""`PacsConfig`: how to reach one PACS, over DICOMweb (a URL) or DIMSE (AE title, host, port), from
YAML or flags; the password is never part of it, only where to read it (a 0600 file or a variable)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medsight.errors import InvalidConfig

__all__ = ["PASSWORD_ENV", "PacsConfig"]

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
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'pacs'}: {e['msg']}"
                                 for e in exc.errors())
            raise InvalidConfig(f"{where}: {problems}") from None
        except TypeError as exc:
            raise InvalidConfig(f"{where}: {exc}") from None

    @classmethod
    def from_yaml(cls, path: Path | str, section: str | None = "pacs") -> PacsConfig:
        """Read from YAML: the ``pacs:`` mapping of the file (or the whole file without one)."""
        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidConfig(f"cannot read PACS configuration {path}: {exc}") from exc
        if not isinstance(doc, dict):
            raise InvalidConfig(f"{path}: expected a mapping, got {type(doc).__name__}")
        values = doc.get(section, doc) if section else doc
        if not isinstance(values, dict):
            raise InvalidConfig(f"{path}: `{section}` must be a mapping")
        base = path.parent
        if values.get("password_file") is not None:
            values = {**values, "password_file": base / Path(values["password_file"]).expanduser()}
        return cls.of(values, where=str(path))
