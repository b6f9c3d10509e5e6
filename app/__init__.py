"""HITL review service: people decide on machine-made security patches."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hitl-review")
except PackageNotFoundError:  # running from a checkout without an install
    __version__ = "0.0.0+unknown"
