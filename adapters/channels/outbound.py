"""HTTP requests to addresses that others chose (subscribers' webhooks, a team's chat hooks),
made so that they cannot be turned against the network Beacon runs in.

- The host is resolved once, and the request is refused unless every address it resolves
  to is global unicast (`refusal` says what is not: loopback, private, link-local,
  multicast, reserved, NAT64, 6to4, Teredo, IPv4-mapped).
- The connection goes to exactly the address that was checked: the connection pool's
  network backend dials the pinned address whatever host it is asked for, while the URL
  keeps the name, so TLS still sends and checks it (SNI, certificate) and so does `Host`.
  A name that answers public to the check and private to a second lookup (DNS rebinding)
  gets no second lookup.
- Redirects are never followed: a 3xx is a permanent failure naming where it pointed
  (following one would be a request to an address nobody checked).
- One deadline covers the whole request (lookup, connect, TLS, sending, the answer), so a
  receiver that sends one byte a second cannot hold a worker.
- At most 64 KiB of the answer is read: only its start ever reaches an error message.

`BEACON_WEBHOOK_ALLOW_PRIVATE=true` (`allow_private`) lets an operator send to their own
network; the address is still resolved once and pinned.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
import orjson

from .base import Context, raise_for_status
from .errors import ChannelError

#: Seconds for a whole request, from the lookup to the last byte read.
DEADLINE = 10.0
#: Bytes of an answer read at most; the rest is never received.
MAX_RESPONSE = 64 * 1024

#: `(host, port) -> addresses`, in the order to try them. Tests pass their own.
Resolver = Callable[[str, int], Sequence[str]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges that `is_global` lets through but that reach IPv4 networks behind a translator or
# tunnel, so an IPv6 address in them can stand for 10.0.0.1 or 127.0.0.1.
_TUNNELS = (
    (ipaddress.ip_network("64:ff9b::/96"), "a NAT64 address"),
    (ipaddress.ip_network("64:ff9b:1::/48"), "a NAT64 address"),
    (ipaddress.ip_network("2002::/16"), "a 6to4 address"),
    (ipaddress.ip_network("2001::/32"), "a Teredo address"),
)


def hide(text: str, url: str) -> str:
    """`text` without what of `url` is a credential: all but its scheme and host (a chat
    hook's or webhook's path and query are its password). A failure's reason is recorded,
    logged and shown to managers, and receivers' error bodies often echo the URL they
    were called at ("Cannot POST /path")."""
    parts = urlsplit(url)
    secrets = {url, parts.netloc, parts.path, parts.query, parts.fragment}
    secrets.add(parts.path + ("?" + parts.query if parts.query else ""))
    host = parts.hostname or ""
    # Pieces echoed alone: tokens (a digit, or long), not words such as "webhook".
    pieces = [*parts.path.split("/"), *(v for kv in parts.query.split("&") for v in kv.split("="))]
    secrets.update(
        p
        for p in pieces
        if len(p) >= 6 and (len(p) >= 16 or any(c.isdigit() for c in p)) and p not in host
    )
    shown = f"{parts.scheme}://{host}/…" if host else "…"
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) < 2 or secret in (host, "http", "https"):
            continue
        text = text.replace(secret, shown if secret == url else "…")
    return text


def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system's resolver, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refusal(address: Address) -> str | None:
    """Why a request must not go to `address`, or None for a global unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "an IPv4-mapped address"
        for network, what in _TUNNELS:
            if address in network:
                return what
    if address.is_multicast:
        return "a multicast address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified or address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "a private address"
    return None


@dataclass(frozen=True)
class Answer:
    """A 2xx answer: its status, headers and at most `MAX_RESPONSE` bytes of its body."""

    status: int
    headers: httpx.Headers
    body: bytes


# The address each request may connect to, set by the request's own task before it asks
# the pool for a connection (httpcore connects in the caller's task).
_pin: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "beacon_outbound_pin", default=None
)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Dials the address pinned for the current request instead of resolving the host."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pin = _pin.get()
        if pin is None or pin[0] != host:
            # Fail closed: a connection nobody resolved and checked is never made.
            raise httpcore.ConnectError(f"{host} was not resolved and checked for this request")
        return await self._inner.connect_tcp(pin[1], port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("outbound requests never use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.cache
def _tls(verify: bool) -> ssl.SSLContext:
    """The process's TLS context for `verify`. Made once: loading the CA bundle takes about
    50 ms of CPU, which a context per client spent again for every batch of a fan-out."""
    return httpx.create_ssl_context(verify=verify, trust_env=False)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, verify: ssl.SSLContext | bool, max_connections: int) -> None:
        context = verify if isinstance(verify, ssl.SSLContext) else _tls(verify)
        super().__init__(verify=context, trust_env=False)
        # httpx takes no network backend of its own; its pool (httpcore) does.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=max_connections,
            network_backend=_PinnedBackend(),
        )


