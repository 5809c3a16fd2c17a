"""One small error hierarchy whose messages tell the user what went wrong and what to do."""

from __future__ import annotations


class MedsightError(Exception):
    """Base class of every error medsight raises on purpose."""


class UnreadableImage(MedsightError):
    """An image could not be read; names the source and the reason."""

    def __init__(self, source: object, reason: str):
        self.source = str(source)
        self.reason = reason
        super().__init__(f"cannot read image {self.source}: {reason}")


class InvalidDataset(MedsightError):
    """A dataset, manifest or source folder is malformed (missing files, bad columns, ...)."""


class InvalidConfig(MedsightError):
    """A configuration file or argument is invalid."""


class LeakageError(MedsightError):
    """The same patient or image appears in more than one split."""


class NotFittedError(MedsightError):
    """An estimator was asked to predict, save or export before `fit` (or `load_estimator`)."""


class BundleIntegrityError(MedsightError):
    """A saved model bundle is missing files or fails its checksum."""


class LicenceError(MedsightError):
    """A licence is missing, expired, forged, for another bundle or machine, or the clock was set
    back; the message says which and how to fix it."""


class PacsError(MedsightError):
    """A PACS could not be reached, refused a request or answered something unusable; the message
    names the server, the request and what to check."""
