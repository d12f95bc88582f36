"""The one error a channel raises."""

from __future__ import annotations


class ChannelError(Exception):
    """Sending failed. `permanent` means retrying cannot help (a 4xx other than 429, an invalid
    phone number, a refused address): the caller records it and, after repeated ones,
    disables the target. `retry_after` is the provider's own wait in seconds (its
    `Retry-After`), which the caller's backoff must not undercut."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
