"""Tests for Flask Tour, in the same numbered sections as app.py."""

import contextlib
import functools
import http.client
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

import pytest
from flask import request, url_for
from markupsafe import escape
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server
from werkzeug.test import Client

import app as tour
from app import Note, User, UsernameTaken, create_app, jwt_decode, jwt_encode, InvalidToken

ROOT = Path(__file__).resolve().parent
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
JWT_TEST_KEY = "jwt-test-key-that-is-long-enough-0123456789abcd"
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    """Hash with few iterations so the suite runs in seconds; production keeps the default."""
    fast = functools.partial(tour.generate_password_hash, method="pbkdf2:sha256:1000")
    monkeypatch.setattr(tour, "generate_password_hash", fast)


@pytest.fixture
def app(tmp_path):
    """An app on a temporary database and instance folder."""
    return create_app({
        "TESTING": True,
        "SECRET_KEY": TEST_SECRET,
        "JWT_SECRET_KEY": JWT_TEST_KEY,
        "DATABASE": str(tmp_path / "test.sqlite"),
    }, instance_path=str(tmp_path / "instance"))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def csrf_from(response):
    """The CSRF token in a page's form."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
    assert match, "the page has no CSRF field"
    return match.group(1)


class AuthActions:
    """Register, log in and out through the real forms, optionally under a URL prefix."""

    def __init__(self, client, prefix=""):
        self.client, self.prefix = client, prefix

    def token(self, page="/login"):
        return csrf_from(self.client.get(self.prefix + page))

    def register(self, username="alice", password=PASSWORD, **kwargs):
        data = {"username": username, "password": password, "csrf_token": self.token("/register")}
        return self.client.post(self.prefix + "/register", data=data, **kwargs)

    def login(self, username="alice", password=PASSWORD, next=None, **kwargs):
        url = self.prefix + "/login" + ("?" + urlencode({"next": next}) if next else "")
        data = {"username": username, "password": password, "csrf_token": self.token()}
        return self.client.post(url, data=data, **kwargs)

    def logout(self):
        return self.client.post(self.prefix + "/logout", data={"csrf_token": self.token("/")})


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def logged_in(auth):
    """A client with the registered user `alice` logged in."""
    auth.register()
    return auth


def api_headers(client, username="alice", password=PASSWORD, prefix=""):
    """Register `username` through the API and return Bearer headers for it."""
    client.post(prefix + "/api/users", json={"username": username, "password": password})
    response = client.post(prefix + "/api/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.json
    return {"Authorization": "Bearer " + response.json["access_token"]}


def count_rows(app, table):
    with app.app_context():
        return tour.get_db().execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# ---------------------------------------------------------------------------
# 1. Flask setup & project structure
# ---------------------------------------------------------------------------

def test_module_level_app_serves_the_tour():
    assert tour.app.name == "app"
    assert "tour" in tour.app.view_functions


def test_create_app_builds_independent_apps(tmp_path):
    first = create_app({"TESTING": True, "DATABASE": str(tmp_path / "a.sqlite")},
                       instance_path=str(tmp_path / "a"))
    second = create_app({"TESTING": True, "DATABASE": str(tmp_path / "b.sqlite")},
                        instance_path=str(tmp_path / "b"))
    assert first is not second and first.config["DATABASE"] != second.config["DATABASE"]
    api_headers(first.test_client())
    assert second.test_client().get("/healthz").status_code == 200
    assert count_rows(first, "users") == 1 and count_rows(second, "users") == 0


def test_requirements_are_pinned_and_minimal():
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.strip()]
    names = {line.split("==")[0].lower() for line in lines}
    assert names == {"flask", "python-dotenv", "pytest", "gunicorn"}
    assert all("==" in line for line in lines)


def test_env_example_documents_every_setting():
    example = (ROOT / ".env.example").read_text()
    for key in ["SECRET_KEY", *tour.DEFAULTS]:
        assert f"FLASK_{key}=" in example, key


# ---------------------------------------------------------------------------
# 2. Routing (@app.route)
# ---------------------------------------------------------------------------

def test_tour_lists_all_fourteen_topics(client):
    page = client.get("/").get_data(as_text=True)
    for topic in tour.TOPICS:
        assert f'href="/topics/{topic.number}"' in page
        assert topic.summary.replace("`", "")[:20] in page.replace("`", "")
    assert len(tour.TOPICS) == 14


@pytest.mark.parametrize("number", range(1, 15))
def test_topic_page_shows_its_own_section(client, number):
    page = client.get(f"/topics/{number}").get_data(as_text=True)
    assert f"# {number}. " in page
    other = number % 14 + 1
    assert f"# {other}. " not in page.replace(f"{other}. {tour.TOPICS[other - 1].title}", "")


def test_every_section_is_found_in_order():
    sections = tour.source_sections()
    assert sorted(sections) == list(range(1, 15))
    starts = [sections[n][0] for n in range(1, 15)]
    assert starts == sorted(starts)


@pytest.mark.parametrize("url", ["/topics/0", "/topics/15", "/topics/abc", "/no-such-page"])
def test_unknown_topic_is_the_404_page(client, url):
    response = client.get(url)
    assert response.status_code == 404
    assert "404 · Not Found" in response.get_data(as_text=True)


class LinkCollector(HTMLParser):
    """Collects href, src and GET form actions as links; POST actions and data-*-url apart."""

    def __init__(self):
        super().__init__()
        self.links, self.other_targets = [], []  # other: POST forms, URLs that app.js calls

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.other_targets.extend(value for name, value in attrs.items()
                                  if name.startswith("data-") and name.endswith("-url"))
        if tag in ("a", "link") and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "script" and attrs.get("src"):
            self.links.append(attrs["src"])
        if tag == "form" and attrs.get("action"):
            is_get = attrs.get("method", "get").lower() == "get"
            (self.links if is_get else self.other_targets).append(attrs["action"])


def internal_links(html, base):
    collector = LinkCollector()
    collector.feed(html)
    for link in collector.links:
        url = urljoin(base, link)
        parts = urlsplit(url)
        if not parts.netloc or parts.netloc == "localhost":
            yield parts.path + ("?" + parts.query if parts.query else "")


def crawl(client, start, prefix="/"):
    """Every internal URL reachable from `start`, mapped to its status code."""
    seen, queue = {}, [start]
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        response = client.get(url)
        seen[url] = response.status_code
        if response.mimetype == "text/html":
            for link in internal_links(response.get_data(as_text=True), "http://localhost" + url):
                if link.startswith(prefix) and link not in seen:
                    queue.append(link)
    return seen


@pytest.mark.parametrize("signed_in", [False, True])
def test_every_internal_link_answers_below_400(client, logged_in, signed_in):
    if signed_in:
        client.post("/notes", data={"title": "crawl me", "body": "",
                                    "csrf_token": logged_in.token("/notes")})
    else:
        logged_in.logout()
    results = crawl(client, "/")
    assert all(f"/topics/{n}" in results for n in range(1, 15))
    broken = {url: status for url, status in results.items()
              if status >= 400 and not url.startswith("/errors/")}
    assert not broken
    assert len(results) > 30


APP_LINES = (ROOT / "app.py").read_text(encoding="utf-8").splitlines()
CODE_LINE = re.compile(r'<span class="line" data-line="(\d+)">(.*?)\n</span>', re.S)


def code_lines(html):
    """(line number, text) of each numbered code line on a page, markup removed."""
    return [(int(number), unescape(re.sub(r"<[^>]+>", "", text)))
            for number, text in CODE_LINE.findall(html)]


@pytest.mark.parametrize("number", range(1, 15))
def test_topic_page_numbers_its_code_with_the_real_app_py_lines(client, number):
    first_line, source = tour.source_sections()[number]
    lines = code_lines(client.get(f"/topics/{number}").get_data(as_text=True))
    assert [line_number for line_number, _ in lines] == list(
        range(first_line, first_line + source.count("\n") + 1))
    assert all(text == APP_LINES[line_number - 1] for line_number, text in lines)
    assert APP_LINES[first_line].startswith(f"# {number}. ")


def test_highlighting_marks_tokens_and_keeps_the_text_exactly():
    source = ('@app.route("/")\ndef home():\n    """Say <b>hi</b> & bye."""\n'
              '    return 42  # the answer\n\nclass Page:\n    pass')
    html = tour.highlight_python(source, 10)
    assert code_lines(html) == list(enumerate(source.split("\n"), start=10))
    for marked in ('<span class="tok-decorator">@</span><span class="tok-decorator">app</span>',
                   '<span class="tok-keyword">def</span> <span class="tok-definition">home</span>',
                   '<span class="tok-string">&#34;&#34;&#34;Say &lt;b&gt;hi&lt;/b&gt; &amp; bye.',
                   '<span class="tok-number">42</span>', '<span class="tok-comment"># the answer</span>',
                   '<span class="tok-keyword">class</span> <span class="tok-definition">Page</span>'):
        assert marked in html
    assert "<b>" not in html


def test_highlighting_an_unfinished_fragment_still_shows_all_of_it():
    source = 'call(1,\n    "two"'
    html = tour.highlight_python(source)
    assert code_lines(html) == [(1, "call(1,"), (2, '    "two"')]


def topic_links(html):
    """The rel=prev / rel=next hrefs of a topic page's topic navigation."""
    return set(re.findall(r'<a rel="(prev|next)" href="/topics/(\d+)"', html))


