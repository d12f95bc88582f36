"""A signed-in user's own feed links (engine.feed_tokens): a private page's RSS, Atom and
calendar for readers that send no cookie. `GET/POST /api/v1/feed-links`,
`DELETE /api/v1/feed-links/{id}`; the link is shown once, when made.

Feed links are a user's: an API key has none (its list is empty, and it cannot make one:
a key reads feeds with its own header). A caller sees and revokes only their own links;
another's answer 404, as if it did not exist.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException

from engine import access, feed_tokens
from engine.errors import NotFoundError

from .api import Ctx, Endpoint
from .schemas import FeedLinkIn, FeedLinkOut, FeedLinkUrls


def link_urls(base_url: str, slug: str, token: str) -> FeedLinkUrls:
    """The three addresses of a link (pages.feeds serves them)."""
    root = f"{base_url.rstrip('/')}/p/{slug}/feeds/{token}/"
    return FeedLinkUrls(
        rss=root + "history.rss", atom=root + "history.atom", calendar=root + "maintenance.ics"
    )


def _out(link: feed_tokens.FeedToken, urls: FeedLinkUrls | None = None) -> FeedLinkOut:
    return FeedLinkOut(
        id=link.id,
        prefix=link.prefix,
        page=link.page_slug,
        page_name=link.page_name,
        created_at=link.created_at,
        last_used_at=link.last_used_at,
        urls=urls,
    )


def list_links(ctx: Ctx) -> list[FeedLinkOut]:
    if ctx.who.user_id is None:
        return []
    with ctx.store.read() as conn:
        return [_out(link) for link in feed_tokens.list_for(conn, ctx.who.user_id)]


def create_link(ctx: Ctx) -> FeedLinkOut:
    body: FeedLinkIn = ctx.body
    if ctx.who.user_id is None:
        raise HTTPException(403, "feed links are a signed-in user's; an API key has none")
    with ctx.begin() as conn:
        # As the page's routes ask (engine.access): a page the user may not read is the
        # same 404 as one that does not exist.
        decision = access.check(conn, body.page, ctx.who, access.Want.DATA)
        if not decision.allowed or decision.page is None:
            raise NotFoundError(f"no status page {body.page!r}")
        made = feed_tokens.create(conn, ctx.who.user_id, decision.page.id, actor=ctx.who.actor)
        link = next(t for t in feed_tokens.list_for(conn, ctx.who.user_id) if t.id == made.id)
    return _out(link, link_urls(ctx.base_url, link.page_slug, made.token))


def revoke_link(ctx: Ctx) -> None:
    if ctx.who.user_id is None:
        raise NotFoundError(f"no feed link {ctx.id}")
    with ctx.begin() as conn:
        feed_tokens.revoke(conn, ctx.id, ctx.who.user_id, actor=ctx.who.actor)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/v1/feed-links",
        list_links,
        "List your feed links",
        "feed links",
        response=FeedLinkOut,
        many=True,
    ),
    Endpoint(
        "POST",
        "/api/v1/feed-links",
        create_link,
        "Make a feed link for a page you may read (its URLs are shown once)",
        "feed links",
        body=FeedLinkIn,
        response=FeedLinkOut,
        status=201,
    ),
    Endpoint(
        "DELETE",
        "/api/v1/feed-links/{id:int}",
        revoke_link,
        "Revoke one of your feed links",
        "feed links",
        status=204,
    ),
]
