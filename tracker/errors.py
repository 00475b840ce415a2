"""User-facing errors: one exception family, each carrying a single line that says what is wrong and what to do."""


class TrackerError(Exception):
    """Base of every error meant for a user. ``str(err)`` is one line: what is wrong, then what to do."""


class ConfigError(TrackerError):
    """A model config is missing, unknown, or has an unknown or ill-typed key."""


class CheckpointError(TrackerError):
    """A weights file cannot be read, is unsafe, or does not fit the model."""


class InputError(TrackerError):
    """A frame, box, source or query given by the user cannot be used."""


class BackendError(TrackerError):
    """A backend was asked for that cannot run here (missing package, no GPU, unknown name)."""


def first_line(err: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (at most ``limit`` characters), or its type name when it has none:
    what a one-line report of a foreign error can quote."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__