@pytest.mark.parametrize("number", range(1, 15))
def test_previous_and_next_topic_links(client, number):
    links = topic_links(client.get(f"/topics/{number}").get_data(as_text=True))
    expected = {("prev", str(number - 1))} if number > 1 else set()
    expected |= {("next", str(number + 1))} if number < 14 else set()
    assert links == expected


def test_the_pages_say_what_the_cheat_sheet_does_and_why_ours_differs(client):
    for topic in tour.TOPICS:
        html = client.get(f"/topics/{topic.number}").get_data(as_text=True)
        assert str(tour.inline_code(topic.cheat_sheet)) in html
        assert str(tour.inline_code(topic.our_version)) in html
        for _, endpoint, arguments in topic.demos:
            with client.application.test_request_context():
                assert 'href="%s"' % escape(tour.url_for(endpoint, **arguments)) in html


def test_inline_code_escapes_then_marks_backticks():
    assert tour.inline_code("`<b>` & `x`") == "<code>&lt;b&gt;</code> &amp; <code>x</code>"


class StrictPolicyChecker(HTMLParser):
    """Lists what a page has that `script-src 'self'; style-src 'self'` would block."""

    def __init__(self):
        super().__init__()
        self.violations, self.in_script = [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and not attrs.get("src"):
            self.violations.append("inline <script>")
        if tag == "style":
            self.violations.append("<style> element")
        for name, value in attrs.items():
            if name == "style" or name.startswith("on"):
                self.violations.append(f"{name}= attribute on <{tag}>")
            if name in ("href", "src", "action") and (value or "").lower().startswith("javascript:"):
                self.violations.append(f"javascript: URL on <{tag}>")
            if name in ("href", "src") and tag != "a" and urlsplit(value or "").netloc:
                self.violations.append(f"off-site {name} on <{tag}>")


def crawled_pages(client, logged_in):
    """Every page the crawl reaches, signed in with a note, plus pages showing form errors."""
    client.post("/notes", data={"title": "a note", "body": "", "csrf_token": logged_in.token("/notes")})
    pages = {url: client.get(url) for url in crawl(client, "/")}
    pages["notes with errors"] = client.post("/notes", data={"csrf_token": logged_in.token("/notes")})
    logged_in.logout()
    pages["login failure"] = logged_in.login("nobody", "wrong password")
    pages["register errors"] = logged_in.register("x", "short")
    return {url: response for url, response in pages.items() if response.mimetype == "text/html"}


def test_every_page_passes_the_content_security_policy(client, logged_in):
    pages = crawled_pages(client, logged_in)
    assert len(pages) > 30
    for url, response in pages.items():
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, url
        checker = StrictPolicyChecker()
        checker.feed(response.get_data(as_text=True))
        assert checker.violations == [], url


class FieldCollector(HTMLParser):
    """Collects a page's form fields, label targets, ids and aria-describedby references."""

    def __init__(self):
        super().__init__()
        self.fields, self.labelled, self.ids, self.described_by = [], set(), set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.ids.add(attrs.get("id"))
        if tag == "label":
            self.labelled.add(attrs.get("for"))
        if tag in ("input", "textarea", "select") and attrs.get("type") not in ("hidden", "submit"):
            self.fields.append(attrs)
        self.described_by += (attrs.get("aria-describedby") or "").split()


def test_every_form_field_is_labelled_and_its_errors_exist(client, logged_in):
    for url, response in crawled_pages(client, logged_in).items():
        page = FieldCollector()
        page.feed(response.get_data(as_text=True))
        for field in page.fields:
            assert field.get("id") in page.labelled or field.get("aria-label"), (url, field)
        assert set(page.described_by) <= page.ids, url


@pytest.mark.parametrize("number", range(1, 15))
def test_api_console_only_on_the_rest_and_jwt_topics(client, number):
    html = client.get(f"/topics/{number}").get_data(as_text=True)
    if number in (6, 11):
        assert ('data-users-url="/api/users"' in html and 'data-token-url="/api/token"' in html
                and 'data-notes-url="/api/notes"' in html)
        assert re.search(r'<section class="api-console"[^>]* hidden', html)  # shown by app.js
    else:
        assert "data-api-console" not in html


def test_api_console_urls_keep_the_mount_prefix(client):
    html = client.get("/topics/6", base_url="http://localhost/demo").get_data(as_text=True)
    assert 'data-token-url="/demo/api/token"' in html and 'data-notes-url="/demo/api/notes"' in html


def css_colours(css):
    """The light and the dark values of the stylesheet's colour variables."""
    dark_start = css.index("@media (prefers-color-scheme: dark)")
    light = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-f]{6})", css[:dark_start]))
    dark = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-f]{6})", css[dark_start:css.index("}", dark_start)]))
    return {"light": light, "dark": {**light, **dark}}


def contrast(first, second):
    """The WCAG 2 contrast ratio of two #rrggbb colours."""
    def luminance(colour):
        channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


TEXT_PAIRS = [("fg", "bg"), ("fg", "card"), ("muted", "bg"), ("muted", "card"), ("accent", "bg"),
              ("accent", "card"), ("error", "bg"), ("error", "card"), ("ok", "bg"),
              ("on-accent", "accent"), ("line-number", "code-bg")] + [
             (f"tok-{kind}", "code-bg")
             for kind in ("keyword", "string", "comment", "number", "definition", "decorator")]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_colours_meet_wcag_aa_contrast(scheme):
    colours = css_colours((ROOT / "static" / "style.css").read_text())[scheme]
    low = {pair: round(contrast(colours[pair[0]], colours[pair[1]]), 2) for pair in TEXT_PAIRS
           if contrast(colours[pair[0]], colours[pair[1]]) < 4.5}
    assert low == {}
    # Focus rings and input borders are not text: 3:1 against the page (WCAG 1.4.11).
    assert min(contrast(colours[name], colours[background])
               for name in ("focus", "muted") for background in ("bg", "card")) >= 3


@contextlib.contextmanager
def serve_in_thread(app):
    """Serve `app` on a free loopback port from a thread until the block ends."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def dump_dom(url, tmp_path, timeout=60):
    """The DOM of `url` after its scripts ran, from headless Chromium, killed if it hangs."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", url]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group, to stop its helpers too
    try:
        dom, _ = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}"
    return dom.decode()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_a_real_browser_runs_the_tour_scripts(app, tmp_path):
    with serve_in_thread(app) as base:
        tour_dom = dump_dom(base + "/", tmp_path)
        topic_dom = dump_dom(base + "/topics/11", tmp_path)
    assert 'class="copy-button"' in tour_dom and 'class="toggle"' in tour_dom
    assert topic_dom.count('class="copy-button"') == 1 and 'aria-pressed="false"' in topic_dom
    assert '<span class="tok-keyword">def</span> <span class="tok-definition">jwt_encode</span>' in topic_dom
    for shown_by_script in (r'<section class="api-console"[^>]*>', r'<p class="hint"[^>]*>'):
        assert "hidden" not in re.search(shown_by_script, topic_dom).group(0)


# ---------------------------------------------------------------------------
# 3. URL parameters & query strings
# ---------------------------------------------------------------------------

def test_user_greeting_escapes_the_name(client):
    page = client.get("/user/<img src=x onerror=alert(1)>").get_data(as_text=True)
    assert "Hello, &lt;img src=x onerror=alert(1)&gt;" in page
    assert "<img src=x" not in page


@pytest.fixture
def searchable(client, logged_in):
    """Alice's notes for the search tests."""
    headers = api_headers(client)
    for title, body in [("Flask routing", "decorators"), ("Jinja", "FLASK templates"),
                        ("100% sure", "percent"), ("snake_case", "underscore"),
                        ("unrelated", "nothing here")]:
        client.post("/api/notes", json={"title": title, "body": body}, headers=headers)
    return headers


def search_titles(client, query, page=None):
    url = "/search?q=" + query + (f"&page={page}" if page is not None else "")
    html = client.get(url).get_data(as_text=True)
    return re.findall(r'<li><a href="/notes/\d+/edit">([^<]*)</a>', html)


def test_search_matches_title_and_body_case_insensitively(client, searchable):
    assert set(search_titles(client, "flask")) == {"Flask routing", "Jinja"}


@pytest.mark.parametrize("query, expected", [("%25", ["100% sure"]), ("_", ["snake_case"]),
                                             ("e_c", ["snake_case"]), ("0%25+s", ["100% sure"])])
def test_search_treats_wildcards_literally(client, searchable, query, expected):
    assert search_titles(client, query) == expected


def test_search_without_query_shows_just_the_form(client, searchable):
    page = client.get("/search?q=").get_data(as_text=True)
    assert 'role="search"' in page and "match" not in page


def test_search_requires_login(client):
    response = client.get("/search?q=x")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/search?q%3Dx")


@pytest.mark.parametrize("page, shown", [(None, 1), ("1", 1), ("2", 2), ("3", 3), ("0", 1),
                                         ("-4", 1), ("abc", 1), ("999", 3), ("1e3", 1),
                                         ("99999999999999999999999", 3)])
