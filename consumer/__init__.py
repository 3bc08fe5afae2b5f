"""cxone-role-sync: keeps NICE CXone user roles equal to what the identity provider says."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cxone-role-sync")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
