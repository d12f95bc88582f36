"""The one error a channel raises."""

from __future__ import annotations


class ChannelError(Exception):
    """Sending failed. `permanent` means retrying cannot help (a 4xx other than 429, an invalid
    phone number, a refused address): the caller records it and disables the target."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