def test_search_pages_are_clamped(client, logged_in, page, shown):
    headers = api_headers(client)
    for n in range(25):
        client.post("/api/notes", json={"title": f"match {n}"}, headers=headers)
    url = "/search?q=match" + (f"&page={page}" if page is not None else "")
    html = client.get(url).get_data(as_text=True)
    assert f"Page {shown} of 3" in html
    assert len(re.findall(r'href="/notes/\d+/edit"', html)) == (5 if shown == 3 else 10)
    assert ('rel="prev"' in html) == (shown > 1) and ('rel="next"' in html) == (shown < 3)
    if shown < 3:
        assert f'href="/search?page={shown + 1}&amp;q=match"' in html


# ---------------------------------------------------------------------------
# 4. Templates (Jinja2)
# ---------------------------------------------------------------------------

def test_welcome_renders_the_cheat_sheet_template(client):
    page = client.get("/welcome/Ada").get_data(as_text=True)
    assert "<h1>Hello Ada</h1>" in page


@pytest.mark.parametrize("url", ["/", "/topics/4", "/welcome/x", "/user/x", "/login", "/register",
                                 "/config", "/hooks", "/errors/404"])
def test_every_page_extends_the_base_layout(client, url):
    page = client.get(url).get_data(as_text=True)
    assert 'class="site-header"' in page and 'href="/static/style.css"' in page


def test_flashed_messages_appear_once(client, auth):
    first = auth.register(follow_redirects=True).get_data(as_text=True)
    assert "Your account is ready." in first
    assert "Your account is ready." not in client.get("/notes").get_data(as_text=True)


def test_every_template_extends_base():
    for template in (ROOT / "templates").glob("*.html"):
        if not template.name.startswith("_") and template.name != "base.html":
            assert '{% extends "base.html" %}' in template.read_text(), template.name


# ---------------------------------------------------------------------------
# 5. Handling forms & requests (GET, POST)
# ---------------------------------------------------------------------------

def test_register_logs_in_and_redirects(client, auth, app):
    response = auth.register()
    assert response.status_code == 302 and response.headers["Location"] == "/notes"
    assert count_rows(app, "users") == 1
    assert "Signed in as <strong>alice</strong>" in client.get("/notes").get_data(as_text=True)


@pytest.mark.parametrize("username, password, field, message", [
    ("", PASSWORD, "username", "This field is required."),
    ("ab", PASSWORD, "username", "at least 3 characters"),
    ("a" * 33, PASSWORD, "username", "at most 32 characters"),
    ("bad name!", PASSWORD, "username", "Use letters, digits"),
    ("<script>x</script>", PASSWORD, "username", "Use letters, digits"),
    ("bob", "short", "password", "at least 8 characters"),
    ("bob", "", "password", "This field is required."),
])
def test_register_validation_rerenders_with_message_and_input(client, auth, app, username,
                                                              password, field, message):
    response = auth.register(username, password)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f'id="{field}-error"' in html and message in html
    assert 'aria-describedby="%s-error"' % field in html
    if username:
        assert 'value="%s"' % username.replace("<", "&lt;").replace(">", "&gt;") in html
    assert password not in html.replace('name="password"', "") or not password
    assert count_rows(app, "users") == 0


def test_register_duplicate_username_is_a_form_error(client, auth):
    auth.register("Alice")
    auth.logout()
    html = auth.register("ALICE").get_data(as_text=True)
    assert "That username is already taken." in html


def test_missing_form_fields_are_messages_not_bare_400(client, auth):
    response = client.post("/register", data={"csrf_token": auth.token("/register")})
    assert response.status_code == 200
    assert "This field is required." in response.get_data(as_text=True)


def test_login_and_logout(client, auth):
    auth.register()
    auth.logout()
    response = auth.login()
    assert response.status_code == 302
    assert "Signed in as" in client.get("/").get_data(as_text=True)
    assert auth.logout().status_code == 302
    assert "Signed in as" not in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("username, password", [("alice", "Tr0ub4dor&3-guess"),
                                                ("nobody", PASSWORD), ("", "")])
def test_login_failure_has_one_message_and_keeps_the_username(auth, username, password):
    auth.register()
    auth.logout()
    html = auth.login(username, password).get_data(as_text=True)
    assert "Unknown username or wrong password." in html
    assert f'value="{username}"' in html
    assert password not in html or not password
    assert html.count('aria-describedby="form-error"') == 2 and 'id="form-error"' in html


def test_logout_requires_post(client):
    response = client.get("/logout")
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}


@pytest.mark.parametrize("next_url, expected", [
    ("/notes?page=2", "/notes?page=2"),
    ("/search?q=x", "/search?q=x"),
    ("https://evil.example", "/notes"),
    ("//evil.example", "/notes"),
    ("/\\evil.example", "/notes"),
    ("javascript:alert(1)", "/notes"),
    ("/\t/evil.example", "/notes"),
    ("/notes\r\nSet-Cookie: x=y", "/notes"),
])
def test_login_next_only_goes_to_this_site(client, auth, next_url, expected):
    auth.register()
    auth.logout()
    assert auth.login(next=next_url).headers["Location"] == expected


def test_login_required_redirects_with_next(client, auth):
    response = client.get("/notes?page=2")
    assert response.headers["Location"] == "/login?next=/notes?page%3D2"
    auth.register()
    auth.logout()
    assert auth.login(next="/notes?page=2").headers["Location"] == "/notes?page=2"


