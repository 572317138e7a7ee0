"""The console's pages and streams, as a Starlette application.

Server-rendered HTML that works without JavaScript; a small script adds live
updates: it listens to ``/events`` (server-sent events fed by ``WatchEvents``)
and, when a verdict of the Queue on screen arrives, re-reads the page's
fragment (``?fragment=1``) and swaps it in, so nothing reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import (
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from stovepipe.console import views
from stovepipe.console.access import COOKIE, Access
from stovepipe.console.client import ApiUnavailable, ConsoleClient
from stovepipe.console.live import KEEPALIVE_S, RESYNC, LiveFeed
from stovepipe.redaction import redact
from stovepipe.telemetry.metrics import CONSOLE_REQUEST_SECONDS, CONSOLE_REQUESTS
from stovepipe.v1 import types_pb2

HERE = Path(__file__).parent
SERVER_TIMING = "Server-Timing"
MAX_FORM_REASON = 500


@dataclass(frozen=True)
class QueueInfo:
    """What the console knows of a Queue from the configuration: its columns (projects),
    its promotion ref's name, and its hook subscriptions (to name their deliveries)."""

    name: str
    projects: tuple[str, ...]
    promotion_ref: str | None
    hooks: tuple[str, ...] = ()


@dataclass
class ConsoleState:
    client: ConsoleClient
    queues: dict[str, QueueInfo]
    access: Access
    page_size: int
    feed: LiveFeed


