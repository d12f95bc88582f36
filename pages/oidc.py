"""Single sign-on with OpenID Connect: `GET /login/oidc` and its callback.

With `BEACON_OIDC_ISSUER` set, the sign-in page offers "Sign in with <name>": Beacon sends
the browser to the provider (authorization code flow with PKCE, a nonce and a state kept
in the signed session cookie), takes the code back at `/login/oidc/callback`, and lets
authlib check the ID token (signature by the issuer's keys, issuer, audience, expiry,
nonce). The user is the account with the token's email, which the provider must have
verified (`email_verified`), or a new one; the role and teams follow the configured claims
at every sign-in (`engine.accounts.sso_user`). Then a session starts as for a password.
"""

from __future__ import annotations

from typing import Any

from authlib.integrations.starlette_client import OAuth, OAuthError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from engine import accounts
from engine.errors import ValidationError
from engine.settings import Settings

from .login import NO_STORE, html, safe_next, sign_in

CALLBACK = "/login/oidc/callback"


def _client(request: Request) -> Any:
    """The provider's client, built once per app (authlib caches its metadata and keys)."""
    state = request.app.state
    settings: Settings = state.settings
    if not settings.oidc_issuer:
        return None
    if getattr(state, "oidc", None) is None:
        oauth = OAuth()
        oauth.register(
            "beacon",
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret.get_secret_value(),
            server_metadata_url=settings.oidc_issuer.rstrip("/")
            + "/.well-known/openid-configuration",
            client_kwargs={
                "scope": settings.oidc_scopes,
                "code_challenge_method": "S256",
                "timeout": 10.0,
            },
        )
        state.oidc = oauth.create_client("beacon")
    return state.oidc


def _failed(message: str, status: int = 400) -> Response:
    return html("login.html", status, error=message, email="", next="/", csrf="", oidc=None)


async def start(request: Request) -> Response:
    """Send the browser to the provider's sign-in."""
    client = _client(request)
    if client is None:
        return _failed("Single sign-on is not set up on this Beacon.", 404)
    request.session["oidc_next"] = safe_next(request.query_params.get("next"))
    redirect_uri = request.app.state.settings.base_url + CALLBACK
    try:
        response: Response = await client.authorize_redirect(request, redirect_uri)
    except Exception as exc:  # the provider's metadata could not be read: say so
        return _failed(f"The sign-in provider could not be reached ({type(exc).__name__}).", 502)
    response.headers.update(NO_STORE)
    return response


def _claim_list(claims: dict[str, Any], name: str) -> list[str] | None:
    """A claim as a list of strings (a single string is a list of one); None if absent."""
    if not name or name not in claims:
        return None
    value = claims[name]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int)]
    return []


async def callback(request: Request) -> Response:
    """The provider's answer: check it, find or make the user, start a session."""
    client = _client(request)
    if client is None:
        return _failed("Single sign-on is not set up on this Beacon.", 404)
    try:
        token = await client.authorize_access_token(request)
    except OAuthError as exc:
        return _failed(f"Single sign-on failed: {exc.description or exc.error}.")
    claims = dict(token.get("userinfo") or {})
    if not claims.get("email") or claims.get("email_verified") is not True:
        return _failed("The sign-in provider did not confirm an email address for you.", 403)
    settings: Settings = request.app.state.settings
    try:
        user_id = await run_in_threadpool(
            accounts.sso_user,
            request.app.state.store,
            str(claims["email"]),
            roles=_claim_list(claims, settings.oidc_role_claim),
            teams=_claim_list(claims, settings.oidc_teams_claim),
            default_role=settings.oidc_default_role,
        )
    except ValidationError as exc:
        return _failed(f"Your account could not be set up: {exc}.", 403)
    if user_id is None:
        return _failed("Your Beacon account is deactivated.", 403)
    next_path = safe_next(request.session.get("oidc_next"))
    await run_in_threadpool(sign_in, request, user_id, "oidc")
    return RedirectResponse(next_path, status_code=303, headers=NO_STORE)


routes: list[BaseRoute] = [
    Route("/login/oidc", start, methods=["GET"]),
    Route(CALLBACK, callback, methods=["GET"]),
]
