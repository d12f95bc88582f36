"""Errors an alert-source adapter raises; the intake turns each into an HTTP answer."""


class AdapterError(Exception):
    """The delivery cannot be read as this tool's webhook (HTTP 400). The message says what
    was wrong and which format was expected; it never repeats secrets."""


class SignatureError(AdapterError):
    """The delivery's signature is missing, stale or wrong (HTTP 401)."""


class UnknownAdapterError(LookupError):
    """No adapter is registered under that type."""