def _enum(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower().replace("_", " ")


templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals.update(
    short=views.short,
    age=views.age,
    stamp=views.stamp,
    labels=views.STATE_LABELS,
    fact_state=views.fact_state,
    request_state_name=views.request_state_name,
    strategy_name=lambda v: _enum(types_pb2.BuildStrategy, v, "BUILD_STRATEGY_"),
    origin_name=lambda v: _enum(types_pb2.FactOrigin, v, "FACT_ORIGIN_"),
    redact=redact,
    urlencode=urlencode,
    build_link=lambda r: r.build_id if r.build_id.startswith(("https://", "http://")) else "",
)


MAX_FORM_BYTES = 16 * 1024


class FormTooLarge(Exception):
    pass


async def _form(request: Request) -> dict[str, str]:
    """A small URL-encoded form (the console's forms hold a token or a few fields);
    anything larger than ``MAX_FORM_BYTES`` is refused before it is read."""
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_FORM_BYTES:
        raise FormTooLarge
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLarge
    pairs = parse_qsl(body.decode("utf-8", "replace"), max_num_fields=20)
    return dict(pairs)


def _state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    state = _state(request)
    context = {
        "user": request.scope.get("console_user"),
        "login": state.access.uses_login,
        **context,
    }
    return templates.TemplateResponse(request, name, context, status_code=status)


def _unavailable(request: Request, exc: ApiUnavailable) -> Response:
    return _render(
        request,
        "error.html",
        {"title": "API unavailable", "message": redact(str(exc))},
        status=502,
    )


def _refused(request: Request, exc: ApiUnavailable, title: str) -> Response:
    """400 when the API refused what the URL asked for (a malformed page token or
    commit), 502 for everything else."""
    if "INVALID_ARGUMENT" in str(exc):
        return _render(request, "error.html", {"title": title, "message": redact(str(exc))}, 400)
    return _unavailable(request, exc)


def _not_found(request: Request, message: str) -> Response:
    return _render(request, "error.html", {"title": "Not found", "message": message}, 404)


async def queues_page(request: Request) -> Response:
    state = _state(request)
    try:
        summaries = await views.summaries(state.client, list(state.queues))
    except ApiUnavailable as exc:
        return _unavailable(request, exc)
    fragment = request.query_params.get("fragment") == "1"
    name = "_queues_table.html" if fragment else "queues.html"
    return _render(request, name, {"title": "Queues", "summaries": summaries, "live": ""})


async def grid_page(request: Request) -> Response:
    state = _state(request)
    queue = request.path_params["queue"]
    info = state.queues.get(queue)
    if info is None:
        return _not_found(request, f"no Queue called {queue!r} is configured")
    token = request.query_params.get("page", "")
    try:
        grid = await views.grid(
            state.client,
            queue,
            projects=list(info.projects),
            promotion_ref=info.promotion_ref,
            page_size=state.page_size,
            page_token=token,
        )
    except ApiUnavailable as exc:
        return _refused(request, exc, "Bad page")
    fragment = request.query_params.get("fragment") == "1"
    name = "_grid_table.html" if fragment else "grid.html"
    context = {"title": queue, "grid": grid, "page": token, "live": queue}
    return _render(request, name, context)


async def commit_page(request: Request) -> Response:
    state = _state(request)
    queue = request.query_params.get("queue", "")
    uri = request.query_params.get("uri", "")
    request_id = request.query_params.get("request", "")
    info = state.queues.get(queue)
    if info is None or not uri:
        return _not_found(request, "give a configured queue and a commit uri")
    try:
        view = await views.commit(
            state.client, queue, uri, request_id, projects=info.projects, hooks=info.hooks
        )
    except ApiUnavailable as exc:
        return _refused(request, exc, "Bad commit")
    context = {
        "title": f"{views.short(uri)} on {queue}",
        "view": view,
        "live": queue,
        "can_revalidate": state.client.can_revalidate,
    }
    return _render(request, "commit.html", context)


async def revalidate_page(request: Request) -> Response:
    """GET asks for confirmation; POST (with the confirmation token) starts it."""
    state = _state(request)
    if not state.client.can_revalidate:
        return PlainTextResponse("re-validation is not enabled on this console", 403)
    try:
        source = dict(request.query_params) if request.method == "GET" else await _form(request)
    except (FormTooLarge, ValueError):
        return PlainTextResponse("form too large", 413)
    queue = str(source.get("queue", ""))
    uri = str(source.get("uri", ""))
    if queue not in state.queues or not uri:
        return _not_found(request, "give a configured queue and a commit uri")
    if request.method == "GET":
        context = {
            "title": "Re-validate",
            "queue": queue,
            "uri": uri,
            "confirm": state.access.confirm_token(queue, uri),
            "live": "",
        }
        return _render(request, "revalidate.html", context)
    if not state.access.check_confirm(queue, uri, str(source.get("confirm", ""))):
        return PlainTextResponse("missing or wrong confirmation; open the form again", 403)
    reason = str(source.get("reason", ""))[:MAX_FORM_REASON]
    user = request.scope.get("console_user", "anyone")
    try:
        started = await state.client.revalidate(
            queue,
            uri,
            flaky=source.get("flaky") == "yes",
            reason=f"console ({user}): {reason}".strip(),
        )
    except ApiUnavailable as exc:
        return _render(
            request, "error.html", {"title": "Refused", "message": redact(str(exc))}, 409
        )
    target = "/commit?" + urlencode({"queue": queue, "uri": uri, "request": started.id})
    return RedirectResponse(target, status_code=303)


async def events(request: Request) -> Response:
    """Server-sent events: one ``verdict`` per recorded fact, comments as keep-alives."""
    feed = _state(request).feed

    async def stream() -> AsyncIterator[str]:
        async with feed.subscribe() as queue:
            yield "retry: 2000\n: open\n\n"
            while True:
                try:
                    payload = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if payload == RESYNC:
                    yield "event: resync\ndata: {}\n\n"
                else:
                    yield f"event: verdict\ndata: {payload}\n\n"

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def login_page(request: Request) -> Response:
    access = _state(request).access
    if not access.uses_login:
        return RedirectResponse("/", status_code=303)
    if request.method == "GET":
        return _render(request, "login.html", {"title": "Sign in", "error": "", "live": ""})
    try:
        form = await _form(request)
    except (FormTooLarge, ValueError):
        return PlainTextResponse("form too large", 413)
    cookie = access.login(form.get("token", ""))
    if cookie is None:
        context = {"title": "Sign in", "error": "That token is not valid.", "live": ""}
        return _render(request, "login.html", context, 401)
    response = RedirectResponse("/", status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", secure=secure)
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


async def healthz(request: Request) -> Response:
    """Ready when the API answers Ping with the console's token."""
    try:
        await _state(request).client.ping()
    except ApiUnavailable as exc:
        return PlainTextResponse(f"API unavailable: {redact(str(exc))}", 503)
    return PlainTextResponse("ok")


_PUBLIC = ("/login", "/healthz", "/static/")
_ROUTES = ("/queues/", "/commit", "/revalidate", "/events", "/login", "/logout", "/healthz")


def route_label(path: str) -> str:
    """The metric label of a path: its page, never its Queue or commit (bounded)."""
    if path == "/":
        return "/"
    if path.startswith("/static/"):
        return "/static"
    for route in _ROUTES:
        if path == route or (route.endswith("/") and path.startswith(route)):
            return route.rstrip("/")
    return "other"


class Guard(BaseHTTPMiddleware):
    """Sign-in (or the proxy's header) before any page; server time on every answer."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.perf_counter()
        response = await self._answer(request, call_next)
        elapsed = time.perf_counter() - started
        route = route_label(request.url.path)
        CONSOLE_REQUESTS.labels(route, str(response.status_code)).inc()
        CONSOLE_REQUEST_SECONDS.labels(route).observe(elapsed)
        return response

    async def _answer(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.perf_counter()
        path = request.url.path
        if not path.startswith(_PUBLIC):
            access = _state(request).access
            user = access.user(request.headers, request.cookies)
            if user is None:
                if access.uses_login and request.method == "GET" and path != "/events":
                    return RedirectResponse("/login", status_code=303)
                return PlainTextResponse("sign in first", status_code=401)
            request.scope["console_user"] = user
        response = await call_next(request)
        elapsed_ms = (time.perf_counter() - started) * 1000
        response.headers[SERVER_TIMING] = f"app;dur={elapsed_ms:.1f}"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"
        )
        return response


def create_app(
    client: ConsoleClient,
    queues: list[QueueInfo],
    access: Access,
    *,
    page_size: int = 50,
) -> Starlette:
    """The console application; it closes ``client`` when it shuts down."""
    state = ConsoleState(client, {q.name: q for q in queues}, access, page_size, LiveFeed(client))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.console = state
        try:
            yield
        finally:
            await state.feed.close()
            await client.close()

    routes = [
        Route("/", queues_page),
        Route("/queues/{queue:path}", grid_page),
        Route("/commit", commit_page),
        Route("/revalidate", revalidate_page, methods=["GET", "POST"]),
        Route("/events", events),
        Route("/login", login_page, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(Guard)], lifespan=lifespan)
    app.state.console = state
    return app
