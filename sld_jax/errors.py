"""The exception base class of errors a user can fix: bad config, data, teacher or checkpoint.

The command-line tools print such an error as one line (what is wrong and how to fix it) and exit
with status 2; any other exception is a bug in sld_jax and keeps its traceback. Library callers can
catch :class:`UserError` to tell the two apart.
"""

from __future__ import annotations


class UserError(Exception):
    """An error in what the user gave (config, data, teacher, checkpoint, workdir), not a bug.

    Its message is one sentence saying what was wrong and how to fix it.
    """


class ConfigError(UserError, ValueError):
    """A config field is missing, out of range or inconsistent with another one."""
