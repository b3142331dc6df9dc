"""The one error family. Every error a user can cause (a bad flag, config, file, checkpoint or device, a
missing optional extra) is a :class:`GanlabError`; the CLI prints it as one line and exits with code 2."""

import importlib


class GanlabError(Exception):
    """A problem with the user's input (config, data, checkpoint, flags); the message says what."""


class UserError(GanlabError):
    """A flag or argument combination the user can fix."""


class ConfigError(GanlabError, ValueError):
    """A config value or key is invalid; the message names the dotted key."""


class CheckpointError(GanlabError, ValueError):
    """A checkpoint is missing, unreadable, of another task, or does not fit the model it is loaded into."""


class DataError(GanlabError, ValueError):
    """A data folder is missing or holds no usable image."""


class DeviceError(GanlabError, ValueError):
    """A device was asked for that this machine does not have."""


class DistributedError(GanlabError):
    """The processes of a data-parallel run could not meet, or one of them died or stopped answering."""


class StorageError(GanlabError, OSError):
    """A file could not be written (disk full, no permission); the message names the path."""


class NonFiniteError(GanlabError, ArithmeticError):
    """Training stopped: too many steps in a row had a NaN or Inf loss."""


class MissingExtraError(GanlabError, ImportError):
    """An optional dependency is not installed; the message names the pip extra that brings it."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(f"{feature} needs the {module} package: pip install 'ganlab[{extra}]'")
        self.extra = extra


def require(module: str, feature: str, extra: str):
    """Import optional ``module`` or raise :class:`MissingExtraError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(feature, extra, module.split(".")[0]) from None
