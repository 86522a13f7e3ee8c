"""The error the local engine raises: its message says what went wrong and what to do."""


class EngineError(RuntimeError):
    """The local engine could not be built, started or stopped; the message says why."""