def test_note_create_edit_delete(client, logged_in, app):
    token = logged_in.token("/notes")
    response = client.post("/notes", data={"title": "First", "body": "hello", "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/notes"
    note_id = int(re.search(r"/notes/(\d+)/edit", client.get("/notes").get_data(as_text=True))[1])
    edit = client.get(f"/notes/{note_id}/edit").get_data(as_text=True)
    assert 'value="First"' in edit and ">hello</textarea>" in edit
    client.post(f"/notes/{note_id}/edit", data={"title": "Renamed", "body": "", "csrf_token": token})
    assert "Renamed" in client.get("/notes").get_data(as_text=True)
    assert client.post(f"/notes/{note_id}/delete", data={"csrf_token": token}).status_code == 302
    assert count_rows(app, "notes") == 0


def test_note_form_errors_keep_input(client, logged_in, app):
    token = logged_in.token("/notes")
    html = client.post("/notes", data={"title": "  ", "body": "keep me", "csrf_token": token}
                       ).get_data(as_text=True)
    assert "This field is required." in html and ">keep me</textarea>" in html
    html = client.post("/notes", data={"title": "x" * 201, "body": "", "csrf_token": token}
                       ).get_data(as_text=True)
    assert "at most 200 characters" in html
    assert count_rows(app, "notes") == 0


def test_notes_of_another_user_are_404(client, logged_in):
    headers = api_headers(client, "mallory")
    note_id = client.post("/api/notes", json={"title": "secret"}, headers=headers).json["id"]
    token = logged_in.token("/notes")
    assert client.get(f"/notes/{note_id}/edit").status_code == 404
    assert client.post(f"/notes/{note_id}/delete", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/notes/{note_id}/edit",
                       data={"title": "pwned", "csrf_token": token}).status_code == 404
    assert client.get(f"/api/notes/{note_id}", headers=headers).json["title"] == "secret"


@pytest.mark.parametrize("make_token", [
    lambda auth: None,
    lambda auth: "",
    lambda auth: "wrong-token",
    lambda auth: AuthActions(auth.client.application.test_client()).token(),
])
def test_csrf_failures_are_400_and_write_nothing(client, logged_in, app, make_token):
    token = make_token(logged_in)
    data = {"title": "should not exist"}
    if token is not None:
        data["csrf_token"] = token
    response = client.post("/notes", data=data)
    assert response.status_code == 400
    assert "CSRF token" in response.get_data(as_text=True)
    assert count_rows(app, "notes") == 0


def test_csrf_token_from_the_header_works(client, logged_in, app):
    token = logged_in.token("/notes")
    response = client.post("/notes", data={"title": "via header"}, headers={"X-CSRFToken": token})
    assert response.status_code == 302 and count_rows(app, "notes") == 1


def test_csrf_token_dies_with_the_session(client, logged_in, app):
    token = logged_in.token("/notes")
    logged_in.logout()
    logged_in.login()
    response = client.post("/notes", data={"title": "old token", "csrf_token": token})
    assert response.status_code == 400 and count_rows(app, "notes") == 0


def test_register_without_csrf_writes_nothing(client, app):
    response = client.post("/register", data={"username": "eve", "password": PASSWORD})
    assert response.status_code == 400 and count_rows(app, "users") == 0


# ---------------------------------------------------------------------------
# 6. REST APIs with Flask (MethodView)
# ---------------------------------------------------------------------------

def test_hello_resource(client):
    assert client.get("/api/hello").json == {"message": "Hello, World"}


def test_note_crud_through_the_api(client):
    headers = api_headers(client)
    created = client.post("/api/notes", json={"title": "API", "body": "b"}, headers=headers)
    assert created.status_code == 201
    note = created.json
    assert created.headers["Location"] == f"/api/notes/{note['id']}"
    assert client.get(created.headers["Location"], headers=headers).json == note
    put = client.put(f"/api/notes/{note['id']}", json={"title": "T2", "body": "B2"}, headers=headers)
    assert put.status_code == 200 and put.json["title"] == "T2" and put.json["body"] == "B2"
    patch = client.patch(f"/api/notes/{note['id']}", json={"body": "B3"}, headers=headers)
    assert patch.json["title"] == "T2" and patch.json["body"] == "B3"
    deleted = client.delete(f"/api/notes/{note['id']}", headers=headers)
    assert deleted.status_code == 204 and deleted.data == b""
    assert client.get(f"/api/notes/{note['id']}", headers=headers).status_code == 404


def test_another_users_note_is_404_for_every_method(client):
    owner = api_headers(client, "owner")
    other = api_headers(client, "other")
    note_id = client.post("/api/notes", json={"title": "mine"}, headers=owner).json["id"]
    url = f"/api/notes/{note_id}"
    for method, body in [("get", None), ("put", {"title": "x", "body": "y"}),
                         ("patch", {"title": "x"}), ("delete", None)]:
        response = getattr(client, method)(url, json=body, headers=other)
        assert response.status_code == 404, method
        assert response.json == client.get("/api/notes/999999", headers=other).json
    assert client.get(url, headers=owner).json["title"] == "mine"
    assert client.get("/api/notes", headers=other).json["total"] == 0


@pytest.mark.parametrize("url, allow", [("/api/notes", "GET, HEAD, OPTIONS, POST"),
                                        ("/api/notes/1", "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"),
                                        ("/api/hello", "GET, HEAD, OPTIONS")])
def test_wrong_method_is_405_with_allow(client, url, allow):
    response = client.open(url, method="BREW")
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == set(allow.split(", "))
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("kwargs", [{"data": "title=x"},
                                    {"data": '{"title": "x"}', "content_type": "text/plain"},
                                    {}])
def test_body_that_is_not_json_is_415(client, kwargs):
    response = client.post("/api/notes", headers=api_headers(client), **kwargs)
    assert response.status_code == 415 and response.mimetype == "application/problem+json"


@pytest.mark.parametrize("body", ['{"title": ', "{'title': 'x'}", '{"title": "x"} trailing',
                                  b'{"title": "\xff\xfe"}', "[" * 100_000 + "]" * 100_000])
def test_malformed_json_is_400(client, body):
    response = client.post("/api/notes", data=body, content_type="application/json",
                           headers=api_headers(client))
    assert response.status_code == 400 and response.mimetype == "application/problem+json"


@pytest.mark.parametrize("body, errors", [
    ({}, {"title": "This field is required."}),
    ({"title": ""}, {"title": "This field is required."}),
    ({"title": 5}, {"title": "Must be a string."}),
    ({"title": None}, {"title": "Must be a string."}),
    ({"title": "x" * 201}, {"title": "Must be at most 200 characters."}),
    ({"title": "x", "body": ["a"]}, {"body": "Must be a string."}),
    ({"title": "x", "colour": "red"}, {"colour": "Unknown field."}),
    ({"title": "x", "user_id": 1, "id": 9}, {"user_id": "Unknown field.", "id": "Unknown field."}),
    ({"title": "\ud800"}, {"title": "Must be valid Unicode text."}),
])
def test_invalid_fields_are_422_with_details(client, app, body, errors):
    response = client.post("/api/notes", json=body, headers=api_headers(client))
    assert response.status_code == 422
    assert response.json["errors"] == errors
    assert count_rows(app, "notes") == 0


@pytest.mark.parametrize("body", ["null", "[]", "42", '"title"', "true"])
def test_json_that_is_not_an_object_is_422(client, body):
    response = client.post("/api/notes", data=body, content_type="application/json",
                           headers=api_headers(client))
    assert response.status_code == 422 and "must be an object" in response.json["detail"]


def test_put_replaces_patch_changes_only_what_is_sent(client):
    headers = api_headers(client)
    note_id = client.post("/api/notes", json={"title": "t", "body": "b"}, headers=headers).json["id"]
    response = client.put(f"/api/notes/{note_id}", json={"body": "b2"}, headers=headers)
    assert response.status_code == 422 and response.json["errors"] == {"title": "This field is required."}
    replaced = client.put(f"/api/notes/{note_id}", json={"title": "only"}, headers=headers).json
    assert (replaced["title"], replaced["body"]) == ("only", "")
    patched = client.patch(f"/api/notes/{note_id}", json={"body": "new"}, headers=headers).json
    assert (patched["title"], patched["body"]) == ("only", "new")
    assert client.patch(f"/api/notes/{note_id}", json={}, headers=headers).json == patched


def test_collection_pagination_and_search(client):
    headers = api_headers(client)
    for n in range(25):
        client.post("/api/notes", json={"title": f"note {n}", "body": "even" if n % 2 == 0 else ""},
                    headers=headers)
    first = client.get("/api/notes?per_page=10", headers=headers).json
    assert (first["total"], first["pages"], len(first["items"])) == (25, 3, 10)
    assert first["items"][0]["title"] == "note 24"
    last = client.get("/api/notes?per_page=10&page=7", headers=headers).json
    assert last["page"] == 3 and len(last["items"]) == 5
    capped = client.get("/api/notes?per_page=100000", headers=headers).json
    assert capped["per_page"] == tour.API_MAX_PAGE_SIZE
    assert client.get("/api/notes?per_page=abc", headers=headers).json["per_page"] == 1
    found = client.get("/api/notes?q=EVEN", headers=headers).json
    assert found["total"] == 13


@pytest.mark.parametrize("note_id", ["0", "-1", "99999999999999999999", "abc"])
def test_impossible_note_ids_are_404(client, note_id):
    response = client.get(f"/api/notes/{note_id}", headers=api_headers(client))
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_openapi_describes_every_api_route(client, app):
    document = client.get("/api/openapi.json").json
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            assert path in document["paths"], path
            methods = {m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}}
            assert methods == set(document["paths"][path]), path
            for operation in document["paths"][path].values():
                assert operation["responses"]


def test_openapi_schemas_match_the_validation_rules(client):
    schemas = client.get("/api/openapi.json").json["components"]["schemas"]
    assert schemas["NoteInput"]["properties"]["title"]["maxLength"] == 200
    assert schemas["Credentials"]["properties"]["username"]["pattern"] == "^[A-Za-z0-9_.-]+$"


# ---------------------------------------------------------------------------
# 7. JSON responses (jsonify)
# ---------------------------------------------------------------------------

def test_data_is_the_cheat_sheet_json(client):
    response = client.get("/data")
    assert response.mimetype == "application/json"
    assert response.json == {"name": "Nutan", "role": "DevOps Engineer"}


@pytest.mark.parametrize("method, url", [("get", "/api/nope"), ("get", "/api/notes"),
                                         ("post", "/api/token"), ("get", "/api/notes/1")])
def test_api_errors_are_problem_json(client, method, url):
    response = getattr(client, method)(url)
    assert response.status_code >= 400
    assert response.mimetype == "application/problem+json"
    assert {"type", "title", "status", "detail"} <= set(response.json)
    assert response.json["status"] == response.status_code


def test_pages_answer_json_errors_to_clients_that_prefer_json(client):
    response = client.get("/no-such-page", headers={"Accept": "application/json"})
    assert response.status_code == 404 and response.json["title"] == "Not Found"
    assert client.get("/no-such-page", headers={"Accept": "*/*"}).mimetype == "text/html"


# ---------------------------------------------------------------------------
# 8. Flask configurations & environment variables
# ---------------------------------------------------------------------------

@pytest.fixture
def clean_environment(monkeypatch, tmp_path):
    """No FLASK_* or APP_SETTINGS from the outside, and an empty working directory."""
    for key in list(os.environ):
        if key.startswith("FLASK_") or key == "APP_SETTINGS":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_settings_precedence(clean_environment, tmp_path):
    settings = tmp_path / "settings.py"
    settings.write_text("JWT_ACCESS_TOKEN_EXPIRES = 100\nLOGIN_MAX_FAILURES = 7\n"
                        "MAX_CONTENT_LENGTH = 2048\n")
    clean_environment.setenv("APP_SETTINGS", str(settings))
    clean_environment.setenv("FLASK_JWT_ACCESS_TOKEN_EXPIRES", "200")
    clean_environment.setenv("FLASK_MAX_CONTENT_LENGTH", "4096")
    app = create_app({"TESTING": True, "MAX_CONTENT_LENGTH": 8192}, instance_path=str(tmp_path / "i"))
    assert app.config["LOGIN_MAX_FAILURES"] == 7
    assert app.config["JWT_ACCESS_TOKEN_EXPIRES"] == 200
    assert app.config["MAX_CONTENT_LENGTH"] == 8192
    assert app.config["LOGIN_FAILURE_WINDOW"] == 900
    sources = app.extensions["config_sources"]
    assert sources["LOGIN_MAX_FAILURES"] == "APP_SETTINGS file"
    assert sources["JWT_ACCESS_TOKEN_EXPIRES"] == "FLASK_* environment variable"
    assert sources["MAX_CONTENT_LENGTH"] == "create_app() argument"
    assert sources["LOGIN_FAILURE_WINDOW"] == "Flask Tour default"


def test_dotenv_fills_but_never_overrides_the_environment(clean_environment, tmp_path):
    (tmp_path / ".env").write_text("FLASK_LOGIN_MAX_FAILURES=9\nFLASK_TRUSTED_PROXIES=3\n")
    clean_environment.setenv("FLASK_TRUSTED_PROXIES", "1")
    try:
        app = create_app({"TESTING": True}, instance_path=str(tmp_path / "i"))
        assert app.config["LOGIN_MAX_FAILURES"] == 9
        assert app.config["TRUSTED_PROXIES"] == 1
    finally:
        os.environ.pop("FLASK_LOGIN_MAX_FAILURES", None)


def test_no_configuration_generates_one_private_secret_key(clean_environment, tmp_path):
    instance = tmp_path / "instance"
    first = create_app(instance_path=str(instance))
    second = create_app(instance_path=str(instance))
    key_file = instance / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"] == key_file.read_text().strip()
    assert len(first.config["SECRET_KEY"]) == 64
    assert first.config["DATABASE"] == str(instance / "flask_tour.sqlite")
    assert not first.debug
    assert first.test_client().get("/").status_code == 200


def read_key_when_released(instance, barrier, keys):
    barrier.wait()
    keys.put(tour.instance_secret_key(instance))


def race_for_a_secret_key(instance, racers=8):
    """Let `racers` processes read the key of a new instance folder at the same moment."""
    context = multiprocessing.get_context("fork")
    barrier, keys = context.Barrier(racers), context.Queue()
    processes = [context.Process(target=read_key_when_released, args=(instance, barrier, keys))
                 for _ in range(racers)]
    for process in processes:
        process.start()
    results = {keys.get(timeout=10) for _ in processes}
    for process in processes:
        process.join(timeout=10)
    return results


def test_processes_racing_for_a_new_secret_key_all_get_the_same_one(tmp_path):
    for attempt in range(25):  # each race is short: run several to give a bug many chances
        instance = tmp_path / str(attempt)
        assert race_for_a_secret_key(str(instance)) == {(instance / "secret_key").read_text()}
        assert sorted(os.listdir(instance)) == ["secret_key"]  # no temporary file left behind


@pytest.mark.parametrize("key", ["", "short", tour.EXAMPLE_SECRET])
def test_weak_secret_keys_are_refused_outside_testing(clean_environment, tmp_path, key):
    with pytest.raises(RuntimeError, match="FLASK_SECRET_KEY"):
        create_app({"SECRET_KEY": key}, instance_path=str(tmp_path))
    assert create_app({"SECRET_KEY": key, "TESTING": True}, instance_path=str(tmp_path))


def test_config_page_masks_secrets_and_shows_sources(client, app):
    page = client.get("/config").get_data(as_text=True)
    assert TEST_SECRET not in page and JWT_TEST_KEY not in page
    assert "secret_key" not in page.replace("SECRET_KEY", "")
    assert re.search(r"<code>SECRET_KEY</code></th><td><code>•+ \(hidden\)</code></td>", page)
    assert re.search(r"<code>MAX_CONTENT_LENGTH</code></th><td><code>1048576</code></td>"
                     r"<td>Flask Tour default</td>", page)
    assert "create_app() argument" in page


# ---------------------------------------------------------------------------
# 9. Database integration (sqlite3)
# ---------------------------------------------------------------------------

def test_get_db_is_one_connection_per_request_closed_at_teardown(app):
    with app.app_context():
        db = tour.get_db()
        assert tour.get_db() is db
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    with pytest.raises(sqlite3.ProgrammingError):
        db.execute("SELECT 1")


def test_schema_is_created_on_first_use(app):
    assert not os.path.exists(app.config["DATABASE"])
    with app.app_context():
        tables = {row[0] for row in tour.get_db().execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"users", "notes", "login_failures", "revoked_tokens"} <= tables


def test_init_db_command_recreates_the_schema(runner, client, app):
    api_headers(client)
    result = runner.invoke(args=["init-db"])
    assert "Initialized the database" in result.output
    assert count_rows(app, "users") == 0


# ---------------------------------------------------------------------------
# 10. Models (an ORM-style layer over sqlite3)
# ---------------------------------------------------------------------------

def test_user_model(app):
    with app.app_context():
        user = User.create("Grace", PASSWORD)
        assert User.get(user.id) == user and User.find("grace") == user
        assert user.check_password(PASSWORD) and not user.check_password("nope")
        assert user.password_hash.startswith("pbkdf2:") and PASSWORD not in user.password_hash
        with pytest.raises(UsernameTaken):
            User.create("GRACE", PASSWORD)
        assert User.get(0) is None and User.get(2**80) is None and User.get("1") is None


def test_note_model_and_cascade(app):
    with app.app_context():
        user = User.create("grace", PASSWORD)
        note = Note.create(user.id, "t", "b")
        assert Note.get_for_user(note.id, user.id) == note
        assert Note.get_for_user(note.id, user.id + 1) is None
        assert Note.get_for_user(2**64, user.id) is None
        note.update(body="changed")
        assert Note.get_for_user(note.id, user.id).body == "changed" and note.title == "t"
        assert Note.page_for_user(user.id, 1, 10).total == 1
        user.delete()
        assert Note.get_for_user(note.id, user.id) is None


@pytest.mark.parametrize("text", ["' OR 1=1 --", '"; DROP TABLE users; --', "%' --", "\\"])
def test_sql_injection_is_stored_as_text(app, text):
    with app.app_context():
        user = User.create("grace", PASSWORD)
        other = User.create("other", PASSWORD)
        Note.create(other.id, "other's note", "")
        note = Note.create(user.id, text, text)
        assert Note.get_for_user(note.id, user.id).title == text
        found = Note.search(user.id, text, 1, 10)
        assert [n.id for n in found.items] == [note.id]
        assert User.find(text) is None
    assert count_rows(app, "users") == 2


def test_duplicate_username_is_409_on_the_api(client):
    client.post("/api/users", json={"username": "Alice", "password": PASSWORD})
    response = client.post("/api/users", json={"username": "aLiCe", "password": PASSWORD})
    assert response.status_code == 409 and response.mimetype == "application/problem+json"


# ---------------------------------------------------------------------------
# 11. Authentication & JWT
# ---------------------------------------------------------------------------

KEY = JWT_TEST_KEY.encode()


def forge(header, claims, key=KEY):
    """A token with any header and claims, signed with HS256."""
    segments = [tour.b64url_encode(json.dumps(part).encode()) for part in (header, claims)]
    signing_input = ".".join(segments)
    return f"{signing_input}.{tour.b64url_encode(tour.hs256(key, signing_input))}"


def test_jwt_round_trip():
    claims = {"sub": "1", "exp": time.time() + 60}
    assert jwt_decode(jwt_encode(claims, KEY), KEY) == claims


def test_token_endpoint_and_me(client):
    client.post("/api/users", json={"username": "alice", "password": PASSWORD})
    response = client.post("/api/token", json={"username": "alice", "password": PASSWORD})
    body = response.json
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert response.headers["Cache-Control"] == "no-store"
    claims = jwt_decode(body["access_token"], KEY)
    assert set(claims) == {"sub", "iat", "exp", "jti"} and claims["exp"] - claims["iat"] == 900
    me = client.get("/api/me", headers={"Authorization": "Bearer " + body["access_token"]})
    assert me.json["username"] == "alice" and "password_hash" not in me.json


def test_token_lifetime_is_configurable(app, client):
    app.config["JWT_ACCESS_TOKEN_EXPIRES"] = 60
    client.post("/api/users", json={"username": "alice", "password": PASSWORD})
    assert client.post("/api/token", json={"username": "alice", "password": PASSWORD}
                       ).json["expires_in"] == 60


# A token made by PyJWT 2 (jwt.encode({"sub": "1", "exp": 4102444800}, JWT_TEST_KEY)):
# a standard library's token must verify with our code.
PYJWT_TOKEN = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwiZXhwIjo0MTAyNDQ0ODAwfQ."
               "Qe_c7VelRNlARf8s8FxMt4vxplUUgwSKEnJaVsgDLGg")


