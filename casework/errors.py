"""What services raise. The API maps each to one HTTP status; the scheduler and CLI print them."""

from __future__ import annotations


class CaseworkError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(CaseworkError):
    """Absent, or outside the actor's scope: the two must look the same."""


class Forbidden(CaseworkError):
    """Visible, but the actor's role may not do this."""


class Conflict(CaseworkError):
    """The request clashes with the current state (duplicate, illegal transition)."""

    def __init__(self, detail: str, allowed_events: list[str] | None = None, location: str | None = None) -> None:
        super().__init__(detail)
        self.allowed_events = allowed_events
        self.location = location


class VersionMismatch(CaseworkError):
    """The client acted on a version of the case that is no longer current."""

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(f"the case is at version {current}, the request was made against {expected}")
        self.current = current


class ValidationFailed(CaseworkError):
    """Bad input, with messages per field."""

    def __init__(self, errors: dict[str, list[str]], detail: str = "the request has invalid fields") -> None:
        super().__init__(detail)
        self.errors = errors

    @classmethod
    def field(cls, name: str, message: str) -> ValidationFailed:
        return cls({name: [message]}, f"{name}: {message}")
