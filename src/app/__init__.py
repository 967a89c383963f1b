"""The data layer of app."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("app")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
