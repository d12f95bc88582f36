"""Status pages in the admin UI: the list, create and settings (type, address, teams,
services picked, ordered and grouped, logo and favicon), visit (the preview) and activate:
iLert's status-page click-flows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine.assets import check_bytes, limit_for
from pages.admin import incidents as incidents_api
from pages.admin import services as services_api
from pages.admin import statuspages as api
from pages.admin.schemas import PageIn, PagePatch, ServiceIn
from pages.auth import Principal

from .web import Problem, call, form_of, model, redirect, render, team_choices, text, texts, view

IMAGES = ("logo", "favicon")


async def visible_pages(request: Request, who: Principal) -> list[Any]:
    """The pages `who` may see (their teams' pages; all for an admin)."""
    return list(await call(request, who, api.list_pages))


@view(manage=False)
async def home(request: Request, who: Principal) -> Response:
    """The admin home: what needs attention (open incidents, services not operational,
    public pages nobody can see yet) and the pages; for a stakeholder, only the links to
    their teams' pages."""
    pages = await visible_pages(request, who)
    if who.role == "stakeholder":
        return render(request, who, "home.html", pages=pages)
    incidents = [i for i in await call(request, who, incidents_api.list_incidents)]
    services = await call(request, who, services_api.list_services)
    return render(
        request,
        who,
        "home.html",
        pages=pages,
        open_incidents=[i for i in incidents if i.status != "resolved"],
        troubled=[s for s in services if s.status != "operational"],
        hidden=[p for p in pages if p.type == "public" and not p.active],
    )


@view()
async def page_list(request: Request, who: Principal) -> Response:
    """Every page the caller manages, saying which ones visitors cannot see yet."""
    return render(request, who, "pages.html", pages=await visible_pages(request, who))


# --- the form ---------------------------------------------------------------------------------


@dataclass
class Draft:
    """What the page form shows: the values as entered (or stored) and the services picked,
    in order."""

    name: str = ""
    slug: str = ""
    type: str = "public"
    teams: list[str] | None = None
    services: list[int] | None = None
    time_zone: str = "UTC"
    new_service: dict[str, str] | None = None


def addresses(request: Request, slug: str) -> dict[str, str]:
    """The addresses a page with `slug` has or can have (shown while typing the slug)."""
    settings = request.app.state.settings
    base = str(settings.base_url).rstrip("/")
    out = {"path": f"{base}/p/{slug or '<slug>'}/"}
    if settings.pages_domain:
        out["host"] = f"https://{slug or '<slug>'}.{settings.pages_domain}/"
    return out


async def _form_context(request: Request, who: Principal, draft: Draft) -> dict[str, Any]:
    services = await call(request, who, services_api.list_services)
    picked = draft.services or []
    order = {sid: i for i, sid in enumerate(picked)}
    ordered = sorted(
        services, key=lambda s: (s.id not in order, order.get(s.id, 0), s.team, s.name)
    )
    return {
        "draft": draft,
        "teams": team_choices(request, who),
        "services": ordered,
        "picked": set(picked),
        "addresses": addresses(request, draft.slug),
        "pages_domain": request.app.state.settings.pages_domain,
    }


def _draft_of(form: FormData) -> Draft:
    picked: list[tuple[int, int, int]] = []
    for index, value in enumerate(texts(form, "services")):
        if not value.isdigit():
            continue
        position = text(form, f"position-{value}")
        rank = int(position) if position.lstrip("-").isdigit() else 10_000 + index
        picked.append((rank, index, int(value)))
    new = {k: text(form, f"new_service_{k}") for k in ("name", "key", "group")}
    return Draft(
        name=text(form, "name"),
        slug=text(form, "slug").lower(),
        type=text(form, "type") or "public",
        teams=texts(form, "teams"),
        services=[sid for _, _, sid in sorted(picked)],
        time_zone=text(form, "time_zone") or "UTC",
        new_service=new if new["name"] or new["key"] else None,
    )


def _uploads(form: FormData) -> dict[str, bytes]:
    """The logo and favicon files chosen in the form, checked before anything is saved."""
    found: dict[str, bytes] = {}
    errors = []
    for role in IMAGES:
        upload = form.get(role)
        if not isinstance(upload, UploadFile) or not upload.filename:
            continue
        data = upload.file.read(limit_for(role) + 1)
        try:
            if len(data) > limit_for(role):
                raise ValueError(f"the file is larger than {limit_for(role) // 1024} KB")
            check_bytes(data, role=role)
        except ValueError as exc:
            errors.append({"field": role, "message": str(exc)})
            continue
        found[role] = data
    if errors:
        raise Problem(errors)
    return found


async def _picker_service(request: Request, who: Principal, draft: Draft) -> None:
    """Create the service typed into the picker (in the page's first team) and pick it."""
    if draft.new_service is None:
        return
    new = draft.new_service
    try:
        body = model(
            ServiceIn,
            {
                "key": new["key"] or _key_of(new["name"]),
                "name": new["name"],
                "group": new["group"] or None,
                "team": draft.teams[0] if draft.teams else None,
            },
        )
        created = await call(request, who, services_api.create_service, body)
    except Problem as exc:
        # Shown at the picker's own fields, not at the page's fields of the same name.
        errors = [{**e, "field": "new_service_" + (e["field"] or "name")} for e in exc.errors]
        raise Problem(errors) from None
    draft.services = [*(draft.services or []), created.id]
    draft.new_service = None


def _key_of(name: str) -> str:
    key = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    while "--" in key:
        key = key.replace("--", "-")
    return key[:64] or "service"


async def _save_images(
    request: Request, who: Principal, page_id: int, files: dict[str, bytes]
) -> None:
    handlers = {"logo": api._image("logo"), "favicon": api._image("favicon")}
    for role, data in files.items():
        await call(request, who, handlers[role], data, id=page_id)


@view()
async def page_addresses(request: Request, who: Principal) -> Response:
    """The addresses a slug gives (htmx swaps them in while the slug is typed)."""
    slug = request.query_params.get("slug", "").strip().lower()[:63]
    return render(request, who, "page_addresses.html", addresses=addresses(request, slug))


@view()
async def new_page(request: Request, who: Principal) -> Response:
    """The Create status page form."""
    draft = Draft(teams=[t.key for t in team_choices(request, who)][:1])
    return render(request, who, "page_form.html", **await _form_context(request, who, draft))


@view()
async def create_page(request: Request, who: Principal) -> Response:
    """Save a new page (inactive: Visit shows its preview, Activate makes it visible)."""
    form = await form_of(request)
    draft = _draft_of(form)
    try:
        files = _uploads(form)
        await _picker_service(request, who, draft)
        body = model(
            PageIn,
            {
                "slug": draft.slug,
                "name": draft.name,
                "type": draft.type,
                "teams": draft.teams,
                "services": draft.services,
                "time_zone": draft.time_zone,
            },
        )
        created = await call(request, who, api.create_page, body)
        await _save_images(request, who, created.id, files)
    except Problem as exc:
        context = await _form_context(request, who, draft)
        return render(request, who, "page_form.html", 422, problem=exc, **context)
    return redirect(request, f"/admin/pages/{created.id}", f"Status page {created.name} saved.")


@view()
async def show_page(request: Request, who: Principal) -> Response:
    """A page's settings (the same form, filled in), with Visit and Activate."""
    page = await call(request, who, api.get_page, id=request.path_params["id"])
    draft = Draft(
        name=page.name,
        slug=page.slug,
        type=page.type,
        teams=page.teams,
        services=page.services,
        time_zone=page.time_zone,
    )
    context = await _form_context(request, who, draft)
    return render(request, who, "page_form.html", page=page, **context)


@view()
async def update_page(request: Request, who: Principal) -> Response:
    """Save a page's settings."""
    page_id = request.path_params["id"]
    page = await call(request, who, api.get_page, id=page_id)
    form = await form_of(request)
    draft = _draft_of(form)
    draft.slug = page.slug  # the address is fixed once the page exists (links point to it)
    try:
        files = _uploads(form)
        await _picker_service(request, who, draft)
        changes: dict[str, Any] = {
            "name": draft.name,
            "teams": draft.teams,
            "services": draft.services,
            "time_zone": draft.time_zone,
        }
        if not page.active and draft.type:
            changes["type"] = draft.type
        await call(request, who, api.update_page, model(PagePatch, changes), id=page_id)
        await _save_images(request, who, page_id, files)
        for role in IMAGES:
            if form.get(f"remove_{role}"):
                await call(request, who, api._clear_image(role), id=page_id)
    except Problem as exc:
        context = await _form_context(request, who, draft)
        return render(request, who, "page_form.html", 422, page=page, problem=exc, **context)
    return redirect(request, f"/admin/pages/{page_id}", "Saved.")


@view()
async def activate_page(request: Request, who: Principal) -> Response:
    """Activate a page: visitors see it from now on, and its type is fixed."""
    page_id = request.path_params["id"]
    await form_of(request)
    page = await call(request, who, api.update_page, model(PagePatch, {"active": True}), id=page_id)
    return redirect(request, f"/admin/pages/{page_id}", f"{page.name} is active.")


routes: list[BaseRoute] = [
    Route("/admin/", home, methods=["GET", "HEAD"]),
    Route("/admin/pages", page_list, methods=["GET", "HEAD"]),
    Route("/admin/pages/new", new_page, methods=["GET", "HEAD"]),
    Route("/admin/pages/addresses", page_addresses, methods=["GET", "HEAD"]),
    Route("/admin/pages/new", create_page, methods=["POST"]),
    Route("/admin/pages/{id:int}", show_page, methods=["GET", "HEAD"]),
    Route("/admin/pages/{id:int}", update_page, methods=["POST"]),
    Route("/admin/pages/{id:int}/activate", activate_page, methods=["POST"]),
]
