"""The interactive API docs, offline: /docs (Swagger UI) and /redoc (ReDoc) load their scripts and styles from
this server, not from a CDN, so they work on a machine without internet access.

The assets are the copies that the `fastapi-offline` package ships (Swagger UI 5, which reads FastAPI's
OpenAPI 3.1 schema; ReDoc 2); tests/test_web.py opens /docs in headless Chromium and checks that no request
leaves the machine.
"""

from pathlib import Path

import fastapi_offline  # imported here, not looked up later: a missing serve extra fails when the app is built
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs/assets"
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"


def add_docs(app) -> None:
    """/docs, its OAuth2 redirect page and /redoc, as FastAPI's own docs_url and redoc_url would add them
    (create the app with both None), with the assets under ASSETS_URL."""

    def prefix(request) -> str:
        return request.scope.get("root_path", "").rstrip("/")  # behind a proxy that mounts us under a path

    async def swagger_ui(request):
        root = prefix(request)
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css", swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=root + app.swagger_ui_oauth2_redirect_url, init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters)

    async def swagger_ui_redirect(request):
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request):
        root = prefix(request)
        return get_redoc_html(openapi_url=root + app.openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png", with_google_fonts=False)

    app.add_route("/docs", swagger_ui, include_in_schema=False)
    app.add_route(app.swagger_ui_oauth2_redirect_url, swagger_ui_redirect, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