def test_tokens_from_a_standard_library_are_accepted():
    assert jwt_decode(PYJWT_TOKEN, KEY) == {"sub": "1", "exp": 4102444800}


def test_missing_token_is_401_with_bare_bearer_challenge(client):
    for headers in ({}, {"Authorization": "Basic YTpi"}, {"Authorization": "Bearer"}):
        response = client.get("/api/me", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def invalid_tokens():
    now = int(time.time())
    good = {"sub": "1", "exp": now + 600}
    header = {"alg": "HS256", "typ": "JWT"}
    valid = forge(header, good)
    flipped = valid[:-3] + ("A" if valid[-3] != "A" else "B") + valid[-2:]
    return {
        "two segments": ".".join(valid.split(".")[:2]),
        "four segments": valid + ".x",
        "bad base64": valid.replace(".", ".*", 1),
        "padding": valid + "=",
        "not json": "bm90IGpzb24." + valid.split(".", 1)[1],
        "alg none": forge({"alg": "none"}, good).rsplit(".", 1)[0] + ".",
        "alg HS512": forge({"alg": "HS512"}, good),
        "no alg": forge({"typ": "JWT"}, good),
        "other key": forge(header, good, b"another-key-that-is-long-enough-0123456789"),
        "flipped signature": flipped,
        "no exp": forge(header, {"sub": "1"}),
        "expired": forge(header, {"sub": "1", "exp": now - 3600}),
        "future nbf": forge(header, {**good, "nbf": now + 3600}),
        "string exp": forge(header, {"sub": "1", "exp": str(now + 600)}),
        "unknown user": forge(header, {"sub": "999", "exp": now + 600}),
        "too long": forge(header, {**good, "pad": "x" * 5000}),
    }


@pytest.mark.parametrize("name", list(invalid_tokens()))
def test_invalid_tokens_are_401_invalid_token(client, name):
    api_headers(client)  # user 1 exists
    token = invalid_tokens()[name]
    response = client.get("/api/me", headers={"Authorization": "Bearer " + token})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'
    assert response.mimetype == "application/problem+json"


def test_token_of_a_deleted_user_is_rejected(client, app):
    headers = api_headers(client)
    with app.app_context():
        User.find("alice").delete()
    assert client.get("/api/me", headers=headers).status_code == 401


def test_api_logout_revokes_the_token(client):
    headers = api_headers(client)
    assert client.post("/api/logout", headers=headers).status_code == 204
    response = client.get("/api/me", headers=headers)
    assert response.status_code == 401 and "revoked" in response.json["detail"]
    assert client.get("/api/me", headers=api_headers(client)).status_code == 200


def test_api_ignores_the_session_cookie(client, logged_in):
    assert "Signed in as" in client.get("/").get_data(as_text=True)
    assert client.get("/api/me").status_code == 401
    assert client.post("/api/notes", json={"title": "x"}).status_code == 401


def test_session_is_cleared_on_login(client, auth):
    auth.register()
    auth.logout()
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    auth.login()
    with client.session_transaction() as session:
        assert "planted" not in session and "user_id" in session


def test_session_cookie_flags(client, auth, app):
    cookie = auth.register().headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    https = app.test_client()
    cookie = https.get("/login", base_url="https://localhost").headers["Set-Cookie"]
    assert "Secure" in cookie


def test_repeated_failed_logins_are_throttled(client, auth, app):
    auth.register()
    auth.logout()
    for _ in range(5):
        assert auth.login(password="wrong password").status_code == 200
    locked = auth.login()
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 800
    api = client.post("/api/token", json={"username": "alice", "password": PASSWORD})
    assert api.status_code == 429 and api.mimetype == "application/problem+json"
    assert "Retry-After" in api.headers


def test_a_successful_login_resets_the_failure_count(client, auth, app):
    auth.register()
    auth.logout()
    for _ in range(4):
        auth.login(password="wrong password")
    assert auth.login().status_code == 302
    auth.logout()
    for _ in range(4):
        assert auth.login(password="wrong password").status_code == 200
    assert auth.login().status_code == 302


# ---------------------------------------------------------------------------
# 12. Middleware / request hooks
# ---------------------------------------------------------------------------

def test_request_id_is_kept_when_well_formed(client):
    assert client.get("/data", headers={"X-Request-ID": "abc.DEF-1_2"}).headers["X-Request-ID"] \
        == "abc.DEF-1_2"


@pytest.mark.parametrize("incoming", ["", "has space", "x" * 65, "<script>", "a\u00e9"])
def test_malformed_request_ids_are_replaced(client, incoming):
    response = client.get("/data", headers={"X-Request-ID": incoming})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


@pytest.mark.parametrize("url", ["/", "/data", "/api/notes", "/no-such-page", "/static/style.css",
                                 "/errors/500"])
def test_every_response_has_the_hook_headers(client, url):
    headers = client.get(url).headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert re.fullmatch(r"app;dur=\d+\.\d", headers["Server-Timing"])
    assert "Strict-Transport-Security" not in headers


def test_hsts_only_over_https(client):
    response = client.get("/", base_url="https://localhost")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_access_log_line(client, caplog):
    with caplog.at_level("INFO", logger="app"):
        response = client.get("/data", headers={"X-Request-ID": "trace-me"})
    assert response.status_code == 200
    assert re.search(r"GET /data 200 \d+\.\dms trace-me", caplog.text)


def test_hooks_page_shows_this_request(client, logged_in):
    response = client.get("/hooks", headers={"X-Request-ID": "hook-demo"})
    page = response.get_data(as_text=True)
    assert "<code>hook-demo</code> (kept from your X-Request-ID header)" in page
    assert "alice" in page and "Content-Security-Policy" in page


# ---------------------------------------------------------------------------
# 13. Error handling & custom error pages
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("code", sorted(tour.DEMO_ERRORS))
def test_error_demo_pages(client, code):
    response = client.get(f"/errors/{code}")
    page = response.get_data(as_text=True)
    assert response.status_code == code and response.mimetype == "text/html"
    assert f"<h1>{code} · {tour.HTTP_ERROR_TITLES[code]}</h1>" in page
    assert 'class="site-header"' in page and "Traceback" not in page


def test_error_demo_headers(client):
    assert client.get("/errors/405").headers["Allow"] == "POST"
    assert client.get("/errors/429").headers["Retry-After"] == "60"
    assert client.get("/errors/999").status_code == 404


def test_a_crash_is_logged_with_its_traceback_and_hidden_from_the_client(client, caplog):
    with caplog.at_level("ERROR", logger="app"):
        response = client.get("/errors/500")
    assert "Traceback" in caplog.text and "A deliberate crash" in caplog.text
    assert "deliberate" not in response.get_data(as_text=True)
    api = client.get("/errors/500", headers={"Accept": "application/json"})
    assert api.json["status"] == 500 and "deliberate" not in api.get_data(as_text=True)


def test_oversize_bodies_are_413(client, app):
    big = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    page = client.post("/register", data={"username": big})
    assert page.status_code == 413 and page.mimetype == "text/html"
    api = client.post("/api/users", data=big, content_type="application/json")
    assert api.status_code == 413 and api.mimetype == "application/problem+json"


# ---------------------------------------------------------------------------
# 14. Deployment (Gunicorn + Nginx, Docker)
# ---------------------------------------------------------------------------

def test_healthz(client):
    assert client.get("/healthz").json == {"status": "ok", "database": "ok"}


def test_healthz_is_503_without_a_database(tmp_path, caplog):
    app = create_app({"TESTING": True, "DATABASE": str(tmp_path / "missing" / "db.sqlite")},
                     instance_path=str(tmp_path / "i"))
    with caplog.at_level("ERROR", logger="app"):
        response = app.test_client().get("/healthz")
    assert response.status_code == 503 and response.json["database"] == "unavailable"
    assert "Health check failed" in caplog.text


def test_database_errors_are_503_not_500(tmp_path):
    app = create_app({"TESTING": True, "DATABASE": str(tmp_path / "missing" / "db.sqlite")},
                     instance_path=str(tmp_path / "i"))
    client = app.test_client()
    page = client.get("/login")
    page = client.post("/login", data={"username": "a", "password": "b", "csrf_token": csrf_from(page)})
    assert page.status_code == 503 and page.headers["Retry-After"] and page.mimetype == "text/html"
    api = client.post("/api/token", json={"username": "abc", "password": PASSWORD})
    assert api.status_code == 503 and api.mimetype == "application/problem+json"



# Proxy headers, through the test client ------------------------------------

FORWARDED = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9", "X-Forwarded-Proto": "https",
             "X-Forwarded-Host": "tour.example", "X-Forwarded-Port": "8443",
             "X-Forwarded-Prefix": "/tour"}


