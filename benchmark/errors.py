"""User-facing errors: one line that says what is wrong and how to fix it.

The CLI catches `UserError`, prints its message on one line to stderr and exits
with status 2, without a traceback. Anything else is a bug (or a submission's own
exception, shown with its own traceback).
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable

from .untrusted import one_line, prefixed


class StatisticsError(ValueError):
    """Data the statistics cannot use (too few examples, non-finite values), raised by `stats`. The harness shows
    it as a user error; `stats` knows nothing of the command line."""


class UserError(Exception):
    """A mistake in the user's input, reported as one line with the fix."""


class SubmissionError(Exception):
    """A submission failed: it raised, exited, hit a limit, broke the protocol or returned something unusable.

    The CLI prints the message and, when it raised, the submission's own traceback (`traceback_text`), and exits 1.
    """

    def __init__(self, message: str, traceback_text: str | None = None):
        super().__init__(message)
        self.traceback_text = traceback_text


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' Did you mean X?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str], listing: str) -> UserError:
    """An error for an unknown name, with a suggestion and where to list the valid ones."""
    choices = list(choices)
    return UserError(f"unknown {kind} '{name}'.{did_you_mean(name, choices)} List them with `{listing}`.")


def print_submission_failure(headline: str, traceback_text: str | None) -> None:
    """`headline` on stderr on one line, then the submission's own traceback as its child formatted it (never the
    harness's), every line of it prefixed `[submission] ` (`untrusted`: the submission's text starts no line)."""
    print(one_line(headline), file=sys.stderr)
    if traceback_text:
        print("The submission's traceback:", file=sys.stderr)
        print(prefixed(traceback_text), file=sys.stderr)
