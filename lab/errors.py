"""The lab's own error type: a message written for a person, saying what and where."""


class LabError(Exception):
    """An error a user can act on. The UI shows ``str(err)``; the CLI prints it and exits non-zero.

    Raise it with a sentence that names the thing (file, line, field, setting) and the fix.
    """