def app_behind_proxies(tmp_path, proxies):
    """A test app that trusts X-Forwarded-* from `proxies` proxies (0: none)."""
    return create_app({"TESTING": True, "SECRET_KEY": TEST_SECRET, "TRUSTED_PROXIES": proxies,
                       "DATABASE": str(tmp_path / "db.sqlite")}, instance_path=str(tmp_path / "i"))


def test_proxy_fix_gives_the_app_the_clients_view(tmp_path):
    with app_behind_proxies(tmp_path, 1).test_client() as client:
        response = client.get("/login", headers=FORWARDED)
        assert request.remote_addr == "203.0.113.9"  # added by our one proxy, not by the client
        assert (request.scheme, request.host, request.script_root) == (
            "https", "tour.example:8443", "/tour")
        assert url_for("notes", _external=True) == "https://tour.example:8443/tour/notes"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    cookie = response.headers["Set-Cookie"]
    assert "; Secure" in cookie and "; Path=/tour" in cookie
    assert 'href="/tour/static/style.css"' in response.get_data(as_text=True)
    redirect = client.get("/notes", headers=FORWARDED)
    assert redirect.headers["Location"] == "/tour/login?next=/notes"


def test_no_hsts_nor_secure_cookie_when_the_client_used_http(tmp_path):
    client = app_behind_proxies(tmp_path, 1).test_client()
    response = client.get("/login", headers={**FORWARDED, "X-Forwarded-Proto": "http"})
    assert "Strict-Transport-Security" not in response.headers
    assert "Secure" not in response.headers["Set-Cookie"]


