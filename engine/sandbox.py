"""Incident templates are a team's own Jinja text, rendered with limits in a child process.

A template runs in the evaluation worker that every team's alerts share, so one team's
`{{ 'x' * 30000000 }}` or nested `range` loops must not take that worker's memory or time.
Each render goes to a child process (`engine/sandbox_child.py`): Jinja's sandbox with size
checks on the operators that multiply sizes, an output cap and a time limit (`Limits`:
`BEACON_TEMPLATE_MAX_OUTPUT_BYTES` and `BEACON_TEMPLATE_RENDER_SECONDS`; the time limit
interrupts the render, and the parent kills a child that overruns it by `GRACE`) and an
address-space limit of its own. Whatever goes wrong there is
a `TemplateError`, which the rule machine records against the rule as a render error; the
worker, and its other teams' events, carry on.

Children are kept in a small pool (a render costs a pipe round trip, ~0.2 ms; starting one
~0.1 s) and replaced when killed. Text without Jinja markup needs no child at all.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Bytes (UTF-8) one rendered field may have by default (a title or a message: a page, not
#: a book), and the most a setting may allow: the child's memory limit must hold it.
MAX_OUTPUT_BYTES = 65536
MAX_OUTPUT_BYTES_CEILING = 16 * 1024 * 1024
#: Seconds one render may take by default.
TIME_LIMIT = 2.0
#: How long past `TIME_LIMIT` the parent waits before it kills the child.
GRACE = 1.0
#: Idle children kept for the next renders.
POOL_SIZE = 4

_CHILD = Path(__file__).with_name("sandbox_child.py")


@dataclass(frozen=True)
class Limits:
    """What one render of one field may take: `output_bytes` of output (UTF-8) and
    `seconds` of time (`Settings.template_limits`)."""

    output_bytes: int = MAX_OUTPUT_BYTES
    seconds: float = TIME_LIMIT


DEFAULT_LIMITS = Limits()


class TemplateError(Exception):
    """An incident template failed to render: syntax, an undefined name, a sandbox refusal,
    or a limit (output, time, memory)."""


class _ChildGone(Exception):
    pass


class _Child:
    """One renderer process and its pipes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(_CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={"PATH": os.environ.get("PATH", "")},
        )

    def ask(self, request: bytes, deadline: float) -> dict[str, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(struct.pack(">I", len(request)) + request)
            self.proc.stdin.flush()
        except OSError as exc:
            raise _ChildGone(str(exc)) from None
        fd = self.proc.stdout.fileno()
        (size,) = struct.unpack(">I", self._read(fd, 4, deadline))
        answer: dict[str, str] = json.loads(self._read(fd, size, deadline))
        return answer

    @staticmethod
    def _read(fd: int, size: int, deadline: float) -> bytes:
        data = b""
        while len(data) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            part = os.read(fd, size - len(data))
            if not part:
                raise _ChildGone("the renderer exited")
            data += part
        return data

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


_idle: list[_Child] = []
_lock = threading.Lock()


def _take() -> _Child:
    with _lock:
        while _idle:
            child = _idle.pop()
            if child.proc.poll() is None:
                return child
            child.close()
    return _Child()


def _give_back(child: _Child) -> None:
    with _lock:
        if len(_idle) < POOL_SIZE:
            _idle.append(child)
            return
    child.close()


@atexit.register
def close_all() -> None:
    """Stop the idle children (at exit; their pipes closing would stop them anyway)."""
    with _lock:
        children = list(_idle)
        _idle.clear()
    for child in children:
        child.close()


def _plain(text: str) -> bool:
    """Text Jinja would give back unchanged (but for one trailing newline, which it drops)."""
    return "{" not in text and "\r" not in text


def render(text: str, context: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS) -> str:
    """`text` rendered with `context` (JSON-like values) in the bounded sandbox; raises
    `TemplateError` saying what went wrong."""
    seconds = limits.seconds
    if _plain(text):
        if len(text.encode()) > limits.output_bytes:
            raise TemplateError(
                f"the output is longer than the limit of {limits.output_bytes:,} bytes"
            )
        return text[:-1] if text.endswith("\n") else text
    request = json.dumps(
        {"text": text, "context": context, "max_output": limits.output_bytes, "seconds": seconds},
        default=str,
    ).encode()
    child = _take()
    try:
        answer = child.ask(request, time.monotonic() + seconds + GRACE)
    except TimeoutError:
        child.close()
        raise TemplateError(f"rendering took longer than the limit of {seconds:g} s") from None
    except _ChildGone:
        child.close()
        raise TemplateError("the renderer stopped (out of memory?)") from None
    except BaseException:
        child.close()
        raise
    _give_back(child)
    if "error" in answer:
        raise TemplateError(answer["error"])
    return answer["ok"]
