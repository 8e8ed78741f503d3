"""The lab's own error type: a message written for a person, saying what and where."""


class LabError(Exception):
    """An error a user can act on. The UI shows ``str(err)``; the CLI prints it and exits non-zero.

    Raise it with a sentence that names the thing (file, line, field, setting) and the fix.
    """


DETAIL_CHARS = 200


def explain(err: BaseException) -> str:
    """What an error that is no ``LabError`` (a case the lab does not handle yet) says, in words for a person: an
    operating-system error's reason and file, else the first line of its message; no class name, no traceback."""
    if isinstance(err, OSError) and err.strerror:
        name = str(err.filename or "")
        shown = name if len(name) <= 80 else f"{name[:40]}…{name[-39:]}"  # a path can be the very problem
        text = f"{err.strerror}: {shown}" if shown else err.strerror
    else:
        lines = str(err).strip().splitlines()
        text = lines[0] if lines else "an internal error with no message"
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS - 1] + "…"
