"""The videogen gRPC service (`videogen.v1.VideoService`) in front of Runway's video generation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("videogen")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
