"""A loopback stand-in for the chat tools' incoming webhooks that checks each message as the
tool does and answers as it does: Slack under `/slack/...`, Discord under `/discord/...`,
Microsoft Teams under `/teams/...`.

What is checked follows each tool's reference:
- Slack (api.slack.com/messaging/webhooks, /reference/block-kit/blocks): `text` or `blocks`
  (else 400 `no_text`); at most 50 blocks of known types; a header's `plain_text` at most
  150 characters, a section's text at most 3,000, a button's label 75 and URL 3,000 (else
  400 `invalid_blocks`); 200 `ok` as text/plain.
- Discord (discord.com/developers/docs/resources/webhook#execute-webhook, embed limits):
  `content` at most 2,000 characters, at most 10 embeds; title 256, description 4,096, 25
  fields of name 256 and value 1,024 (neither empty), footer 2,048, 6,000 characters per
  embed in all; colour an integer 0..0xFFFFFF; an embed URL http(s) (else 400 `{"code":
  50035, "message": "Invalid Form Body", "errors": ...}`); nothing to show is 400 code
  50006; 204 with no body.
- Teams (Workflows webhooks): a message whose `attachments` each carry `contentType`
  `application/vnd.microsoft.card.adaptive` and an `AdaptiveCard` with a `version` and a
  `body` of elements with a `type`; 202 with no body. (A Workflow answers 202 and fails
  later on a bad card; the stand-in answers 400 so that a test sees it.)

`fail(status, retry_after=None)` queues answers for the next requests, whatever the tool.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections import defaultdict
from typing import Any

SLACK_BLOCKS = {"header", "section", "context", "actions", "divider", "image", "rich_text"}
CARD_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_ELEMENTS = {
    "TextBlock",
    "FactSet",
    "Container",
    "ColumnSet",
    "Image",
    "RichTextBlock",
    "ActionSet",
}
_URL = re.compile(r"^https?://[^\s]+$")


def slack_problem(body: Any) -> str | None:
    """Slack's error code for a webhook message, or None when Slack takes it."""
    if not isinstance(body, dict):
        return "invalid_payload"
    blocks = body.get("blocks")
    if not body.get("text") and not blocks:
        return "no_text"
    if blocks is None:
        return None
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in SLACK_BLOCKS:
            return "invalid_blocks"
        text = block.get("text")
        if kind == "header" and (
            not isinstance(text, dict)
            or text.get("type") != "plain_text"
            or not 0 < len(str(text.get("text", ""))) <= 150
        ):
            return "invalid_blocks"
        if (
            kind == "section"
            and text is not None
            and (
                not isinstance(text, dict)
                or text.get("type") not in ("plain_text", "mrkdwn")
                or not 0 < len(str(text.get("text", ""))) <= 3000
            )
        ):
            return "invalid_blocks"
        if kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 0 < len(elements) <= 10:
                return "invalid_blocks"
        if kind == "actions":
            for element in block.get("elements") or []:
                label = (element.get("text") or {}).get("text", "")
                url = element.get("url", "")
                if not 0 < len(label) <= 75 or (url and (len(url) > 3000 or not _URL.match(url))):
                    return "invalid_blocks"
    return None


def _embed_problems(n: int, embed: Any) -> dict[str, str]:
    where = f"embeds.{n}"
    if not isinstance(embed, dict):
        return {where: "must be an object"}
    problems: dict[str, str] = {}
    limits = {"title": 256, "description": 4096}
    total = 0
    for name, limit in limits.items():
        value = embed.get(name)
        if value is not None:
            total += len(str(value))
            if len(str(value)) > limit:
                problems[f"{where}.{name}"] = f"Must be {limit} or fewer in length."
    fields = embed.get("fields") or []
    if len(fields) > 25:
        problems[f"{where}.fields"] = "Must be 25 or fewer in length."
    for i, field in enumerate(fields):
        name, value = str(field.get("name") or ""), str(field.get("value") or "")
        total += len(name) + len(value)
        if not 0 < len(name) <= 256:
            problems[f"{where}.fields.{i}.name"] = "Must be between 1 and 256 in length."
        if not 0 < len(value) <= 1024:
            problems[f"{where}.fields.{i}.value"] = "Must be between 1 and 1024 in length."
    footer = (embed.get("footer") or {}).get("text", "")
    total += len(footer)
    if len(footer) > 2048:
        problems[f"{where}.footer.text"] = "Must be 2048 or fewer in length."
    if total > 6000:
        problems[where] = "Embed size exceeds maximum size of 6000"
    color = embed.get("color")
    if color is not None and (not isinstance(color, int) or not 0 <= color <= 0xFFFFFF):
        problems[f"{where}.color"] = "Int value should be less than or equal to 16777215."
    url = embed.get("url")
    if url is not None and not _URL.match(str(url)):
        problems[f"{where}.url"] = "Not a well formed URL."
    return problems


