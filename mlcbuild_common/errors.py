"""Typed errors. Each carries a one-line message: what went wrong, where, and how to fix it."""

import click


class MlcbuildError(click.ClickException):
    """An error caused by input or environment; the CLI prints it on one line and exits non-zero."""

    exit_code = 1

    def __init__(self, what: str, fix: str | None = None):
        super().__init__(f"{what} ({fix})" if fix else what)


class ToolMissing(MlcbuildError):
    """A required external tool (emcc, node, chromium) is not installed."""


class BuildFailed(MlcbuildError):
    """A compile or link step failed; the message points at the log."""


class ChecksumMismatch(MlcbuildError):
    """A cached or downloaded file does not match its recorded sha256."""
