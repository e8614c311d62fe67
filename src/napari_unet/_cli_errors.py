"""How the ``napari-unet`` command reports an error: one ``napari-unet: error: ...`` line, never a traceback.

Errors meant for users (``ValueError``, ``TypeError``, ``OSError``, :class:`CLIError`) print their
message; ``MemoryError`` says "out of memory"; anything else (a torch ``RuntimeError``, a bug) is
named by its type, with a hint to rerun with ``--debug`` or ``NAPARI_UNET_DEBUG=1``, which print
the traceback before the line. The exit statuses are :func:`napari_unet.cli.main`'s.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

__all__ = ["DEBUG_ENV", "CLIError", "cli_message", "one_line", "report"]

#: Environment variable that makes the command print the traceback of every error.
DEBUG_ENV = "NAPARI_UNET_DEBUG"
#: Errors whose message is written for users; anything else is unexpected and named by its type.
_EXPECTED = (ValueError, TypeError, OSError, MemoryError)
#: Import errors whose message is written for users: a missing extra, with its install command.
_EXPECTED_IMPORTS = ("MissingExtraError",)
# Core messages name Python keyword arguments; on the command line the options are meant.
_CLI_WORDING = (
    ("channels=[...]", "--channels"),
    ("pick one with channels=", "pick one with --channels"),
    ("overwrite=True", "--overwrite"),
)


class CLIError(Exception):
    """An expected failure: printed as one line, exit status 1."""


def one_line(err: BaseException) -> str:
    """The error's message on one line (a missing file: ``no such file: <name>``)."""
    text = str(err) or type(err).__name__
    if isinstance(err, FileNotFoundError) and err.filename:
        text = f"no such file: {err.filename}"
    return " ".join(text.split())


def cli_message(err: BaseException) -> str:
    """:func:`one_line`, with the API's keyword names replaced by the command-line options."""
    text = one_line(err)
    for api_text, cli_text in _CLI_WORDING:
        text = text.replace(api_text, cli_text)
    return text


def debug_wanted(args: argparse.Namespace | None) -> bool:
    """Whether tracebacks are wanted: ``--debug``, or ``NAPARI_UNET_DEBUG`` set to anything but 0."""
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def report(err: BaseException, args: argparse.Namespace | None, prefix: str = "") -> None:
    """Print one ``napari-unet: error:`` line on stderr (after the traceback when debugging)."""
    debug = debug_wanted(args)
    if debug:
        traceback.print_exception(err)
    if isinstance(err, CLIError):
        text = str(err)
    elif isinstance(err, MemoryError):
        text = f"out of memory: {cli_message(err)}" if str(err) else "out of memory"
    elif isinstance(err, _EXPECTED) or type(err).__name__ in _EXPECTED_IMPORTS:
        text = cli_message(err)
    else:  # a bug or an environment problem: say what it is and how to see more
        text = f"{type(err).__name__}: {cli_message(err)}"
        if not debug:
            text += f" (unexpected error; run again with --debug or {DEBUG_ENV}=1 to see the traceback)"
    print(f"napari-unet: error: {prefix}{text}", file=sys.stderr)