def discord_problem(body: Any) -> dict[str, Any] | None:
    """Discord's 400 answer for a webhook message, or None when Discord takes it."""
    if not isinstance(body, dict):
        return {"code": 50109, "message": "The request body contains invalid JSON."}
    content = body.get("content") or ""
    embeds = body.get("embeds") or []
    if not content and not embeds:
        return {"code": 50006, "message": "Cannot send an empty message"}
    problems: dict[str, str] = {}
    if len(content) > 2000:
        problems["content"] = "Must be 2000 or fewer in length."
    if not isinstance(embeds, list) or len(embeds) > 10:
        problems["embeds"] = "Must be 10 or fewer in length."
    else:
        for n, embed in enumerate(embeds):
            problems.update(_embed_problems(n, embed))
    if problems:
        return {"code": 50035, "message": "Invalid Form Body", "errors": problems}
    return None


def teams_problem(body: Any) -> str | None:
    """Why a Teams webhook would not show the message, or None."""
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    attachments = body.get("attachments")
    if body.get("type") != "message" or not isinstance(attachments, list) or not attachments:
        return "expected a message with attachments"
    for attachment in attachments:
        if attachment.get("contentType") != CARD_TYPE:
            return f"attachment contentType must be {CARD_TYPE}"
        card = attachment.get("content")
        if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
            return "attachment content must be an AdaptiveCard"
        if not card.get("version"):
            return "an AdaptiveCard needs a version"
        elements = card.get("body")
        if not isinstance(elements, list) or not elements:
            return "an AdaptiveCard needs a body"
        for element in elements:
            if element.get("type") not in CARD_ELEMENTS:
                return f"unknown card element {element.get('type')!r}"
            if element.get("type") == "TextBlock" and not element.get("text"):
                return "a TextBlock needs text"
    if len(json.dumps(body)) > 28_000:
        return "the message is over 28 KB"
    return None


class ChatTools:
    """The three tools' webhooks on one loopback server. `accepted[tool]` and
    `refused[tool]` keep the JSON bodies taken and turned down."""

    def __init__(self) -> None:
        self.accepted: dict[str, list[Any]] = defaultdict(list)
        self.refused: dict[str, list[Any]] = defaultdict(list)
        self._failures: list[tuple[int, str | None]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                status, content_type, answer, headers = outer._answer(self.path, raw)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if answer:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fail(self, status: int, retry_after: str | None = None) -> None:
        with self.lock:
            self._failures.append((status, retry_after))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, path: str, raw: bytes) -> tuple[int, str, bytes, dict[str, str]]:
        tool = path.strip("/").split("/", 1)[0]
        with self.lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            status, retry_after = failure
            headers = {"Retry-After": retry_after} if retry_after else {}
            return status, "text/plain", b"failing on purpose", headers
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if tool == "slack":
            problem = slack_problem(body)
            if problem:
                return self._refuse(tool, body, 400, "text/plain", problem.encode())
            return self._accept(tool, body, 200, "text/plain", b"ok")
        if tool == "discord":
            error = discord_problem(body)
            if error:
                return self._refuse(tool, body, 400, "application/json", json.dumps(error).encode())
            return self._accept(tool, body, 204, "", b"")
        if tool == "teams":
            reason = teams_problem(body)
            if reason:
                return self._refuse(tool, body, 400, "text/plain", reason.encode())
            return self._accept(tool, body, 202, "", b"")
        return 404, "text/plain", b"no_service", {}

    def _accept(
        self, tool: str, body: Any, status: int, kind: str, answer: bytes
    ) -> tuple[int, str, bytes, dict[str, str]]:
        with self.lock:
            self.accepted[tool].append(body)
        return status, kind, answer, {}

    def _refuse(
        self, tool: str, body: Any, status: int, kind: str, answer: bytes
    ) -> tuple[int, str, bytes, dict[str, str]]:
        with self.lock:
            self.refused[tool].append(body)
        return status, kind, answer, {}
