"""Message templates for subscribers: email (subject, text, HTML) and SMS, per notice kind.

Jinja's messages environment (STYLE.md, habit 8): `StrictUndefined`, so a missing value is an
error in tests rather than a blank in a customer's inbox; HTML templates are autoescaped
(incident titles and bodies are user text), text templates are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

HERE = Path(__file__).parent
ENV = Environment(
    loader=FileSystemLoader(HERE),
    undefined=StrictUndefined,
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    trim_blocks=True,
    lstrip_blocks=True,
)
KINDS = ("incident", "maintenance", "component", "confirm")


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str


def _one(kind: str, name: str, context: dict[str, Any]) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown message kind {kind!r} (known: {', '.join(KINDS)})")
    return ENV.get_template(f"{kind}.{name}").render(context).strip()


def email(kind: str, context: dict[str, Any]) -> Email:
    """The `kind` email for `context` (a `jinja2.UndefinedError` names a missing value)."""
    # A subject is one line: a title with a newline in it would break the header.
    subject = " ".join(_one(kind, "subject.txt", context).split())
    return Email(subject, _one(kind, "txt", context) + "\n", _one(kind, "html", context))


def sms(kind: str, context: dict[str, Any]) -> tuple[str, str]:
    """The `kind` SMS for `context`: its text on one line, and its link apart (the channel
    fits the text into one message and never cuts the link)."""
    text = " ".join(_one(kind, "sms.txt", context).split())
    if kind == "incident":
        return text, str(context["incident"]["url"])
    if kind == "confirm":
        return text, str(context["confirm_url"])
    return text, str(context["page"]["url"])
