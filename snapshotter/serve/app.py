"""The Starlette application: the pages of ``ROUTE_MODULES``, static files (ours and
Plotly's bundle from its wheel), security headers, and error pages without tracebacks."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from snapshotter.config import Config
from snapshotter.serve import formatting

log = logging.getLogger("snapshotter.serve")
HERE = Path(__file__).parent

#: modules under snapshotter.serve whose ``routes(dashboard)`` (and optional
#: ``middleware(dashboard)``) make up the app, in this order
ROUTE_MODULES = ("overview", "auth", "kite_login", "details")


@dataclass
class Dashboard:
    """What every page handler reads: the config (no account secret is needed) and the
    read-only engine."""

    config: Config
    engine: sa.Engine
    templates: Environment = field(init=False)

    def __post_init__(self) -> None:
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(), auto_reload=False)
        self.templates.filters.update(
            rupees=formatting.rupees, number=formatting.number, percent=formatting.percent,
            ist=formatting.ist)

    def page(self, request: Request, template: str, status_code: int = 200,
             **context: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            request=request, title=context.pop("title", "Kite Snapshotter"), **context)
        return HTMLResponse(html, status_code=status_code)


def plotly_bundle() -> Path:
    """plotly.min.js inside the plotly wheel (found without importing plotly)."""
    spec = importlib.util.find_spec("plotly")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"


# No inline script: the pages' code is in static/*.js.
_SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; "
                                "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; "
                                "form-action 'self' https://kite.zerodha.com"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # A URL may carry Kite's request_token (the login callback): never send it onwards.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _Headers(BaseHTTPMiddleware):
    """Security headers on every answer, and one log line per request: method, path
    (never the query, which may hold a token), status and milliseconds."""

    async def dispatch(self, request: Request,
                       call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            if name == "Cache-Control" and request.url.path.startswith("/static/"):
                response.headers[name] = "public, max-age=86400"
            else:
                response.headers.setdefault(name, value)
        elapsed = (time.perf_counter() - started) * 1000
        response.headers["Server-Timing"] = f"app;dur={elapsed:.1f}"
        log.info("%s %s %d %.0f ms", request.method, request.url.path, response.status_code,
                 elapsed)
        return response


def create_app(dashboard: Dashboard) -> Starlette:
    routes: list[BaseRoute] = []
    middleware: list[Middleware] = [Middleware(GZipMiddleware, minimum_size=1024),
                                    Middleware(_Headers)]
    for name in ROUTE_MODULES:
        module = importlib.import_module(f"snapshotter.serve.{name}")
        routes += module.routes(dashboard)
        if hasattr(module, "middleware"):
            middleware += module.middleware(dashboard)
    bundle = plotly_bundle()
    routes += [
        Route("/static/vendor/plotly.min.js",
              lambda request: FileResponse(bundle, media_type="text/javascript")),
        # StaticFiles refuses paths outside its directory (../, symlinks out).
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        """404 and every other HTTP error: the error page, its message escaped by the
        template like every page's (Starlette's own, e.g. 405, keep their headers)."""
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        if status == 404:
            detail = exc.detail if isinstance(exc, HTTPException) else "no such page"
            return dashboard.page(request, "error.html", status_code=404, title="Not found",
                                  message=detail)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        answer = dashboard.page(request, "error.html", status_code=status, title=phrase,
                                message=str(getattr(exc, "detail", phrase)))
        answer.headers.update(getattr(exc, "headers", None) or {})
        return answer

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("%s %s: %s", request.method, request.url.path, type(exc).__name__)
        return dashboard.page(request, "error.html", status_code=500, title="Error",
                              message="this page could not be made; the log says why")

    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={HTTPException: not_found, 500: server_error})
