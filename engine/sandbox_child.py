"""The incident-template renderer's child process (run by `engine.sandbox`, never imported).

Reads requests from stdin and writes answers to stdout, each a 4-byte big-endian length and
a JSON object: `{"text", "context", "max_output", "seconds"}` in, `{"ok": text}` or
`{"error": message}` out. It renders in Jinja's sandbox with strict undefineds and, on top:

- operators that multiply sizes (`*`, `+` on sequences, `**`) are refused before they
  allocate a result longer than `max_output`;
- the output is counted as it is generated and refused past `max_output` bytes (UTF-8);
  the operators' checks count items, never more than the bytes they make;
- a render that runs past `seconds` is interrupted (SIGALRM); one stuck inside a single C
  call is killed by the parent;
- the whole process may use at most `MEMORY_BYTES` of address space (what slips past the
  checks above fails with MemoryError here, not in the worker).

Runs as `python -I this-file`: it needs nothing but the standard library and Jinja.
"""

from __future__ import annotations

import json
import resource
import signal
import struct
import sys
from collections import OrderedDict
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment, SecurityError

MEMORY_BYTES = 256 * 1024 * 1024
#: The bits of the largest integer `**` may make (a 300-digit number is far past any use).
MAX_POWER_BITS = 1024


class TimeUp(Exception):
    pass


class Bounded(SandboxedEnvironment):
    """Jinja's sandbox, with size checks on the operators that multiply sizes."""

    intercepted_binops = frozenset(["*", "+", "**"])
    max_output = 65536

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
                if right * max(left.bit_length(), 1) > MAX_POWER_BITS:
                    raise SecurityError(f"{left} ** {right} is too large a number")
        elif operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    if len(seq) * times > self.max_output:
                        raise SecurityError(
                            f"'*' would make {len(seq) * times:,} items, "
                            f"more than the limit of {self.max_output:,}"
                        )
        elif operator == "+" and isinstance(left, str | list | tuple):
            if isinstance(right, str | list | tuple) and len(left) + len(right) > self.max_output:
                raise SecurityError(f"'+' would make more than {self.max_output:,} items")
        return super().call_binop(context, operator, left, right)


ENV = Bounded(undefined=jinja2.StrictUndefined, autoescape=False)
_compiled: OrderedDict[str, jinja2.Template] = OrderedDict()


def _template(text: str) -> jinja2.Template:
    template = _compiled.pop(text, None) or ENV.from_string(text)
    _compiled[text] = template
    while len(_compiled) > 256:
        _compiled.popitem(last=False)
    return template


def _alarm(signum: int, frame: Any) -> None:
    raise TimeUp()


def render(request: dict[str, Any]) -> dict[str, str]:
    limit = int(request["max_output"])
    seconds = float(request["seconds"])
    ENV.max_output = limit
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        parts: list[str] = []
        size = 0
        for part in _template(request["text"]).generate(**request["context"]):
            size += len(part) if part.isascii() else len(part.encode())
            if size > limit:
                return {"error": f"the output is longer than the limit of {limit:,} bytes"}
            parts.append(part)
        return {"ok": "".join(parts)}
    except TimeUp:
        return {"error": f"rendering took longer than the limit of {seconds:g} s"}
    except MemoryError:
        return {"error": f"rendering needed more than {MEMORY_BYTES // 2**20} MB of memory"}
    except RecursionError:
        return {"error": "the template recurses too deeply"}
    except jinja2.TemplateError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a template can raise anything its values' methods raise
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _read(stream: Any, size: int) -> bytes:
    data = b""
    while len(data) < size:
        part = stream.read(size - len(data))
        if not part:
            raise EOFError
        data += part
    return data


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    signal.signal(signal.SIGALRM, _alarm)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            (size,) = struct.unpack(">I", _read(stdin, 4))
            request = json.loads(_read(stdin, size))
        except EOFError:
            return
        answer = json.dumps(render(request)).encode()
        stdout.write(struct.pack(">I", len(answer)) + answer)
        stdout.flush()


if __name__ == "__main__":
    main()