def test_proxy_headers_are_ignored_by_default(tmp_path):
    with app_behind_proxies(tmp_path, 0).test_client() as client:
        response = client.get("/login", headers=FORWARDED)
        assert (request.remote_addr, request.scheme, request.host, request.script_root) == (
            "127.0.0.1", "http", "localhost", "")
    assert "Strict-Transport-Security" not in response.headers
    assert "Secure" not in response.headers["Set-Cookie"]
    assert "/tour/" not in response.get_data(as_text=True)


@pytest.mark.parametrize("header", ["Host", "X-Forwarded-Host"])
def test_a_malformed_host_is_a_400_not_a_500(tmp_path, header):
    client = app_behind_proxies(tmp_path, 1).test_client()
    response = client.get("/", headers={header: "x" * 64 + ".example"})  # labels stop at 63
    assert response.status_code == 400 and response.mimetype == "application/problem+json"


# Embedding: under a prefix, and two apps in one process --------------------

def behind_proxy_at(prefix, wsgi_app):
    """What nginx does for a sub-path: strip `prefix` and announce it in X-Forwarded-Prefix."""
    def proxy(environ, start_response):
        path = environ["PATH_INFO"]
        if path != prefix and not path.startswith(prefix + "/"):
            return NotFound()(environ, start_response)
        environ = {**environ, "PATH_INFO": path[len(prefix):] or "/",
                   "HTTP_X_FORWARDED_PREFIX": prefix}
        return wsgi_app(environ, start_response)
    return proxy


def app_under_demo(tmp_path, mount):
    """An app reachable only below /demo: mounted by DispatcherMiddleware or behind a proxy."""
    app = app_behind_proxies(tmp_path, 1 if mount == "proxy" else 0)
    if mount == "dispatcher":
        app.wsgi_app = DispatcherMiddleware(NotFound(), {"/demo": app.wsgi_app})
    else:
        app.wsgi_app = behind_proxy_at("/demo", app.wsgi_app)
    return app


def other_targets(client, urls):
    """The POST form actions and the URLs app.js calls, on the HTML pages at `urls`."""
    targets = set()
    for url in urls:
        response = client.get(url)
        if response.mimetype == "text/html":
            collector = LinkCollector()
            collector.feed(response.get_data(as_text=True))
            targets.update(collector.other_targets)
    return targets


@pytest.mark.parametrize("mount", ["dispatcher", "proxy"])
def test_everything_stays_under_the_prefix(tmp_path, mount):
    client = app_under_demo(tmp_path, mount).test_client()
    auth = AuthActions(client, prefix="/demo")
    assert client.get("/notes").status_code == 404
    assert client.get("/demo/notes").headers["Location"] == "/demo/login?next=/notes"
    assert auth.register().headers["Location"] == "/demo/notes"
    client.post("/demo/notes", data={"title": "crawl me", "csrf_token": auth.token("/notes")})
    for signed_in in (True, False):
        results = crawl(client, "/demo/")
        assert "/demo/static/style.css" in results and "/demo/topics/14" in results
        assert all(url.startswith("/demo/") for url in results), results
        assert not {url: status for url, status in results.items()
                    if status >= 400 and not url.startswith("/demo/errors/")}
        actions = other_targets(client, results)
        assert all(action.startswith("/demo/") for action in actions), actions
        assert ("/demo/logout" in actions) == signed_in and "/demo/api/token" in actions
        if signed_in:
            delete = next(action for action in actions if action.endswith("/delete"))
            assert client.post(delete, data={"csrf_token": auth.token("/notes")}).headers[
                "Location"] == "/demo/notes"
            assert auth.logout().headers["Location"] == "/demo/"
    assert auth.login(next="/search?q=x").headers["Location"] == "/demo/search?q=x"
    headers = api_headers(client, "bob", prefix="/demo")
    created = client.post("/demo/api/notes", json={"title": "api"}, headers=headers)
    assert created.headers["Location"] == f"/demo/api/notes/{created.json['id']}"
    assert client.get("/demo/api/openapi.json").json["servers"] == [{"url": "/demo"}]


def test_two_apps_in_one_process_share_no_data_and_no_sessions(tmp_path):
    apps = {name: create_app({"TESTING": True, "SECRET_KEY": f"{name}-{TEST_SECRET}",
                              "DATABASE": str(tmp_path / f"{name}.sqlite")},
                             instance_path=str(tmp_path / name)) for name in ("a", "b")}
    site = DispatcherMiddleware(NotFound(), {"/a": apps["a"], "/b": apps["b"]})
    browser = Client(site)
    AuthActions(browser, "/a").register("alice")
    AuthActions(browser, "/b").register("bob")  # one browser, a session with each app
    assert "Signed in as <strong>alice</strong>" in browser.get("/a/notes").text
    assert "Signed in as <strong>bob</strong>" in browser.get("/b/notes").text
    forger = Client(site)
    forger.set_cookie("session", browser.get_cookie("session", path="/a").value, path="/b")
    assert forger.get("/b/notes").status_code == 302  # b does not accept a's signature
    assert AuthActions(Client(site), "/b").login("alice").status_code == 200  # unknown in b
    token_of_a = api_headers(browser, "carol", prefix="/a")
    assert browser.get("/a/api/me", headers=token_of_a).status_code == 200
    assert browser.get("/b/api/me", headers=token_of_a).status_code == 401
    assert [count_rows(apps[name], "users") for name in ("a", "b")] == [2, 1]


# Deployment files (no Docker engine here: these keep them in step) ---------

def test_deployment_files_agree_with_each_other_and_the_app():
    dockerfile = (ROOT / "Dockerfile").read_text()
    compose = (ROOT / "docker-compose.yml").read_text()
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    readme = (ROOT / "README.md").read_text()
    assert 'CMD ["gunicorn", "app:app", "--bind", "0.0.0.0:8000"]' in dockerfile
    assert "EXPOSE 8000" in dockerfile and "127.0.0.1:8000/healthz" in dockerfile
    assert re.search(r"^USER [1-9]\d*:", dockerfile, re.M), "the container runs as root"
    assert re.findall(r"^  (\w+): \*app$", compose, re.M) == ["app1", "app2"]
    for needle in ("server app1:8000;", "server app2:8000;", "/srv/flask-tour/static/"):
        assert needle in nginx and needle in readme  # the README's sed line rewrites these
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in compose
    assert "./static:/srv/flask-tour/static:ro" in compose and "- instance:/app/instance" in compose
    megabytes = int(re.search(r"client_max_body_size (\d+)m;", nginx).group(1))
    assert megabytes * 1024 * 1024 == tour.DEFAULTS["MAX_CONTENT_LENGTH"]


# Live servers: gunicorn and nginx on loopback ports -------------------------

def free_port():
    """An unused TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server process started by a test: its URL and the file its output goes to."""

    def __init__(self, proc, port, log):
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}"

    def output(self):
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def running(command, port, log, **popen_args):
    """Run `command` until the block ends, once /healthz answers on `port`; stop it by pid."""
    with open(log, "wb") as output:
        proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, **popen_args)
    server = Server(proc, port, log)
    try:
        wait_until_healthy(server)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_gunicorn(tmp_path, workers=2, env=None, port=None, args=(), target="app:app"):
    """Run gunicorn on a loopback port; `env` adds variables, or removes them with None."""
    port = port or free_port()
    environment = {**os.environ, "FLASK_DATABASE": str(tmp_path / "gunicorn.sqlite"),
                   "FLASK_SECRET_KEY": TEST_SECRET, **(env or {})}
    command = [sys.executable, "-m", "gunicorn", target, "--bind", f"127.0.0.1:{port}",
               *(["--workers", str(workers)] if workers else []), *args]
    return running(command, port, tmp_path / f"gunicorn-{port}.log", cwd=ROOT,
                   env={key: value for key, value in environment.items() if value is not None})


def wait_until_healthy(server, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.proc.args[0]} exited:\n{server.output()}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{server.url} did not become healthy:\n{server.output()}")


