"""One error hierarchy for geotl.

Every error a user can cause is a :class:`GeotlInputError` (exit code 2); failures at run
time that are not the user's input are :class:`GeotlRuntimeError` (exit code 1). Messages
are one line and say which file is wrong, what is wrong and how to fix it. Only
``geotl.cli`` turns these into exit codes.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ERROR_PREFIX",
    "AlertError",
    "BandMismatchError",
    "BaseModelError",
    "ClusterError",
    "ConfigError",
    "GeotlError",
    "GeotlInputError",
    "GeotlRuntimeError",
    "LabelError",
    "LockedError",
    "ModelArtefactError",
    "OutputExistsError",
    "RasterError",
    "ReferenceLayerError",
    "ResolutionError",
    "SceneError",
    "SchedulerUnreachableError",
    "error_text",
]

#: how the one line of an error starts on stderr (the CLI's, and a training process's that
#: ends itself; the QGIS plugin finds the line by it)
ERROR_PREFIX = "geotl: error: "


class GeotlError(Exception):
    """Root of every error geotl raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.message = message
        super().__init__(f"{path}: {message}" if path is not None else message)

    def __reduce__(self) -> tuple[object, ...]:
        # rebuilt from (message, path): a Dask worker's error reaches the coordinator as
        # itself (tblib cannot rebuild a class with two built-in bases, e.g. RasterError)
        return (type(self), (self.message, self.path), self.__dict__)


class GeotlInputError(GeotlError, ValueError):
    """The user's input (a file, an option) is wrong; exit code 2."""

    exit_code = 2


class GeotlRuntimeError(GeotlError, RuntimeError):
    """Something failed while running that is not the input's fault; exit code 1."""

    exit_code = 1


class ConfigError(GeotlInputError):
    """A region file is invalid (unknown key, wrong type, missing file...)."""


class RasterError(GeotlInputError, OSError):
    """A raster cannot be read or does not fit what the region says about it."""


class LabelError(GeotlInputError):
    """A label vector file is unusable (no CRS, empty, far from the imagery...)."""


class ResolutionError(RasterError):
    """A scene's ground resolution differs from the model's (and resampling is off)."""


class BandMismatchError(GeotlInputError):
    """Bands of the input cannot be mapped onto the bands a model expects."""


class BaseModelError(GeotlInputError):
    """A base model id is unknown, unavailable offline, or its weights fail verification."""


class ModelArtefactError(GeotlInputError):
    """A model directory is missing a file or was written by an incompatible geotl."""


class OutputExistsError(GeotlInputError, FileExistsError):
    """An output exists and ``--overwrite`` was not given."""


class SceneError(GeotlRuntimeError):
    """One scene failed during a multi-scene job (others continue; exit code 1)."""


class ClusterError(GeotlInputError):
    """The Dask scheduler cannot be reached, or a worker cannot run the job (version, model)."""


class SchedulerUnreachableError(ClusterError):
    """The Dask scheduler at ``--cluster`` does not answer."""


class LockedError(GeotlInputError):
    """Another geotl process holds the lock on this region's state."""


class ReferenceLayerError(GeotlInputError):
    """An alert rule's reference layer is unusable (no CRS, empty, far from the region...)."""


class AlertError(GeotlInputError):
    """An alert command or setting is wrong (unknown alert id, webhook that is not http(s)...)."""


def error_text(exc: BaseException, limit: int = 200) -> str:
    r"""The first line of ``exc``'s message, for a one-line error; never empty.

    An exception without a message (an HTTP 404 with an empty body) is named by its class
    and, when it carries one, its HTTP status.

    >>> error_text(ValueError("bad value\nsecond line"))
    'bad value'
    >>> error_text(ValueError())
    'ValueError'
    """
    lines = str(exc).strip().splitlines()
    if lines and lines[0].strip():
        return lines[0].strip()[:limit]
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__}: HTTP {status}" if status else type(exc).__name__
