"""Slack, Discord and Microsoft Teams incoming webhooks (issue 15, item 8): each message in
its tool's own format, taken by a stand-in that checks it as the tool does, within the
tool's limits however long the alert's text; failures temporary or permanent as for every
channel."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.channels import ChannelError, Context, Message, get_channel
from tests.chat_standins import ChatTools, discord_problem, slack_problem, teams_problem

CTX = Context(allow_private=True)
FIRING = Message(
    subject="Firing: Public API (api-down)",
    text="[Public API] [Down] <timeout> & retries exhausted @everyone",
    payload={"rule": "api-down", "state": "firing", "services": ["Public API"]},
    link="http://status.test/p/acme/incidents/abc123",
)
RESOLVED = Message(
    subject="Resolved: Public API (api-down)",
    text="",
    payload={"rule": "api-down", "state": "resolved", "services": ["Public API"]},
    link="http://status.test/p/acme/incidents/abc123",
)
HUGE = Message(
    subject="Firing: " + "Very Long Service Name " * 40,
    text="word " * 5000,
    payload={"rule": "r" * 300, "state": "firing", "services": ["svc " * 100] * 20},
    link="http://status.test/p/acme/",
)


@pytest.fixture
def tools() -> Iterator[ChatTools]:
    server = ChatTools()
    yield server
    server.close()


def _send(kind: str, tools: ChatTools, message: Message) -> Any:
    get_channel(kind).send(message, {"url": f"{tools.url}/{kind}/hook"}, CTX)
    assert not tools.refused[kind]
    return tools.accepted[kind][-1]


def test_slack_gets_blocks_and_a_text_that_says_everything_alone(tools: ChatTools) -> None:
    body = _send("slack", tools, FIRING)
    header, section, context, actions = body["blocks"]
    assert header["text"] == {"type": "plain_text", "text": ":red_circle: " + FIRING.subject}
    # mrkdwn reads <, > and &: escaped, or "<timeout>" would be taken for a link.
    assert section["text"]["text"] == (
        "[Public API] [Down] &lt;timeout&gt; &amp; retries exhausted @everyone"
    )
    assert "Rule `api-down`" in context["elements"][0]["text"]
    assert actions["elements"][0]["url"] == FIRING.link
    text = body["text"]
    assert text.startswith("*Firing: Public API (api-down)*\n[Public API] [Down] &lt;timeout&gt;")
    assert f"<{FIRING.link}|Open in Beacon>" in text
    resolved = _send("slack", tools, RESOLVED)
    assert resolved["blocks"][0]["text"]["text"].startswith(":large_green_circle: ")


def test_discord_gets_one_embed_coloured_by_state_and_pings_nobody(tools: ChatTools) -> None:
    body = _send("discord", tools, FIRING)
    (embed,) = body["embeds"]
    assert embed["title"] == FIRING.subject and embed["url"] == FIRING.link
    assert embed["description"] == FIRING.text
    assert embed["color"] == 0xD1242F
    assert {"name": "Services", "value": "Public API"} in embed["fields"]
    # The alert's "@everyone" stays text: no mention is parsed.
    assert body["allowed_mentions"] == {"parse": []}
    (resolved,) = _send("discord", tools, RESOLVED)["embeds"]
    assert resolved["color"] == 0x1A7F37 and "description" not in resolved


def test_teams_gets_an_adaptive_card_in_an_attachments_envelope(tools: ChatTools) -> None:
    body = _send("teams", tools, FIRING)
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    title, text, facts = card["body"]
    assert title["text"] == FIRING.subject and title["color"] == "Attention"
    assert text["text"] == FIRING.text
    assert {"title": "Rule", "value": "api-down"} in facts["facts"]
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open in Beacon", "url": FIRING.link}
    ]
    resolved = _send("teams", tools, RESOLVED)["attachments"][0]["content"]
    assert resolved["body"][0]["color"] == "Good"


@pytest.mark.parametrize("kind", ["slack", "discord", "teams"])
def test_a_message_far_over_the_tools_limits_is_clipped_and_taken(
    tools: ChatTools, kind: str
) -> None:
    body = _send(kind, tools, HUGE)
    assert "\u2026" in str(body)  # cut, and marked as cut


@pytest.mark.parametrize("kind", ["slack", "discord", "teams"])
def test_429_and_5xx_are_temporary_404_permanent_and_retry_after_kept(
    tools: ChatTools, kind: str
) -> None:
    target = {"url": f"{tools.url}/{kind}/hook"}
    tools.fail(429, retry_after="30")
    with pytest.raises(ChannelError) as caught:
        get_channel(kind).send(FIRING, target, CTX)
    assert not caught.value.permanent and caught.value.retry_after == 30
    tools.fail(503)
    with pytest.raises(ChannelError) as caught:
        get_channel(kind).send(FIRING, target, CTX)
    assert not caught.value.permanent
    tools.fail(404)
    with pytest.raises(ChannelError) as caught:
        get_channel(kind).send(FIRING, target, CTX)
    assert caught.value.permanent


def test_the_stand_in_refuses_what_each_tool_refuses(tools: ChatTools) -> None:
    """The stand-in is only worth what its checks are: each limit, one over."""
    assert slack_problem({}) == "no_text"
    assert (
        slack_problem(
            {"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}]}
        )
        == "invalid_blocks"
    )  # noqa: E501
    assert (
        slack_problem(
            {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]}
        )
        == "invalid_blocks"
    )  # noqa: E501
    assert slack_problem({"text": "x", "blocks": [{"type": "nonsense"}]}) == "invalid_blocks"
    assert slack_problem({"text": "fine"}) is None
    assert discord_problem({})["code"] == 50006  # type: ignore[index]
    over = [
        {"content": "x" * 2001},
        {"embeds": [{"title": "t"}] * 11},
        {"embeds": [{"title": "x" * 257}]},
        {"embeds": [{"description": "x" * 4097}]},
        {"embeds": [{"title": "t", "fields": [{"name": "n", "value": ""}]}]},
        {
            "embeds": [
                {"description": "x" * 4000, "fields": [{"name": "n", "value": "v" * 1024}] * 2}
            ]
        },  # noqa: E501
        {"embeds": [{"title": "t", "color": 0x1000000}]},
    ]
    for body in over:
        problem = discord_problem(body)
        assert problem is not None and problem["code"] == 50035, body
    assert discord_problem({"content": "x" * 2000}) is None
    card = {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "x"}]}
    good = {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }  # noqa: E501
    assert teams_problem(good) is None
    assert teams_problem({"text": "a MessageCard-less text"}) is not None
    wrong_type = {**good, "attachments": [{"contentType": "application/json", "content": card}]}
    assert teams_problem(wrong_type) is not None
    answer = httpx.post(f"{tools.url}/discord/hook", json={"content": "x" * 2001})
    assert answer.status_code == 400 and answer.json()["message"] == "Invalid Form Body"


@pytest.mark.parametrize("kind", ["slack", "discord", "teams"])
def test_a_chat_hook_to_a_private_address_is_refused_unless_allowed(
    kind: str, tools: ChatTools
) -> None:
    """Tried as an attacker: a team's chat channel pointed at Beacon's own network (a
    loopback stand-in here) is refused as a webhook is, before any request, unless the
    operator allows private targets."""
    with pytest.raises(ChannelError, match="loopback") as caught:
        get_channel(kind).send(FIRING, {"url": f"{tools.url}/{kind}/hook"}, Context())
    assert caught.value.permanent
    assert not tools.accepted[kind] and not tools.refused[kind]
    _send(kind, tools, FIRING)
