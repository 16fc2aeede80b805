"""The one exception type for user mistakes.

Anything a user can get wrong (a missing corpus, a bad config key, a malformed ARPA file) raises
``LmbenchError`` with a one-line message that names the file, field or argument and what was
expected. The CLI prints that line and exits non-zero; programming errors keep their tracebacks.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LmbenchError(ValueError):
    """A user-facing error: its message is one line, printed without a traceback by the CLI."""


class LmbenchWarning(UserWarning):
    """Something a user should know that does not stop the work (one line; the CLI prints it as
    ``lmbench: warning: ...``)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest choice, or a list of choices."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (choose from: {', '.join(choices)})"