def wait_for(condition, what, timeout=10):
    """Poll `condition` until it is truthy, for effects no event announces (log lines)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return result


def access_log_args(path):
    """gunicorn options that log each request to `path` as '<worker pid> METHOD /path status'."""
    return ("--access-logfile", str(path), "--access-logformat", "%(p)s %(m)s %(U)s %(s)s")


def logged_requests(path, url_path):
    """The worker pids of the requests for `url_path` in a gunicorn access log."""
    lines = path.read_text().splitlines() if path.exists() else []
    return [fields[0] for fields in map(str.split, lines) if fields[2] == url_path]


def worker_pids(log, url_path, count):
    """The pids of the workers that served `count` requests for `url_path`, once all are logged."""
    def logged():
        pids = logged_requests(log, url_path)
        return len(pids) == count and pids
    return set(wait_for(logged, f"{count} requests for {url_path} in {log.name}"))


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def get_data(self, as_text=False):  # the name csrf_from expects
        return self.body.decode() if as_text else self.body

    @property
    def text(self):
        return self.body.decode()

    @property
    def json(self):
        return json.loads(self.body)


class LiveClient:
    """A browser for live servers: keeps cookies, follows no redirects."""

    def __init__(self, url, cookies=None, source_address=None):
        parts = urlsplit(url)
        self.host, self.port, self.source_address = parts.hostname, parts.port, source_address
        self.cookies = dict(cookies or {})

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10,
                                                source_address=self.source_address)
        try:
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            reply = Reply(response.status, response.headers, response.read())
        finally:
            connection.close()
        for cookie in reply.headers.get_all("Set-Cookie") or []:
            name, _, value = cookie.partition(";")[0].partition("=")
            self.cookies[name] = value
        return reply

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def post_form(self, path, fields):
        return self.request("POST", path, urlencode(fields),
                            {"Content-Type": "application/x-www-form-urlencoded"})

    def post_json(self, path, data, headers=None):
        return self.request("POST", path, json.dumps(data),
                            {"Content-Type": "application/json", **(headers or {})})


def register_and_log_in(browser, username="ada", prefix=""):
    """Register, log out and log in again through the forms; return the notes page."""
    fields = {"username": username, "password": PASSWORD}
    reply = browser.post_form(prefix + "/register", {
        **fields, "csrf_token": csrf_from(browser.get(prefix + "/register"))})
    assert (reply.status, reply.headers["Location"]) == (302, prefix + "/notes"), reply.text
    browser.post_form(prefix + "/logout", {"csrf_token": csrf_from(browser.get(prefix + "/notes"))})
    assert browser.get(prefix + "/notes").status == 302
    reply = browser.post_form(prefix + "/login?next=%2Fsearch", {
        **fields, "csrf_token": csrf_from(browser.get(prefix + "/login"))})
    assert (reply.status, reply.headers["Location"]) == (302, prefix + "/search"), reply.text
    page = browser.get(prefix + "/notes")
    assert f"Signed in as <strong>{username}</strong>" in page.text
    return page


def test_gunicorn_serves_the_tour(tmp_path):
    with run_gunicorn(tmp_path) as server:
        with urllib.request.urlopen(server.url + "/") as response:
            page = response.read().decode()
    assert all(f'href="/topics/{n}"' in page for n in range(1, 15))


def test_gunicorn_end_to_end_forms_and_api(tmp_path):
    with run_gunicorn(tmp_path, workers=2) as server:
        register_and_log_in(LiveClient(server.url))
        api = LiveClient(server.url)
        token = api.post_json("/api/token", {"username": "ada", "password": PASSWORD}).json
        bearer = {"Authorization": "Bearer " + token["access_token"]}
        for title in ("first", "second"):
            created = api.post_json("/api/notes", {"title": title, "body": "via gunicorn"}, bearer)
            assert created.status == 201 and created.headers["Location"].startswith("/api/notes/")
            assert api.get(created.headers["Location"], bearer).json["title"] == title
        listing = api.get("/api/notes", bearer).json
        assert [note["title"] for note in listing["items"]] == ["second", "first"]
        assert api.get("/api/notes").status == 401
        assert LiveClient(server.url).get("/notes").status == 302  # a new browser is not logged in
    assert server.proc.returncode is not None


def test_workers_started_together_share_one_generated_secret_key(tmp_path):
    instance, requests_log = tmp_path / "fresh-instance", tmp_path / "access.log"
    with run_gunicorn(tmp_path, workers=None, args=access_log_args(requests_log),
                      env={"WEB_CONCURRENCY": "4", "FLASK_SECRET_KEY": None},
                      target=f"app:create_app(instance_path={str(instance)!r})") as server:
        wait_for(lambda: server.output().count("Booting worker") == 4, "WEB_CONCURRENCY=4 workers")
        browser = LiveClient(server.url)
        register_and_log_in(browser)
        credentials = {"username": "ada", "password": PASSWORD}

        def new_token(_):
            return LiveClient(server.url).post_json("/api/token", credentials).json["access_token"]

        def accepted(token):
            me = LiveClient(server.url).get("/api/me", {"Authorization": "Bearer " + token})
            page = LiveClient(server.url, browser.cookies).get("/hooks")
            return me.status, "Signed in as <strong>ada</strong>" in page.text

        with ThreadPoolExecutor(8) as pool:  # slow password checks keep several workers busy
            tokens = list(pool.map(new_token, range(8)))
            results = list(pool.map(accepted, tokens * 4))
        assert results == [(200, True)] * 32
        minters, checkers = (worker_pids(requests_log, "/api/token", 8),
                             worker_pids(requests_log, "/hooks", 32))
        assert len(minters) >= 2 and len(checkers) >= 2, "the requests did not spread"
    assert sorted(os.listdir(instance)) == ["secret_key"]


NGINX = shutil.which("nginx") or next(
    (path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None)


def uncomment_block(text, first_line):
    """Uncomment the run of commented lines that starts with `# first_line`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "# " + first_line)
    end = start
    while end < len(lines) and lines[end].lstrip().startswith("#"):
        lines[end] = re.sub(r"^(\s*)# ?", r"\1", lines[end])
        end += 1
    return "\n".join(lines) + "\n"


def nginx_config(temp, port, upstreams):
    """deploy/nginx.conf for a test: loopback ports, this checkout's static/, logs in `temp`.

    The sub-path example at its end is switched on as well, so /tour/ is tested too."""
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    temp_paths = "".join(f"    {kind}_temp_path {temp}/{kind};\n"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    for old, new in [("server app1:8000;", f"server 127.0.0.1:{upstreams[0]};"),
                     ("server app2:8000;", f"server 127.0.0.1:{upstreams[1]};"),
                     ("listen 80;", f"listen 127.0.0.1:{port};"),
                     ("worker_processes auto;", "worker_processes 1;"),  # one strict round robin
                     ("/srv/flask-tour/static/", f"{ROOT / 'static'}/"),
                     ("/var/log/nginx/", f"{temp}/"),
                     ("http {\n", "http {\n" + temp_paths)]:
        assert old in text, f"deploy/nginx.conf no longer contains {old!r}"
        text = text.replace(old, new)
    return uncomment_block(text, "location /tour/static/ {")


@contextlib.contextmanager
def run_nginx(tmp_path, upstreams):
    """nginx on a free loopback port in front of `upstreams`, checked with `nginx -t` first."""
    temp, port = tmp_path / "nginx", free_port()
    temp.mkdir()
    config = temp / "nginx.conf"
    config.write_text(nginx_config(temp, port, upstreams))
    main = f"daemon off; pid {temp}/nginx.pid;" + (" user root;" if os.geteuid() == 0 else "")
    command = [NGINX, "-p", f"{temp}/", "-c", str(config), "-e", f"{temp}/error.log", "-g", main]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=10)
    assert check.returncode == 0 and "test is successful" in check.stderr, check.stderr
    with running(command, port, temp / "output.log") as server:
        yield server


def check_forwarded_headers(proxy):
    """The app sees the client as nginx saw it, whatever X-Forwarded-* the client sends."""
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
              "X-Forwarded-Host": "evil.example", "X-Forwarded-Port": "9999",
              "X-Forwarded-Prefix": "/evil"}
    reply = LiveClient(proxy.url, source_address=("127.0.0.3", 0)).get("/hooks", forged)
    assert "<code>127.0.0.3</code>" in reply.text and "203.0.113.9" not in reply.text
    assert "<code>http</code>" in reply.text and "Strict-Transport-Security" not in reply.headers
    assert "/evil" not in reply.text and 'href="/notes"' in reply.text


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs it with "
                    "apt-get when it runs as root)")
def test_nginx_balances_two_gunicorn_instances(tmp_path):
    logs = [tmp_path / "access-1.log", tmp_path / "access-2.log"]
    with contextlib.ExitStack() as stack:
        apps = [stack.enter_context(run_gunicorn(tmp_path, workers=1, args=access_log_args(log),
                                                 env={"FLASK_TRUSTED_PROXIES": "1"}))
                for log in logs]
        proxy = stack.enter_context(run_nginx(tmp_path, [app.port for app in apps]))
        for path in ("/static/style.css", "/tour/static/style.css"):
            static = LiveClient(proxy.url).get(path)
            assert static.body == (ROOT / "static" / "style.css").read_bytes()
            assert static.headers["Cache-Control"] == "max-age=3600"
            assert "X-Request-ID" not in static.headers  # every app response has one
        assert LiveClient(proxy.url).get("/static../app.py").status == 404  # alias with its "/"
        for _ in range(20):
            assert LiveClient(proxy.url).get("/data").status == 200
        wait_for(lambda: sum(len(logged_requests(log, "/data")) for log in logs) == 20,
                 "the access logs")
        assert [len(logged_requests(log, "/data")) for log in logs] == [10, 10]  # round robin
        assert not any(logged_requests(log, "/static/style.css") for log in logs)
        check_forwarded_headers(proxy)
        page = register_and_log_in(LiveClient(proxy.url))
        def form_requests():
            return [sum(len(logged_requests(log, path))
                        for path in ("/register", "/login", "/logout", "/notes")) for log in logs]
        wait_for(lambda: sum(form_requests()) == 8, "the access logs")
        assert form_requests() == [4, 4]  # one session, served in turn by both instances
        assert 'action="/logout"' in page.text
        page = register_and_log_in(LiveClient(proxy.url), "grace", prefix="/tour")
        assert 'action="/tour/logout"' in page.text and 'src="/tour/static/app.js"' in page.text
        too_big = LiveClient(proxy.url).request("POST", "/api/notes", headers={
            "Content-Type": "application/json", "Content-Length": str(2 * 1024 * 1024)})
        assert too_big.status == 413