class Outbound:
    """A client for many outbound requests (a fan-out's), used with `async with`; each
    request is resolved, checked and pinned on its own (see the module docstring)."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        deadline: float = DEADLINE,
        resolver: Resolver | None = None,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 100,
    ) -> None:
        self.allow_private = allow_private
        self.deadline = deadline
        self.resolver = resolver or system_resolver
        # trust_env=False: an HTTP(S)_PROXY from the environment would connect elsewhere
        # than the pinned address.
        self._client = httpx.AsyncClient(
            transport=_PinnedTransport(verify, max_connections),
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(deadline),
        )

    async def __aenter__(self) -> Outbound:
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._client.__aexit__(kind, error, traceback)

    async def post(
        self, url: str, *, content: bytes, headers: Mapping[str, str] | None = None
    ) -> Answer:
        """POST `content` to `url`; the 2xx answer, or `ChannelError` (permanent for a
        refused address, a redirect or a 4xx other than 429) whose message never holds
        the URL's secret parts (`hide`)."""
        try:
            return await self._post(url, content=content, headers=headers)
        except ChannelError as exc:
            raise ChannelError(
                hide(str(exc), url), permanent=exc.permanent, retry_after=exc.retry_after
            ) from None
        except (httpx.InvalidURL, UnicodeError) as exc:
            # A URL urlsplit takes but httpx or the IDNA codec does not (a host with a
            # zero-width space): no attempt will ever do better, and the library's message
            # must not reach a failure's reason unhidden.
            raise ChannelError(hide(f"not a valid URL: {exc}", url), permanent=True) from None

    async def _post(
        self, url: str, *, content: bytes, headers: Mapping[str, str] | None = None
    ) -> Answer:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ChannelError(f"not an http(s) URL: {url!r}", permanent=True)
        host = parts.hostname
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ChannelError(f"not a valid URL: {url!r}", permanent=True) from None
        try:
            async with asyncio.timeout(self.deadline):
                address = await self._check(host, port)
                token = _pin.set((host, address))
                try:
                    return await self._send(url, host, content, headers)
                finally:
                    _pin.reset(token)
        except TimeoutError:
            raise ChannelError(
                f"{host} did not answer within the {self.deadline:g} s deadline"
            ) from None

    async def _check(self, host: str, port: int) -> str:
        try:
            # An address needs no lookup (nor a thread to wait for one in).
            found: Sequence[str] = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                found = await asyncio.to_thread(self.resolver, host, port)
            except OSError as exc:
                raise ChannelError(f"cannot resolve {host}: {exc}") from None
        if not found:
            raise ChannelError(f"{host} has no address")
        if not self.allow_private:
            for text in found:
                why = refusal(ipaddress.ip_address(text.split("%", 1)[0]))
                if why is not None:
                    raise ChannelError(
                        f"{host} resolves to {text}, {why}; webhooks only go to public "
                        "addresses (an operator may set BEACON_WEBHOOK_ALLOW_PRIVATE=true)",
                        permanent=True,
                    )
        return found[0]

    async def _send(
        self, url: str, host: str, content: bytes, headers: Mapping[str, str] | None
    ) -> Answer:
        # identity: a compressed answer would be inflated before the cap applies.
        sent_headers = {"Accept-Encoding": "identity", **dict(headers or {})}
        try:
            async with self._client.stream(
                "POST", url, content=content, headers=sent_headers
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) >= MAX_RESPONSE:
                        break
        except httpx.TimeoutException:
            raise ChannelError(
                f"{host} did not answer within the {self.deadline:g} s deadline"
            ) from None
        except httpx.HTTPError as exc:
            raise ChannelError(f"could not reach {host}: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        text = bytes(body[:MAX_RESPONSE]).decode("utf-8", "replace")
        if 300 <= status < 400:
            location = response.headers.get("location", "nowhere")
            raise ChannelError(
                f"{host} answered {status}, a redirect to {location[:200]}: redirects are "
                "not followed; subscribe with the final URL",
                permanent=True,
            )
        # A 429's Retry-After (Slack's and Discord's limits say how long) is the caller's floor.
        raise_for_status(
            status, text, where=host, retry_after_header=response.headers.get("retry-after")
        )
        return Answer(status, response.headers, bytes(body[:MAX_RESPONSE]))


def post(
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str] | None = None,
    allow_private: bool = False,
    deadline: float = DEADLINE,
    resolver: Resolver = system_resolver,
    verify: ssl.SSLContext | bool = True,
) -> Answer:
    """One outbound POST from synchronous code (a worker thread), as `Outbound.post`."""

    async def one() -> Answer:
        async with Outbound(
            allow_private=allow_private,
            deadline=deadline,
            resolver=resolver,
            verify=verify,
            max_connections=1,
        ) as client:
            return await client.post(url, content=content, headers=headers)

    return asyncio.run(one())


def post_json(url: str, body: Any, ctx: Context) -> Answer:
    """POST `body` as JSON to a hook a team chose (Slack, Discord, Teams), under `ctx`'s
    rules: a private address only where the operator allows it, the configured deadline.
    The chat channels all send this way, so none of them can leave either rule out."""
    return post(
        url,
        content=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
        allow_private=ctx.allow_private,
        deadline=ctx.outbound_deadline,
    )
