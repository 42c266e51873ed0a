"""The docs pages load everything from the gateway itself: no CDN, no fonts."""

import base64
import hashlib
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from comfyserve.gateway.middleware import DOCS_CSP

# Quoted paths and URLs inside inline scripts: the spec, the OAuth2 redirect.
_QUOTED_URL = re.compile(r"""['"]((?:https?:)?/[^'"\s]*)['"]""")
_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+)['"]?\s*\)""")


class _References(HTMLParser):
    """Every URL a page loads or points its scripts at, and its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        for name in ("src", "href", "spec-url", "data", "action", "poster"):
            if values.get(name):
                self.urls.append(values[name])
        self._in_script = tag == "script" and "src" not in values
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_script = self._in_style = False

    def handle_data(self, data):
        if self._in_script:
            self.inline_scripts.append(data)
            self.urls += _QUOTED_URL.findall(data)
        elif self._in_style:
            self.urls += _CSS_URL.findall(data)


def _references(html: str) -> _References:
    parser = _References()
    parser.feed(html)
    return parser


def _script_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def _directive(policy: str, name: str) -> list[str]:
    for directive in policy.split(";"):
        parts = directive.split()
        if parts and parts[0] == name:
            return parts[1:]
    raise AssertionError(f"{name} missing from {policy!r}")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_every_reference_of_a_docs_page_is_served_by_the_gateway(client, page):
    response = await client.get(page)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    found = _references(response.text)
    urls = {urljoin(str(response.url), url) for url in found.urls}
    assert any(url.endswith(".js") for url in urls)
    assert any(url.endswith("/openapi.json") for url in urls)
    for url in sorted(urls):
        parts = urlsplit(url)
        assert parts.netloc == "testserver", f"{page} refers to {url}"
        fetched = await client.get(parts.path)
        assert fetched.status_code == 200, url
        assert fetched.content, url
        if parts.path.endswith(".css"):
            # Whatever a stylesheet loads must be inline too.
            assert all(
                ref.startswith("data:") for ref in _CSS_URL.findall(fetched.text)
            )


async def test_swagger_ui_points_at_its_oauth2_redirect_page(client):
    docs = await client.get("/docs")
    redirect = await client.get("/docs/oauth2-redirect")

    assert "'/docs/oauth2-redirect'" in docs.text
    assert redirect.status_code == 200
    assert "swaggerUIRedirectOauth2" in redirect.text


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_a_docs_page_allows_only_its_own_scripts_and_the_gateway(client, page):
    response = await client.get(page)

    policy = response.headers["Content-Security-Policy"]
    scripts = _directive(policy, "script-src")
    inline = _references(response.text).inline_scripts
    assert sorted(scripts) == sorted({"'self'", *map(_script_hash, inline)})
    assert _directive(policy, "default-src") == ["'none'"]
    assert _directive(policy, "img-src") == ["'self'", "data:"]
    assert _directive(policy, "connect-src") == ["'self'"]
    assert _directive(policy, "frame-ancestors") == ["'none'"]
    for host in ("http:", "https:", "jsdelivr", "googleapis", "gstatic", "redoc.ly"):
        assert host not in policy
    assert "font-src" not in policy


async def test_docs_assets_get_the_docs_policy_without_inline_scripts(client):
    response = await client.get("/docs/assets/swagger-ui-bundle.js")

    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == DOCS_CSP
    assert "'unsafe-inline'" not in _directive(DOCS_CSP, "script-src")


async def test_the_docs_follow_the_root_path_of_a_proxy(make_app, settings, serve_app):
    app = make_app(settings)
    app.root_path = "/api"
    async with serve_app(app) as client:
        docs = await client.get("/docs")
        redoc = await client.get("/redoc")

    for page in (docs, redoc):
        urls = _references(page.text).urls
        assert "/api/openapi.json" in urls
        assert all(url.startswith("/api/") for url in urls)
