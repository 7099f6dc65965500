"""Tests for Flask Tour, in the same numbered sections as app.py."""

import ast
import atexit
import click
import contextlib
import dataclasses
import fcntl
import functools
import http.client
import importlib.metadata
import importlib.util
import inspect
import io
import json
import logging
import multiprocessing
import os
import queue
import re
import select
import shutil
import signal
import socket
import sqlite3
import stat
import string
import symtable
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urlencode, urljoin, urlsplit

import flask
import jinja2
import pytest
import werkzeug.exceptions
import werkzeug.routing
import werkzeug.routing.rules
import werkzeug.security
from gunicorn.config import Config as GunicornConfig
from itsdangerous import URLSafeSerializer
from flask import request, url_for
from markupsafe import escape
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server
from werkzeug.test import Client, create_environ

import app as tour
from app import Note, User, UsernameTaken, create_app, jwt_decode, jwt_encode, InvalidToken

ROOT = Path(__file__).resolve().parent

# Each topic's teaching text, read as the tour reads it: from its lesson's folder.
TOPIC_FILES = sorted(ROOT.glob("lessons/[0-9][0-9]_*/teaching/topic.json"))
TOPICS = [json.loads(path.read_text(encoding="utf-8")) for path in TOPIC_FILES]
LESSONS = [path.parent.parent for path in TOPIC_FILES]
TOPIC_NUMBERS = [topic["number"] for topic in TOPICS]
CHEAT_SHEET_TOPICS = [topic["number"] for topic in TOPICS if topic["cheat_sheet"]]
TOPIC_BY_NUMBER = {topic["number"]: topic for topic in TOPICS}
LESSON_BY_NUMBER = dict(zip(TOPIC_NUMBERS, LESSONS))

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    """Hash with few iterations so the suite runs in seconds; production keeps the default."""
    fast = functools.partial(tour.generate_password_hash, method="pbkdf2:sha256:1000")
    monkeypatch.setattr(tour, "generate_password_hash", fast)


class CompiledTemplates(jinja2.BytecodeCache):
    """Jinja's bytecode cache, in memory: each template is compiled once per test run, not once
    per test's app (that was a third of the suite's time). Jinja checks each template's source
    against the cached code and recompiles what changed."""

    def __init__(self):
        self.code = {}

    def load_bytecode(self, bucket):
        if bucket.key in self.code:
            bucket.bytecode_from_string(self.code[bucket.key])

    def dump_bytecode(self, bucket):
        self.code[bucket.key] = bucket.bytecode_to_string()


COMPILED_TEMPLATES = CompiledTemplates()


@pytest.fixture(scope="session", autouse=True)
def templates_compiled_once():
    """Every app the tests build, theirs or the fixtures', shares COMPILED_TEMPLATES: Flask
    passes `jinja_options` to each app's Jinja environment. A speed-up for this suite's
    hundreds of apps, kept out of the fixtures that topic 15 shows."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flask.Flask, "jinja_options",
                      {**flask.Flask.jinja_options, "bytecode_cache": COMPILED_TEMPLATES})
        yield


@pytest.fixture(scope="session", autouse=True)
def url_builders_compiled_once():
    """Werkzeug compiles two URL builder functions for every rule of every app it is given
    (the rest of create_app's time); the tests' hundreds of apps have the same rules, so each
    builder is compiled once and reused. A builder is a pure function of the rule's text,
    parts and defaults, which is the key (a rule with a default inside its path is compiled
    as usual)."""
    original = werkzeug.routing.rules.Rule._compile_builder
    builders = {}

    def compile_builder(rule, append_unknown=True):
        if any(dynamic and data in (rule.defaults or {}) for dynamic, data in rule._trace):
            return original(rule, append_unknown)
        key = (rule.rule, tuple(rule._trace), repr(sorted((rule.defaults or {}).items())),
               append_unknown)
        if key not in builders:
            builders[key] = original(rule, append_unknown)
        return builders[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(werkzeug.routing.rules.Rule, "_compile_builder", compile_builder)
        yield


@functools.cache
def ram_folder():
    """/dev/shm, where it is a tmpfs with room for the tests' files (about 40 MB) and, for
    root, one where chattr +i works as read_only() needs; None elsewhere."""
    try:
        space = os.statvfs("/dev/shm")
        if space.f_bavail * space.f_frsize < 512 * 2**20:
            return None
        with tempfile.TemporaryDirectory(dir="/dev/shm") as probe:
            if os.geteuid() == 0:
                if subprocess.run(["chattr", "+i", probe], capture_output=True).returncode:
                    return None
                subprocess.run(["chattr", "-i", probe], check=True)
        return Path("/dev/shm")
    except (OSError, subprocess.CalledProcessError):
        return None


@pytest.fixture
def tmp_path(request, tmp_path_factory):
    """A new empty folder for the test, as pytest's own tmp_path, but in RAM where the machine
    has a tmpfs: SQLite waits for the disk at every commit, and on a busy machine those waits
    took most of the suite's time. There, it is removed after the test."""
    name = re.sub(r"\W", "_", request.node.name)[:30]
    if ram_folder() is None:
        yield tmp_path_factory.mktemp(name)
        return
    folder = Path(tempfile.mkdtemp(prefix=f"flask-tour-{name}-", dir=ram_folder()))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# region fixtures: the app, client and runner that the tests below ask for by name. Topic 15's
# page shows these lines, read from this file: they are the topic's code, kept in one place.
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"  # tests only: never deployed
JWT_TEST_KEY = "jwt-test-key-that-is-long-enough-0123456789abcd"


@pytest.fixture
def app(tmp_path):
    """An app on a temporary database and instance folder."""
    return create_app({
        "TESTING": True,
        "SECRET_KEY": TEST_SECRET,
        "JWT_SECRET_KEY": JWT_TEST_KEY,
        "DATABASE": str(tmp_path / "test.sqlite"),
        "ACCESS_LOG": True,  # whatever FLASK_ACCESS_LOG the shell has
    }, instance_path=str(tmp_path / "instance"))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()
# endregion fixtures


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    """A client of one app shared by the tests that only read pages (the tour, the topics).

    A topic page is highlighted once per app; sharing the app keeps the suite under two minutes.
    """
    folder = tmp_path_factory.mktemp("reader")
    return create_app({"TESTING": True, "SECRET_KEY": TEST_SECRET, "JWT_SECRET_KEY": JWT_TEST_KEY,
                       "DATABASE": str(folder / "test.sqlite")},
                      instance_path=str(folder / "instance")).test_client()


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


@pytest.fixture
def clean_environment(monkeypatch, tmp_path):
    """No FLASK_* or APP_SETTINGS from the outside, and an empty working directory."""
    for key in list(os.environ):
        if key.startswith("FLASK_") or key == "APP_SETTINGS":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


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


@functools.lru_cache(maxsize=256)
def collected(html):
    """A LinkCollector fed `html`; the crawls meet the same page many times, parsed once."""
    collector = LinkCollector()
    # A code block holds only highlighted text (an `<a href>` in it is escaped, not a tag), and
    # most of a topic page's bytes: left out, a crawl parses its pages in a fifth of the time.
    collector.feed(CODE_BLOCK.sub("", html))
    return collector


CODE_BLOCK = re.compile(r'<pre class="code[^"]*"><code[^>]*>.*?</code></pre>', re.S)


def internal_links(html, base):
    for link in collected(html).links:
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

KEY = JWT_TEST_KEY.encode()
ISSUER, AUDIENCE = "flask-tour", "flask-tour-api"  # the defaults of JWT_ISSUER and JWT_AUDIENCE
SESSION_ID = "5e5510d15e5510d15e5510d15e5510d1"  # user 1's session id in `token_client`


def forge(header, claims, key=KEY):
    """A token with any header and claims, signed with HS256."""
    segments = [tour.b64url_encode(json.dumps(part).encode()) for part in (header, claims)]
    signing_input = ".".join(segments)
    return f"{signing_input}.{tour.b64url_encode(tour.hs256(key, signing_input))}"

HS256 = {"alg": "HS256", "typ": "JWT"}

INVALID_TOKEN_CHALLENGE = 'Bearer realm="api", error="invalid_token"'

BASE64URL_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


def valid_claims(**changes):
    """Claims our API accepts for user 1, with `changes` applied (None removes a claim)."""
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "1", "sid": SESSION_ID,
              "exp": int(time.time()) + 600, "jti": "forged-token", **changes}
    return {name: value for name, value in claims.items() if value is not None}


def raw_token(header_json, payload_json, key=KEY):
    """A token from literal JSON texts (arrays, duplicate members …), signed with HS256."""
    signing_input = ".".join(tour.b64url_encode(text.encode()) for text in (header_json, payload_json))
    return f"{signing_input}.{tour.b64url_encode(tour.hs256(key, signing_input))}"


def bearer(token):
    return {"Authorization": "Bearer " + token}


def assert_invalid_token(client, token):
    """The API answers `token` with 401, RFC 6750's invalid_token and a problem+json body."""
    response = client.get("/api/me", headers=bearer(token))
    assert response.status_code == 401, token
    assert response.headers["WWW-Authenticate"] == INVALID_TOKEN_CHALLENGE
    assert response.mimetype == "application/problem+json"
    return response


@pytest.fixture
def token_client(client):
    """A client whose user 1 exists and accepts a correctly forged token, so only the attack fails."""
    api_headers(client)
    with client.application.app_context():  # a known session id, for `valid_claims`
        tour.get_db().execute("UPDATE users SET session_id = ? WHERE id = 1", (SESSION_ID,))
        tour.get_db().commit()
    assert client.get("/api/me", headers=bearer(forge(HS256, valid_claims()))).status_code == 200
    return client


def another_worker(app):
    """A second app on the same database and keys, as another gunicorn worker would be."""
    return create_app({key: app.config[key] for key in
                       ("TESTING", "SECRET_KEY", "JWT_SECRET_KEY", "DATABASE")},
                      instance_path=app.instance_path)


def database_snapshot(app):
    with app.app_context():
        db = tour.get_db()
        return ([tuple(row) for row in db.execute("SELECT * FROM users ORDER BY id")],
                [tuple(row) for row in db.execute("SELECT * FROM notes ORDER BY id")])


# ---------------------------------------------------------------------------
# Test helpers: live servers (gunicorn, nginx) and a headless browser
# ---------------------------------------------------------------------------
# Tests that start real servers or Chromium on loopback use these; they skip with a
# reason when the program is not installed.


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


# Load tests write thousands of notes as one account, as fast as the machine allows.
UNLIMITED_NOTES = {"FLASK_NOTES_PER_USER": "1000000000",
                   "FLASK_NOTE_WRITES_PER_MINUTE": "1000000000"}


def run_gunicorn(tmp_path, workers=2, env=None, port=None, args=(), target="app:app"):
    """Run gunicorn on a loopback port; `env` adds variables, or removes them with None."""
    port = port or free_port()
    environment = {**os.environ, "FLASK_DATABASE": str(tmp_path / "gunicorn.sqlite"),
                   "FLASK_SECRET_KEY": TEST_SECRET, **UNLIMITED_NOTES, **(env or {})}
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


@dataclass
class Outcome:
    """What one client request got back: a status and body, or the error that broke it."""

    title: str
    status: int = None
    body: bytes = b""
    error: str = None


def post_note(server, bearer, title):
    """POST one note through the API, recording what came back."""
    try:
        reply = LiveClient(server.url).post_json("/api/notes", {"title": title}, bearer)
    except (OSError, http.client.HTTPException) as error:
        return Outcome(title, error=repr(error))
    return Outcome(title, reply.status, reply.body)


class NoteWriters:
    """Client threads that create notes until stopped, recording every outcome."""

    def __init__(self, server, clients):
        self.server, self.outcomes = server, []
        self.bearer = {"Authorization": "Bearer " + api_token(server)}
        self.stop = threading.Event()
        self.answered = threading.Condition()
        self.threads = [threading.Thread(target=self.write, args=(n,)) for n in range(clients)]

    def write(self, client):
        number = 0
        while not self.stop.is_set():
            outcome = post_note(self.server, self.bearer, f"client {client} note {number}")
            number += 1
            with self.answered:
                self.outcomes.append(outcome)
                self.answered.notify_all()

    def wait_for(self, count, timeout=30):
        """Block until `count` requests have been answered with 201."""
        with self.answered:
            assert self.answered.wait_for(lambda: len(self.created()) >= count, timeout)

    def created(self):
        return [outcome for outcome in self.outcomes if outcome.status == 201]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=40)


def api_token(server, username="loaduser"):
    """Register a user through the running server's API and return a Bearer token."""
    api, credentials = LiveClient(server.url), {"username": username, "password": PASSWORD}
    assert api.post_json("/api/users", credentials).status == 201
    return api.post_json("/api/token", credentials).json["access_token"]


def stored_notes(database):
    """{title: id} of every note in the database file, and its integrity check."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        notes = dict(db.execute("SELECT title, id FROM notes").fetchall())
        return notes, db.execute("PRAGMA integrity_check").fetchone()[0]


def gunicorn_workers(server):
    """The pids of the gunicorn master's worker processes."""
    pids = set()
    for process_stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = process_stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == server.proc.pid:  # fields: state, ppid, …
                pids.add(int(process_stat.parent.name))
    return pids


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
    """The DOM of `url` after its scripts ran, in a fresh page of headless Chromium."""
    return browse([url], tmp_path, timeout)[0]


def browse(urls, profile, timeout=60):
    """The DOM of each URL after its scripts ran, in a fresh page of headless Chromium
    (Chromium's own default window, 800 × 600, as with --dump-dom)."""
    with headless_chromium(profile, timeout) as browser:
        return [browser.load(url) for url in urls]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def pipe():
    """os.pipe(), its original descriptors closed once the caller has copied them."""
    ends = os.pipe()
    try:
        yield from ends
    finally:
        for fd in ends:
            os.close(fd)


class HeadlessChromium:
    """Headless Chromium driven over its DevTools pipe (stdlib only): JSON commands ended by
    a NUL byte go to its fd 3, answers come back on its fd 4. Measures what --dump-dom cannot:
    the page's own script is the only one the CSP lets run, but the DevTools protocol may."""

    def __init__(self, tmp_path, timeout=30):
        self.timeout, self.next_id, self.buffer, self.session = timeout, 0, b"", None
        self.context, self.loads = None, 0  # the browser context of the page; load events seen
        # Pipe ends numbered 10 or more, so none is already the 3 or 4 it must become.
        to_browser, self.commands = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in pipe())
        self.answers, from_browser = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in pipe())
        command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update",
                   "--disable-sync", "--hide-scrollbars", "--remote-debugging-pipe",
                   f"--user-data-dir={tmp_path / 'chromium-pipe-profile'}"]
        # bash puts our pipe ends on the fds 3 and 4 that --remote-debugging-pipe expects.
        shell = f'exec "$@" 3<&{to_browser} 4>&{from_browser} {to_browser}<&- {from_browser}>&-'
        self.proc = subprocess.Popen(["bash", "-c", shell, "bash", *command],
                                     pass_fds=(to_browser, from_browser), start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)

    def send(self, method, **params):
        """Run one DevTools command in the attached page (if any); its result."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self.receive(deadline, method)
            if reply.get("id") == self.next_id:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]

    def receive(self, deadline, awaited):
        """The next message from Chromium: an answer, or an event (page loads are counted)."""
        while b"\0" not in self.buffer:
            assert select.select([self.answers], [], [], deadline - time.monotonic())[0], \
                f"chromium did not answer {awaited}"
            chunk = os.read(self.answers, 65536)
            assert chunk, "chromium closed its DevTools pipe"
            self.buffer += chunk
        text, _, self.buffer = self.buffer.partition(b"\0")
        message = json.loads(text)
        if (message.get("method") == "Page.loadEventFired"
                and message.get("sessionId") == self.session):
            self.loads += 1
        return message

    def new_page(self):
        """Start again in a browser context of its own: no cookies, storage or cache of before."""
        self.close_page()
        self.context = self.send("Target.createBrowserContext")["browserContextId"]

    def close_page(self):
        if self.context:
            self.send("Target.disposeBrowserContext", browserContextId=self.context)
        self.context = self.session = None

    def open(self, url, width, height=900):
        """Load `url` in a window `width` × `height` CSS pixels wide, once it has loaded."""
        self.attach()
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        self.navigate(url)
        wait_for(lambda: self.evaluate("document.readyState === 'complete' && "
                                       f"location.href === {json.dumps(url)}"),
                 f"{url} to load", timeout=self.timeout)

    def attach(self):
        """A page (a target) to drive, in this use's browser context."""
        if self.session is None:
            target = self.send("Target.createTarget", url="about:blank",
                               **({"browserContextId": self.context} if self.context else {}))
            self.session = self.send("Target.attachToTarget", targetId=target["targetId"],
                                     flatten=True)["sessionId"]
            self.send("Page.enable")  # Chromium tells of each page load from now on

    def navigate(self, url):
        """Go to `url` and, when that starts a new document (a link to a fragment of the same
        page does not), wait for its load event."""
        loads, deadline = self.loads, time.monotonic() + self.timeout
        navigation = self.send("Page.navigate", url=url)
        while "loaderId" in navigation and self.loads == loads:
            self.receive(deadline, f"{url} to load")

    def load(self, url):
        """The DOM of `url` once its load event has fired (after a redirect too)."""
        self.attach()
        self.navigate(url)
        return self.evaluate("document.documentElement.outerHTML")

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page."""
        return self.send("Runtime.evaluate", expression=expression,
                         returnByValue=True)["result"].get("value")

    def close(self):
        if self.commands is None:
            return  # closed already
        for fd in (self.commands, self.answers):
            os.close(fd)
        self.commands = self.answers = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@functools.cache
def shared_chromium():
    """One headless Chromium for every test that uses a browser (each starts in a fresh
    browser context, see headless_chromium): started once, stopped when the tests end."""
    profile = tempfile.TemporaryDirectory(prefix="flask-tour-chromium-", dir=ram_folder())
    browser = HeadlessChromium(Path(profile.name))
    atexit.register(profile.cleanup)
    atexit.register(browser.close)  # runs first
    return browser


@contextlib.contextmanager
def headless_chromium(tmp_path, timeout=30):
    """A fresh page (its own cookies, storage and cache, as a new profile would have) in the
    headless Chromium the tests share; starting one costs about a second."""
    browser = shared_chromium()
    if browser.proc.poll() is not None:  # an earlier test's browser died: start another
        shared_chromium.cache_clear()
        browser = shared_chromium()
    browser.timeout = timeout
    browser.new_page()
    try:
        yield browser
    finally:
        try:
            browser.close_page()
        except (AssertionError, OSError):  # it no longer answers: the next test starts another
            browser.close()
            shared_chromium.cache_clear()


# How far the page is wider than the window, and the elements that stick out of it.
OVERFLOW = """JSON.stringify({
  overflow: document.documentElement.scrollWidth - innerWidth,
  outside: Array.from(document.querySelectorAll("body *"))
    .filter((e) => e.getBoundingClientRect().right > innerWidth + 0.5 && e.getClientRects().length
                   && !e.closest(".table-wrap"))  // the one region meant to scroll sideways
    .slice(0, 8).map((e) => e.tagName.toLowerCase() + (e.className ? "." + e.className : "")),
})"""

LOAD_SECONDS = 5  # long enough for every worker to write under contention many times over


def work_tree():
    """Every file in the checkout but git's and Python's caches."""
    skip = {".git", "__pycache__", ".pytest_cache"}
    return {str(path.relative_to(ROOT)) for path in ROOT.rglob("*")
            if not skip.intersection(path.relative_to(ROOT).parts)}


needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs "
                                 "it with apt-get when it runs as root)")


DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"


GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"


def bash_blocks(path):
    """The ```bash blocks of a Markdown file, as written."""
    return re.findall(r"^```bash\n(.*?)^```$", path.read_text(), re.M | re.S)


def documented(command):
    """The one bash block of docs/deployment.md that contains `command`."""
    blocks = [block for block in bash_blocks(DEPLOYMENT_DOC) if command in block]
    assert len(blocks) == 1, f"docs/deployment.md has {len(blocks)} blocks with {command!r}"
    return blocks[0]


@pytest.fixture
def clean_work_tree():
    """The test leaves no file in the checkout (databases, keys, logs and pid files go elsewhere)."""
    before = work_tree()
    yield
    assert work_tree() == before


def shell_environment(tmp_path, **settings):
    """The environment documented commands run in: this Python's gunicorn, a temporary database."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "FLASK_DATABASE": str(tmp_path / "deploy.sqlite"), "FLASK_SECRET_KEY": TEST_SECRET,
            **UNLIMITED_NOTES, **settings}


# gunicorn's settings: deploy/gunicorn.conf.py ------------------------------


def load_gunicorn_conf(environ):
    """gunicorn's effective settings from deploy/gunicorn.conf.py under `environ`."""
    config = GunicornConfig()
    namespace = {}
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(environ)
        exec(compile(GUNICORN_CONF.read_text(), str(GUNICORN_CONF), "exec"), namespace)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    for name, value in namespace.items():
        if name in config.settings:
            config.set(name, value)
    return config


FORGED_SCHEME = {"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on",
                 "X-Forwarded-Protocol": "ssl"}


@contextlib.contextmanager
def nginx_in_front_of(tmp_path, upstreams, edits=(), name="nginx"):
    """nginx with deploy/nginx.conf (as test_app's nginx_config adapts it), whatever the
    upstreams' state: it is ready once its port accepts connections."""
    temp, port = tmp_path / name, free_port()
    temp.mkdir()
    text = nginx_config(temp, port, upstreams)
    for old, new in edits:
        assert old in text, f"deploy/nginx.conf no longer contains {old!r}"
        text = text.replace(old, new)
    (temp / "nginx.conf").write_text(text)
    main = f"daemon off; pid {temp}/nginx.pid;" + (" user root;" if os.geteuid() == 0 else "")
    command = [NGINX, "-p", f"{temp}/", "-c", str(temp / "nginx.conf"),
               "-e", f"{temp}/error.log", "-g", main]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr
    with open(temp / "output.log", "wb") as output:
        proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        def accepting():
            try:
                LiveClient(f"http://127.0.0.1:{port}").get("/static/style.css")
                return True
            except OSError:
                return False
        wait_for(accepting, "nginx to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def stalled_instance():
    """A port that accepts connections (the kernel does) and never answers: a stalled app."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def assert_security_headers(reply):
    assert [(name, reply.headers.get_all(name)) for name, _ in tour.SECURITY_HEADERS] == [
        (name, [value]) for name, value in tour.SECURITY_HEADERS], reply.headers


def token_for(url, username="ada"):
    """Register `username` through the API at `url`; Bearer headers for it."""
    client = LiveClient(url)
    credentials = {"username": username, "password": PASSWORD}
    assert client.post_json("/api/users", credentials).status == 201
    token = client.post_json("/api/token", credentials).json["access_token"]
    return {"Authorization": "Bearer " + token}


class WriteLoad:
    """Threads creating notes through `url` until stopped; every answer and error recorded."""

    def __init__(self, url, headers, threads=6):
        self.url, self.headers, self.stop = url, headers, threading.Event()
        self.replies, self.errors, self.lock = [], [], threading.Lock()
        self.threads = [threading.Thread(target=self.write, args=(n,)) for n in range(threads)]

    def write(self, thread):
        client, number = LiveClient(self.url), 0
        while not self.stop.is_set():
            title = f"t{thread}-{number}"
            number += 1
            try:
                reply = client.post_json("/api/notes", {"title": title}, self.headers)
                result = (title, reply.status, reply.json.get("id") if reply.status == 201 else
                          reply.text[:200])
            except Exception as error:  # a reset connection, a timeout: the client saw an error
                with self.lock:
                    self.errors.append((title, repr(error)))
                continue
            with self.lock:
                self.replies.append(result)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=20)


# Runs commands for the tests as a Linux "child subreaper": the daemons a command leaves
# (deploy/local.sh's gunicorns and nginx) become its children, and it reaps each one the
# moment it exits, as a service manager does. Otherwise they go to PID 1, and an init that
# reaps late (2 s on some sandboxes) keeps local.sh's `kill -0` waits going that long.
REAPER = r"""
import contextlib, ctypes, json, os, subprocess, sys, threading, time
with contextlib.suppress(AttributeError):  # no prctl but on Linux: then PID 1 reaps them
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
commands, lock = {}, threading.Lock()  # pid: Popen, kept so that nothing else waits for it

def serve():
    for line in sys.stdin:
        args, cwd, env, out, err = json.loads(line)
        with lock, open(out, "wb") as stdout, open(err, "wb") as stderr:
            command = subprocess.Popen(args, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
            commands[command.pid] = command
            print(json.dumps(["started", command.pid, None]), flush=True)  # before "exited"
    os._exit(0)  # the tests are over

threading.Thread(target=serve, daemon=True).start()
while True:
    try:
        pid, status = os.wait()  # a command that ended, or a daemon it left
    except ChildProcessError:
        time.sleep(0.01)
        continue
    with lock:
        if pid in commands:
            commands.pop(pid).returncode = code = os.waitstatus_to_exitcode(status)
            print(json.dumps(["exited", pid, code]), flush=True)
"""


@functools.cache
def reaper():
    """The one process that runs every documented command (see REAPER), until the tests end,
    and a queue of the lines it answers with."""
    proc = subprocess.Popen([sys.executable, "-c", REAPER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1)
    answers = queue.Queue()

    def read():
        for line in proc.stdout:
            answers.put(json.loads(line))
        answers.put(["gone", None, None])
    threading.Thread(target=read, daemon=True).start()
    return proc, answers


def run_reaped(args, cwd, env, timeout):
    """subprocess.run(args, capture_output=True, text=True, timeout=…) through the reaper."""
    proc, answers = reaper()
    with tempfile.TemporaryDirectory() as temp:
        out, err = Path(temp, "stdout"), Path(temp, "stderr")
        print(json.dumps([args, str(cwd), env, str(out), str(err)]), file=proc.stdin, flush=True)
        deadline, started = time.monotonic() + timeout, None
        while True:
            try:
                event, pid, code = answers.get(timeout=max(0, deadline - time.monotonic()))
            except queue.Empty:
                if started:
                    os.kill(started, signal.SIGKILL)
                raise subprocess.TimeoutExpired(args, timeout) from None
            assert event != "gone", "the process that runs the commands ended"
            if event == "started" and started is None:
                started = pid
            elif event == "exited" and pid == started:  # not one an earlier timeout killed
                return subprocess.CompletedProcess(args, code, out.read_text(), err.read_text())


def run_documented(command, env, timeout=60, check=True):
    result = run_reaped(["bash", "-c", documented(command)], ROOT, env, timeout)
    assert result.returncode == 0 or not check, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result


# ---------------------------------------------------------------------------
# 1. Flask setup & project structure
# ---------------------------------------------------------------------------


def test_module_level_app_serves_the_tour(clean_environment, tmp_path, monkeypatch):
    monkeypatch.setenv("FLASK_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("FLASK_DATABASE", str(tmp_path / "tour.sqlite"))
    monkeypatch.delitem(vars(tour), "app", raising=False)
    assert tour.app.name == "app"  # built on first lookup, as `flask run` and gunicorn look it up
    assert tour.app.test_client().get("/").status_code == 200


def test_importing_the_module_writes_nothing():
    before = work_tree()
    environment = {key: value for key, value in os.environ.items() if not key.startswith("FLASK_")}
    subprocess.run([sys.executable, "-B", "-c", "import app"], cwd=ROOT, env=environment, check=True)
    assert work_tree() == before


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


def test_env_example_documents_every_setting(app):
    example = (ROOT / ".env.example").read_text()
    own = set(app.config) - set(flask.Flask.default_config)  # every setting a section defines
    for key in ["SECRET_KEY", *tour.DEFAULTS, *own]:
        assert f"FLASK_{key}=" in example, key


def test_readme_first_screen_has_a_virtualenv_and_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:40])
    blocks = bash_blocks(ROOT / "README.md")
    run, test = blocks[0], blocks[1]
    assert "python3 -m venv .venv" in run and ". .venv/bin/activate" in run
    assert run.strip().endswith("python -m pip install -r requirements.txt && flask run")
    assert test.strip() == "python -m pip install -r requirements.txt && python -m pytest"
    assert run in first_screen and test in first_screen
    assert "sudo" not in readme and "sudo" not in DEPLOYMENT_DOC.read_text()
    assert "docs/deployment.md" in readme and "docs/performance.md" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.rstrip().splitlines()[-1] == test.strip()  # .ci/run runs the README's command


def test_readme_names_the_python_the_pins_need_and_the_tour_shows_the_venv_step(reader):
    needed = max(tuple(map(int, re.search(r">=\s*(\d+)\.(\d+)", requires).groups()))
                 for name in ("flask", "python-dotenv", "pytest", "gunicorn", "click")
                 if (requires := importlib.metadata.metadata(name)["Requires-Python"]))
    assert "With Python %d.%d or newer" % needed in (ROOT / "README.md").read_text()
    run_it = re.search(r'<section class="run-it".*?</section>', reader.get("/").text, re.S)[0]
    assert "python3 -m venv .venv &amp;&amp; . .venv/bin/activate\n" in run_it
    # No .pytest_cache/ left in the checkout, whatever command runs the tests.
    assert "-p no:cacheprovider" in (ROOT / "pytest.ini").read_text().split("addopts =")[1]


def test_no_class_replaces_a_part_of_flask_or_werkzeug():
    # Learners copy the classes they see: only MethodView, which Flask made to be subclassed.
    tree = ast.parse((ROOT / "app.py").read_text(encoding="utf-8"))
    bases = {ast.unparse(base) for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
             for base in node.bases}
    assert bases <= {"MethodView", "Exception"}, bases
    for name in ("app_ctx_globals_class", "session_interface", "SecureCookieSessionInterface",
                 "request_ctx", "lru_cache", "jinja_env.globals"):
        assert name not in (ROOT / "app.py").read_text(encoding="utf-8"), name


# --- Every section copies alone: its Uses line, checked, and a copy test -----

BANNER = re.compile(r"^# -{75}\n# (?P<title>.+)\n# -{75}$|^# --- (?P<part>\d+\.\d+) .*$", re.M)
USES_MARK = re.compile(r"`([^`]+)`|\((?:section )?(\d+(?:\.\d+)?|appendix)\)")


@dataclass
class Unit:
    """One section (or part of section 11) of app.py, as the Uses lines see it."""

    key: str  # "7", "11.2", "appendix", "app"
    source: str
    tree: object = None
    uses: list = None  # [(token, section key)]

    def __post_init__(self):
        self.tree = ast.parse(self.source)
        self.uses = uses_line(self.source)

    @property
    def defined(self):
        names = set()
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        return names

    def loaded_names(self):
        """Module-level names this unit's code reads (a function's own locals do not count)."""
        names, tables = set(), [symtable.symtable(self.source, "app.py", "exec")]
        while tables:
            table = tables.pop()
            is_module = table.get_type() == "module"
            names.update(symbol.get_name() for symbol in table.get_symbols()
                         if symbol.is_referenced() and (is_module or symbol.is_global()))
            tables += table.get_children()
        return names


def uses_line(source):
    """[(token, section)] from a unit's `# Uses …` comment; a section with no token is a template."""
    match = re.search(r"^# Uses (.*(?:\n# .*)*)", source, re.M)
    if not match:
        return []
    pending, pairs = [], []
    for token, section in USES_MARK.findall(match.group(1).replace("\n# ", " ")):
        if token:
            pending.append(token)
        else:
            pairs += [(name, section) for name in pending] or [(None, section)]
            pending = []
    assert not pending, f"tokens without a (section N) after them: {pending}"
    return pairs


def app_units(source=None):
    """app.py split at its banners: the imports first, then every section and part."""
    return list(units_of(source or (ROOT / "app.py").read_text(encoding="utf-8")))


@functools.lru_cache(maxsize=4)
def units_of(source):
    """app_units of a text, parsed once per run (the tests only read them)."""
    marks = list(BANNER.finditer(source))
    units = [Unit("imports", source[:marks[0].start()])]
    for mark, following in zip(marks, marks[1:] + [None]):
        text = source[mark.start():following.start() if following else len(source)]
        title = mark.group("title")
        if title and title.startswith("11."):
            continue  # section 11's own banner holds only its introduction: the parts follow
        key = (mark.group("part") or re.match(r"\d+", title) and re.match(r"\d+", title).group()
               or ("appendix" if title.startswith("Appendix") else "app"))
        units.append(Unit(key, text))
    return tuple(units)


def endpoints_of(unit):
    """The endpoints a unit's Blueprints define: `forms.login` and so on."""
    blueprints = {target.id: node.value.args[0].value for node in unit.tree.body
                  if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                  and getattr(node.value.func, "id", "") == "Blueprint"
                  for target in node.targets}
    found = set()
    for node in ast.walk(unit.tree):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                call = decorator.func if isinstance(decorator, ast.Call) else None
                if (call is not None and isinstance(call, ast.Attribute)
                        and call.attr in ("route", "get", "post")
                        and getattr(call.value, "id", None) in blueprints):
                    found.add(f"{blueprints[call.value.id]}.{node.name}")
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_url_rule"
                and getattr(node.func.value, "id", None) in blueprints):
            view = next(keyword.value for keyword in node.keywords if keyword.arg == "view_func")
            found.add(f"{blueprints[node.func.value.id]}.{view.args[0].value}")
    return found


def endpoints_used(unit, known=()):
    """The endpoints a unit's code builds links to with url_for("…"), or names in a setting."""
    linked = {node.args[0].value for node in ast.walk(unit.tree)
              if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "url_for"
              and node.args and isinstance(node.args[0], ast.Constant)}
    named = {node.args[1].value for node in ast.walk(unit.tree)  # LOGIN_VIEW's "forms.login"
             if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "setdefault"
             and len(node.args) == 2 and isinstance(node.args[1], ast.Constant)
             and node.args[1].value in known}
    return linked | named


def config_keys(unit, owned):
    """Settings a unit sets a default for (owned=True), or reads (owned=False), not Flask's own."""
    def on_config(node):
        return getattr(node, "attr", None) == "config"

    def literal(node):
        return node.value if isinstance(node, ast.Constant) else None

    keys = set()
    for node in ast.walk(unit.tree):
        if isinstance(node, ast.Call) and node.args and on_config(getattr(node.func, "value", None)):
            if node.func.attr == ("setdefault" if owned else "get"):
                keys.add(literal(node.args[0]))
        if isinstance(node, ast.Subscript) and on_config(node.value):
            if isinstance(node.ctx, ast.Store if owned else ast.Load):
                keys.add(literal(node.slice))
    return keys - set(flask.Flask.default_config) - {None}


def owners(units):
    """Which unit defines each name, each endpoint and each setting: three mappings."""
    names, endpoints, settings = {}, {}, {}
    for unit in units[1:]:
        for found, things in ((names, unit.defined), (endpoints, endpoints_of(unit)),
                              (settings, config_keys(unit, owned=True))):
            for thing in things:
                found.setdefault(thing, unit.key)
    return names, endpoints, settings


@functools.lru_cache(maxsize=1)
def owners_in_app_py(source):
    """owners() of app.py's units, worked out once per run."""
    return owners(app_units(source))


def used_from_others(unit, owned):
    """What a unit takes from other units: names, endpoints and settings, with their owner."""
    names, endpoints, settings = owned
    used = set()
    for found, things in ((names, unit.loaded_names() - unit.defined),
                          (endpoints, endpoints_used(unit, endpoints)),
                          (settings, config_keys(unit, owned=False))):
        used.update((thing, found[thing]) for thing in things
                    if found.get(thing, unit.key) != unit.key)
    return used


@pytest.mark.parametrize("unit", app_units()[1:], ids=lambda unit: unit.key)
def test_each_uses_line_names_exactly_what_its_section_takes_from_others(unit):
    owner = owners_in_app_py((ROOT / "app.py").read_text(encoding="utf-8"))
    listed = {(token, section) for token, section in unit.uses if token}
    assert listed == used_from_others(unit, owner), (
        f"section {unit.key}: missing {used_from_others(unit, owner) - listed}, "
        f"listed but not used {listed - used_from_others(unit, owner)}")


def test_the_dependency_check_catches_a_missing_and_an_extra_name():
    source = (ROOT / "app.py").read_text(encoding="utf-8")
    units = app_units(source.replace("# Uses `problem`, `is_api_request` and `HTTP_ERROR_TITLES` "
                                     "(section 7)", "# Uses `problem`, `HTTP_ERROR_TITLES` and "
                                     "`get_db` (section 7)"))
    errors = next(unit for unit in units if unit.key == "13")
    listed = {(token, section) for token, section in errors.uses if token}
    used = used_from_others(errors, owners(units))
    assert ("is_api_request", "7") in used - listed and ("get_db", "7") in listed - used


def copy_closure(keys, units):
    """The units a copy of `keys` needs: the named ones and, in turn, those their Uses lines name."""
    by_key = {unit.key: unit for unit in units}
    wanted, queue = set(), list(keys)
    while queue:
        key = queue.pop()
        matching = [k for k in by_key if k == key or k.startswith(key + ".")]
        for match in matching:
            if match not in wanted:
                wanted.add(match)
                queue += [section for _, section in by_key[match].uses]
    return [unit for unit in units[1:] if unit.key in wanted]


def shown_imports(unit, whole):
    """The import lines the page of `unit`'s topic shows above its section (computed, not typed)."""
    number = re.match(r"\d+", unit.key)
    source = tour.source_sections()[int(number.group())][1] if number else unit.source
    return tour.import_lines(source, whole)


def listed_files(keys):
    """The files that the pages of these sections list: templates, static files."""
    numbers = {int(key.split(".")[0]) for key in keys if key[0].isdigit()}
    return sorted({path for number in numbers for path in TOPIC_BY_NUMBER[number]["files"]})


def copied_app(tmp_path, keys, name):
    """A module assembled from only what the pages show, registered on a bare Flask app.

    For `keys` and the sections their Uses lines name: the import lines each page shows, the
    sections themselves, and the files their pages list (templates, static files). Nothing
    else of the project comes along: no symlink, no other template.
    """
    units = app_units()
    chosen = copy_closure(keys, units)
    whole = (ROOT / "app.py").read_text(encoding="utf-8")
    folder = tmp_path / name
    folder.mkdir()
    for path in listed_files([unit.key for unit in chosen]):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / path, folder / path)
    if any(unit.key == "appendix" for unit in chosen):  # the tour's pages show the lessons
        shutil.copytree(ROOT / "lessons", folder / "lessons",
                        ignore=shutil.ignore_patterns("__pycache__", "instance"))
    imports = dict.fromkeys(line for unit in chosen
                            for line in shown_imports(unit, whole).splitlines())
    module_file = folder / f"{name}.py"
    module_file.write_text("\n".join(imports) + "\n" + "".join(unit.source for unit in chosen))
    spec = importlib.util.spec_from_file_location(name, module_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Flask finds templates/ next to the module through it
    spec.loader.exec_module(module)
    if hasattr(module, "generate_password_hash"):  # as fast_password_hashing does for app.py
        module.generate_password_hash = tour.generate_password_hash
    app = flask.Flask(name, instance_path=str(tmp_path / "instance"))
    settings = {"TESTING": True, "SECRET_KEY": TEST_SECRET, "DATABASE": str(tmp_path / "copy.sqlite")}
    if hasattr(module, "configure"):
        module.configure(app, settings)
    else:
        app.config.update(settings)
    # What create_app does, in its order (the hooks' Blueprint first): each init_* and Blueprint.
    factory = inspect.getsource(tour.create_app)

    def set_up_in_factory_order(name):
        """Where create_app calls `name(app)` or registers `name`; names it lacks come last."""
        position = factory.find(f"{name}(app)" if name.startswith("init_") else f"({name})")
        return position if position >= 0 else len(factory)
    defined = [name for unit in chosen for name in unit.defined]
    for name in sorted(defined, key=set_up_in_factory_order):
        thing = getattr(module, name)
        if name.startswith("init_") and list(inspect.signature(thing).parameters) == ["app"]:
            thing(app)
        elif isinstance(thing, flask.Blueprint):
            app.register_blueprint(thing)
    return app, module, [unit.key for unit in chosen]


def visit_every_page(app, client):
    """GET every URL rule of a copied app (ids 1, names "Ada"): {rule: status}."""
    statuses = {}
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint == "static" or "<path:" in rule.rule:
            continue
        arguments = {name: 1 if isinstance(converter, werkzeug.routing.IntegerConverter) else "Ada"
                     for name, converter in rule._converters.items()}
        with app.test_request_context():
            url = url_for(rule.endpoint, **arguments)
        statuses[rule.rule] = client.get(url).status_code
    return statuses


def demo_of_topic(number, app, module):
    """Exercise the topic's own demo on a copied app, as the tour does; return what it showed."""
    client = app.test_client()
    if number == 1:
        client = module.create_app({"TESTING": True, "SECRET_KEY": TEST_SECRET,
                                    "DATABASE": app.config["DATABASE"]},
                                   instance_path=app.instance_path).test_client()
        return client.get("/").text
    if number == 2:
        return client.get("/topics/2").text
    if number == 3:
        assert client.get("/search?q=x").status_code == 302
        return client.get("/user/<script>Ada").text
    if number == 4:
        return client.get("/welcome/Ada").text
    if number == 5:
        return AuthActions(client).register().headers["Location"]
    if number == 6:
        return client.get("/api/hello").json["message"]
    if number == 7:
        return client.get("/data").json["role"]
    if number == 8:
        return client.get("/config").text
    if number == 9:
        return app.test_cli_runner().invoke(args=["init-db"]).output
    if number == 10:
        with app.app_context():
            user = module.User.create("ada", PASSWORD)
            module.Note.create(user.id, "copied")
            return module.Note.page_for_user(user.id, 1, 10).items[0].title
    if number == 11:
        return client.get("/api/me", headers=api_headers(client)).json["username"]
    if number == 12:
        return client.get("/hooks", headers={"X-Request-ID": "copied-12"}).headers["X-Request-ID"]
    if number == 13:
        return client.get("/errors/404").text
    if number == 14:
        return client.get("/healthz").json["status"]
    if number == 15:
        return client.get("/testing").text
    if number == 16:
        return client.get("/blueprints").text
    if number == 17:
        created = app.test_cli_runner().invoke(args=["create-user", "ada"], input=f"{PASSWORD}\n" * 2)
        assert "Created the user ada" in created.output, created.output
        return client.get("/contexts").text
    if number == 18:
        following = len(app.extensions.get("migrations", [])) + 1  # 1 in a copy of section 18
        module.add_migration(app, following, "a copied migration", "CREATE TABLE copied (id INTEGER)")
        return client.get("/migrations").text
    if number == 19:
        AuthActions(client).register()
        note_id, token = new_note(client)
        attach(client, note_id, PNG, "copied.png", token)
        return client.get(f"/notes/{note_id}/edit").text


COPY_EXPECTATIONS = {1: "Flask Tour", 2: "tour_bp</span>", 3: "&lt;script&gt;Ada",
                     4: "Ada", 5: "/notes", 6: "Hello, World", 7: "DevOps Engineer",
                     8: "SECRET_KEY", 9: "Initialized the database", 10: "copied", 11: "alice",
                     12: "copied-12", 13: "404 · Not Found", 14: "ok",
                     15: "302 FOUND",
                     16: "<code>flask tour export</code>",
                     17: "Working outside of application context.",
                     18: "a copied migration",
                     19: ">copied.png</a>"}


@pytest.mark.parametrize("number", TOPIC_NUMBERS)
def test_each_topic_runs_when_copied_with_only_what_its_uses_line_names(tmp_path, number):
    app, module, copied = copied_app(tmp_path, [str(number)], f"copied_topic_{number}")
    try:
        assert COPY_EXPECTATIONS[number] in demo_of_topic(number, app, module), copied
        client = app.test_client()
        if "forms.register" in app.view_functions:  # its pages, signed in, with a note to edit
            AuthActions(client).register("crawler")
            client.post("/notes", data={"title": "copied", "body": "",
                                        "csrf_token": AuthActions(client).token("/notes")})
        # No page of the copy is a 500: a template its page does not list would be.
        errors = {rule: status for rule, status in visit_every_page(app, client).items()
                  if status >= 500 and rule != "/errors/<int:code>"}
        assert not errors, (copied, errors)
    finally:
        del sys.modules[f"copied_topic_{number}"]


def test_the_sessions_part_of_topic_11_copied_alone_has_a_login_page(tmp_path):
    app, module, copied = copied_app(tmp_path, ["11.1"], "copied_sessions")
    try:
        client = app.test_client()
        assert client.get("/notes").headers["Location"].startswith("/login")  # login_required
        assert AuthActions(client).register().status_code == 302
        client.post("/logout", data={"csrf_token": AuthActions(client).token("/notes")})
        assert client.get("/notes").status_code == 302  # logged out
        assert AuthActions(client).login().status_code == 302
        assert "Signed in as <strong>alice</strong>" in client.get("/notes").get_data(as_text=True)
        assert "11.2" not in copied and "11.3" not in copied, copied
    finally:
        del sys.modules["copied_sessions"]


def test_a_copy_of_the_database_section_brings_only_the_database(tmp_path):
    app, module, copied = copied_app(tmp_path, ["9"], "copied_database")
    try:
        assert copied == ["4", "9"]  # the database, and the layout its demo page extends
        with app.app_context():
            tables = module.get_db().execute("SELECT name FROM sqlite_master").fetchall()
        assert tables == []  # no section registered a table: nothing of the auth section came along
    finally:
        del sys.modules["copied_database"]


# ---------------------------------------------------------------------------
# 2. Routing (@app.route)
# ---------------------------------------------------------------------------


def test_tour_lists_the_fourteen_topics_then_the_five_beyond_them(reader):
    page = reader.get("/").get_data(as_text=True)
    for topic in TOPICS:
        assert f'href="/topics/{topic["number"]}"' in page
        assert topic["summary"].replace("`", "")[:20] in page.replace("`", "")
    assert TOPIC_NUMBERS == list(range(1, 20)) and CHEAT_SHEET_TOPICS == list(range(1, 15))
    cheat_sheet_part, beyond = page.split('id="beyond"')
    assert all(f'id="topic-{n}"' in (cheat_sheet_part if n < 15 else beyond) for n in TOPIC_NUMBERS)


@pytest.mark.parametrize("number", TOPIC_NUMBERS)
def test_topic_page_shows_its_own_section(reader, number):
    page = reader.get(f"/topics/{number}").get_data(as_text=True)
    assert f"# {number}. " in page
    other = TOPICS[(TOPIC_NUMBERS.index(number) + 1) % len(TOPICS)]
    assert f"# {other['number']}. " not in page.replace(f"{other['number']}. {other['title']}", "")


@pytest.mark.parametrize("url", ["/topics/0", "/topics/20", "/topics/abc", "/topics/20/tests",
                                 "/no-such-page"])
def test_unknown_topic_is_the_404_page(client, url):
    response = client.get(url)
    assert response.status_code == 404
    assert "404 · Not Found" in response.get_data(as_text=True)


@pytest.mark.parametrize("signed_in", [False, True])
def test_every_internal_link_answers_below_400(client, logged_in, signed_in):
    if signed_in:
        client.post("/notes", data={"title": "crawl me", "body": "",
                                    "csrf_token": logged_in.token("/notes")})
    else:
        logged_in.logout()
    results = crawl(client, "/")
    assert all(f"/topics/{n}" in results for n in TOPIC_NUMBERS)
    broken = {url: status for url, status in results.items()
              if status >= 400 and not url.startswith("/errors/")}
    assert not broken
    assert len(results) > 30


def topic_links(html):
    """The rel=prev / rel=next hrefs of a topic page's topic navigation."""
    return set(re.findall(r'<a rel="(prev|next)" href="/topics/(\d+)"', html))


@pytest.mark.parametrize("number", TOPIC_NUMBERS)
def test_previous_and_next_topic_links(reader, number):
    links = topic_links(reader.get(f"/topics/{number}").get_data(as_text=True))
    position = TOPIC_NUMBERS.index(number)
    expected = {("prev", str(TOPIC_NUMBERS[position - 1]))} if position else set()
    expected |= {("next", str(TOPIC_NUMBERS[position + 1]))} if number != TOPIC_NUMBERS[-1] else set()
    assert links == expected


def test_structure_shows_the_files_blueprints_and_url_map_but_no_secrets(client, app):
    html = client.get("/structure").get_data(as_text=True)
    for shown in ("app.py", "templates/base.html", "static/app.js", "deploy/nginx.conf"):
        assert f"<code>{shown}</code>" in html
    for name in app.blueprints:
        assert f"<td><code>{name}</code></td>" in html
    for rule in app.url_map.iter_rules():
        assert f"<code>{escape(rule.rule)}</code>" in html
    assert "secret_key" not in html and "<code>.env</code></li>" not in html


@pytest.mark.parametrize("endpoint, value, shown", [
    ("tour.topic", "5", "tour.topic with {&#39;number&#39;: 5}"),  # the converter made an int
    ("params.user", "Ada", "params.user with {&#39;name&#39;: &#39;Ada&#39;}"),
    ("tour.topic", "abc", "url_for refused it"),
    ("params.user", "a/b", "href=\"/user/a/b\""),
    ("no.such.endpoint", "x", "params.user with"),  # an unknown choice falls back to the default
])
def test_routes_builds_a_url_and_matches_it_back(client, endpoint, value, shown):
    response = client.get("/routes", query_string={"endpoint": endpoint, "value": value})
    assert response.status_code == 200
    assert shown in response.get_data(as_text=True)


@pytest.mark.parametrize("endpoint, converted", [("params.user", True), ("tour.topic", True),
                                                 ("tour.index", False), ("json.data", False)])
def test_routes_credits_a_converter_only_for_a_rule_with_an_argument(client, endpoint, converted):
    html = client.get("/routes", query_string={"endpoint": endpoint, "value": "5"}).text
    assert f"{endpoint} with" in html
    assert ("the converter turned the text of the URL" in html) == converted
    assert ("this rule has no variable part" in html) == (not converted)


def test_each_demo_page_links_back_to_its_topic(reader):
    checked, shown = set(), set()
    for topic in TOPICS:
        for _, endpoint, arguments in topic["demos"]:
            if endpoint.startswith("tour.") or endpoint in checked:
                continue  # the tour's pages have their own navigation; the first topic wins
            checked.add(endpoint)
            with reader.application.test_request_context():
                url = tour.url_for(endpoint, **arguments)
            response = reader.get(url)
            if response.status_code == 302 or response.mimetype != "text/html":
                continue  # to the login page (topic 5's demo), or JSON
            assert f'<a href="/topics/{topic["number"]}"><span aria-hidden="true">&larr;</span> ' \
                   'A demo of topic' in response.get_data(as_text=True), url
            shown.add(endpoint)
    assert len(shown) >= 15  # pages of 15 endpoints, from /hooks to /migrations


def test_tour_demo_labels_show_code_not_backticks(reader):
    html = reader.get("/").get_data(as_text=True)
    labels = re.findall(r'<ul class="demos">(.*?)</ul>', html, re.S)
    assert len(labels) == len(TOPICS) and not any("`" in label for label in labels)
    assert "Its URL map, as <code>flask routes</code> prints it</a>" in html

# ---------------------------------------------------------------------------
# 4. Templates (Jinja2)
# ---------------------------------------------------------------------------


def test_welcome_renders_the_cheat_sheet_template(client):
    page = client.get("/welcome/Ada").get_data(as_text=True)
    assert "<h1>Hello <bdi>Ada</bdi></h1>" in page


@pytest.mark.parametrize("url", ["/", "/topics/4", "/welcome/x", "/user/x", "/login", "/register",
                                 "/config", "/hooks", "/errors/404"])
def test_every_page_extends_the_base_layout(client, url):
    page = client.get(url).get_data(as_text=True)
    assert 'class="site-header"' in page and 'href="/static/style.css"' in page


def test_flashed_messages_appear_once(client, auth):
    first = auth.register(follow_redirects=True).get_data(as_text=True)
    assert "Your account is ready." in first
    assert "Your account is ready." not in client.get("/notes").get_data(as_text=True)


def test_template_links_to_the_current_blueprint_are_not_shared_between_blueprints(app):
    for name in ("shop", "blog"):
        blueprint = flask.Blueprint(name, __name__, url_prefix=f"/{name}")
        blueprint.add_url_rule("/", "index", lambda: flask.render_template_string(
            "{{ url_for('.index') }}"))
        app.register_blueprint(blueprint)
    client = app.test_client()
    assert [client.get(path).text for path in ("/shop/", "/blog/")] == ["/shop/", "/blog/"]


def test_the_favicon_is_found_at_both_addresses(client):
    assert '<link rel="icon" href="/static/favicon.svg"' in client.get("/").get_data(as_text=True)
    response = client.get("/favicon.ico")  # what browsers ask for before reading the page
    assert response.status_code == 301 and response.headers["Location"] == "/static/favicon.svg"
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    mounted = client.get("/favicon.ico", base_url="http://localhost/demo")
    assert mounted.headers["Location"] == "/demo/static/favicon.svg"


def test_every_template_extends_base():
    for template in (ROOT / "templates").glob("*.html"):
        if not template.name.startswith("_") and template.name != "base.html":
            assert '{% extends "base.html" %}' in template.read_text(), template.name


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


# --- 4: attacks and faults ---------------------------------------------------

XSS = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "'><svg onload=alert(1)>"]


@pytest.mark.parametrize("payload", XSS)
def test_xss_payloads_come_back_escaped_on_every_page(client, logged_in, payload):
    token = logged_in.token("/notes")
    client.post("/notes", data={"title": payload, "body": payload, "csrf_token": token})
    note_id = client.post("/api/notes", json={"title": payload, "body": payload},
                          headers=api_headers(client, "bob")).json["id"] - 1
    path_safe = payload.replace("/", "")
    pages = [client.get("/notes"), client.get(f"/notes/{note_id}/edit"),
             client.get("/search", query_string={"q": payload}),
             client.get("/search", query_string={"q": "alert"}),
             client.get("/user/" + path_safe), client.get("/welcome/" + path_safe),
             client.get("/login", query_string={"next": payload}),
             client.get("/notes", query_string={"page": payload}),
             client.post("/register", data={"username": payload, "password": PASSWORD,
                                            "csrf_token": token}),
             client.post("/notes", data={"title": "", "body": payload, "csrf_token": token}),
             client.get("/no-such-page/" + path_safe)]
    assert [response.status_code for response in pages] == [200] * 10 + [404]
    for response in pages:
        html = response.get_data(as_text=True)
        assert payload not in html and path_safe not in html, response.request.url
        assert "<script>alert" not in html and "<img src=x" not in html and "<svg" not in html
    assert "&lt;" in pages[0].get_data(as_text=True)


def browser_signed_in(browser, base, client):
    """Give headless Chromium the test client's session cookie for `base`."""
    browser.open(base + "/", 1280)
    browser.send("Network.setCookie", name="session", url=base + "/",
                 value=client.get_cookie("session").value)


def assert_fits(browser, url, width, height=900):
    """`url` at `width` px is no wider than the window and no element sticks out of it."""
    browser.open(url, width, height)
    measured = json.loads(browser.evaluate(OVERFLOW))
    assert measured == {"overflow": 0, "outside": []}, (url, width, measured)


def test_every_table_scrolls_by_keyboard_and_names_each_column(client, logged_in):
    client.post("/notes", data={"title": "a row", "body": "", "csrf_token": logged_in.token("/notes")})
    for url in ("/routes", "/structure", "/proxy", "/database", "/config"):
        html = client.get(url).get_data(as_text=True)
        boxes = re.findall(r'<div class="table-wrap"[^>]*>', html)
        assert boxes and html.count("<table") == len(boxes), url
        for box in boxes:  # axe's scrollable-region-focusable: a keyboard can reach and scroll it
            assert re.fullmatch(r'<div class="table-wrap" tabindex="0" role="region" '
                                r'aria-label="[^"]+, scrolls sideways">', box), (url, box)
        assert not re.search(r"<th[^>]*>\s*</th>", html), url  # axe's empty-table-header


# What the browser tests below read from a page. The direction test: no Latin letter in <main>
# sits left of the one before it on its line, as all would after a U+202E that leaked out of
# the user text holding it (text holding a U+202E itself is skipped, unless `own`).
REVERSED_TEXT = r"""(own) => {
  const walker = document.createTreeWalker(document.querySelector("main"), NodeFilter.SHOW_TEXT);
  const reversed = [];
  for (let node; (node = walker.nextNode());) {
    if (node.data.includes("\u202e") !== own) continue;
    let last = null;
    for (let i = 0; i < node.data.length; i++) {
      if (!/[A-Za-z]/.test(node.data[i])) continue;
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const box = range.getBoundingClientRect();
      if (last && Math.abs(box.top - last.top) < 2 && box.left < last.left) {
        reversed.push(node.data.trim().slice(0, 40));
        break;
      }
      last = box;
    }
  }
  return reversed;
}"""
# axe-core's rules that these pages broke, checked on the DOM (axe itself is no dependency):
# scrollable-region-focusable (every box that scrolls is reachable by keyboard, with a name)
# and empty-table-header. A textarea scrolls too, but is a labelled field a keyboard reaches.
AXE_RULES = """Array.from(document.querySelectorAll("main *")).filter((e) => {
    const style = getComputedStyle(e);
    return /auto|scroll/.test(style.overflowX + style.overflowY) && e.tagName !== "TEXTAREA"
      && !(e.tabIndex === 0 && e.getAttribute("aria-label"));
  }).map((e) => "scrollable-region-focusable: " + e.outerHTML.slice(0, 60))
  .concat(Array.from(document.querySelectorAll("th")).filter((th) => !th.textContent.trim())
    .map((th) => "empty-table-header: " + th.parentNode.outerHTML.slice(0, 60)))"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_pages_fit_a_phone_isolate_user_text_and_keep_line_breaks(app, client, logged_in, tmp_path):
    rlo = "\u202e"  # RIGHT-TO-LEFT OVERRIDE, never closed: it reverses what follows it
    client.post("/notes", data={"title": rlo + "the title", "body": "first line\nafter the title",
                                "csrf_token": logged_in.token("/notes")})
    note = re.search(r"/notes/(\d+)/edit", client.get("/notes").text)[1]
    pages = ["/routes", "/structure", "/proxy", "/database", "/notes", f"/search?q={quote(rlo)}the",
             f"/user/{quote(rlo)}ada", f"/welcome/{quote(rlo)}ada", "/register", "/hooks",
             f"/notes/{note}/edit", f"/notes/{note}/delete"]
    with serve_in_thread(app) as base, headless_chromium(tmp_path) as browser:
        browser_signed_in(browser, base, client)
        for width in (1280, 390):
            for page in pages:
                assert_fits(browser, base + page, width)
                assert browser.evaluate(AXE_RULES) == [], (page, width)
                assert browser.evaluate(f"({REVERSED_TEXT})(false)") == [], (page, width)
                if page.startswith(("/notes", "/search")) and "/edit" not in page:
                    assert browser.evaluate(f"({REVERSED_TEXT})(true)"), page  # the title, alone
                if page in ("/notes", pages[5]):
                    body = browser.evaluate("document.querySelector('.note-body').innerText")
                    assert body == "first line\nafter the title", (page, body)  # both lines
        browser.evaluate("document.cookie = 'large_text=on; Path=/'")  # as the toggle does
        for page in ("/routes", "/structure"):
            assert_fits(browser, base + page, 390)
            assert browser.evaluate("document.documentElement.classList.contains('large-text')")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_long_text_wraps_instead_of_widening_the_page(app, client, logged_in, tmp_path):
    long_url = "https://example.com/" + "a-very-long-path-segment/" * 12
    client.post("/notes", data={"title": "T" * 200, "body": f"See {long_url} for more.",
                                "csrf_token": csrf_from(client.get("/notes"))})
    long_name = "N" * 200
    with serve_in_thread(app) as base, headless_chromium(tmp_path) as browser:
        browser_signed_in(browser, base, client)
        browser.open(base + "/notes", 1280)
        assert browser.evaluate("document.querySelector('.notes h3').textContent") == "T" * 200
        for width in (1280, 390):
            for path in ("/notes", f"/user/{long_name}", f"/welcome/{long_name}",
                         f"/search?q={long_name}"):
                assert_fits(browser, base + path, width)


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


# --- 7: attacks and faults ---------------------------------------------------

API_BODY_TARGETS = [("POST", "/api/users"), ("POST", "/api/token"), ("POST", "/api/notes"),
                    ("PUT", "/api/notes/1"), ("PATCH", "/api/notes/1")]


def send_body(client, method, url, **kwargs):
    """Send a body to one of the API's body-taking operations, as the owner of note 1."""
    headers = api_headers(client)
    client.post("/api/notes", json={"title": "mine"}, headers=headers)
    return client.open(url, method=method, headers=headers, **kwargs)


@pytest.mark.parametrize("method, url", API_BODY_TARGETS)
@pytest.mark.parametrize("kwargs", [{"data": "title=x"}, {"data": "title=x", "content_type":
                                    "application/x-www-form-urlencoded"},
                                    {"data": '{"title": "x"}', "content_type": "text/plain"},
                                    {"data": '{"title": "x"}', "content_type": "application/xml"},
                                    {}], ids=["no type", "form", "text", "xml", "no body"])
def test_wrong_content_type_is_415(client, method, url, kwargs):
    response = send_body(client, method, url, **kwargs)
    assert response.status_code == 415 and response.mimetype == "application/problem+json"


@pytest.mark.parametrize("method, url", API_BODY_TARGETS)
@pytest.mark.parametrize("body", ['{"title": ', "{'title': 'x'}", '{"title": "x"} trailing',
                                  b'{"title": "\xff\xfe"}', b"\xc3\x28", "",
                                  "[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000],
                         ids=["truncated", "single quotes", "trailing", "non-UTF-8 string",
                              "non-UTF-8", "empty", "deeply nested arrays", "deeply nested objects"])
def test_malformed_deeply_nested_or_non_utf8_json_is_400(client, app, method, url, body):
    response = send_body(client, method, url, data=body, content_type="application/json")
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    assert count_rows(app, "notes") == 1


@pytest.mark.parametrize("method, url", API_BODY_TARGETS)
@pytest.mark.parametrize("body", ["null", "[]", '[{"title": "x"}]', "42", "1e999", '"title"', "true"])
def test_json_null_list_or_number_body_is_422(client, method, url, body):
    response = send_body(client, method, url, data=body, content_type="application/json")
    assert response.status_code == 422 and "must be an object" in response.json["detail"]


def test_huge_json_object_is_422_not_500(client, app):
    body = json.dumps({f"field{n}": n for n in range(50_000)})
    assert len(body) < app.config["MAX_CONTENT_LENGTH"]
    response = send_body(client, "POST", "/api/notes", data=body, content_type="application/json")
    assert response.status_code == 422 and response.json["errors"]["title"]


@pytest.mark.parametrize("method, url, kwargs", [
    ("POST", "/notes", {"data": b"title=%FF%FE&body=%C3%28", "content_type":
                        "application/x-www-form-urlencoded"}),
    ("POST", "/notes", {"data": b"title=\xff\xfe", "content_type":
                        "application/x-www-form-urlencoded"}),
    ("GET", "/search?q=%FF%FE&page=%C3%28", {}),
    ("GET", "/user/%FF%FE", {}),
    ("GET", "/welcome/%C3%28", {}),
    ("GET", "/notes?page=%FF", {}),
    ("GET", "/api/notes?q=%FF&page=%FE&per_page=%C3%28", {}),
    ("GET", "/api/notes/%FF", {}),
    ("POST", "/api/notes", {"data": '{"title": "\\udc80\\ud800"}', "content_type": "application/json"}),
    ("POST", "/api/notes", {"data": '{"title": "x"}'.encode("utf-16"),
                            "content_type": "application/json"}),
], ids=["form escapes", "form raw bytes", "query", "path", "path 2", "page", "api query",
        "api path", "lone surrogates", "UTF-16"])
def test_non_utf8_bytes_never_give_a_500(client, logged_in, method, url, kwargs):
    token = logged_in.token("/notes")
    headers = {"X-CSRFToken": token, **api_headers(client, "bob")} if "/api/" in url else \
        {"X-CSRFToken": token}
    response = client.open(url, method=method, headers=headers, **kwargs)
    assert response.status_code < 500


@pytest.mark.parametrize("title, accepted", [
    ("x" * 200, True), (" " + "x" * 200, False), ("x" * 200 + "\u3000", False),
    ("\x1c" + "x" * 200, False), ("x" * 200 + "\x85", False), ("  x  ", True),
], ids=["200", "space + 200", "200 + U+3000", "\\x1c + 200", "200 + U+0085", "spaces kept"])
def test_values_are_checked_as_sent_by_forms_and_api_alike(client, logged_in, app, title,
                                                           accepted):
    headers = api_headers(client, "bob")
    api = client.post("/api/notes", json={"title": title}, headers=headers)
    form = client.post("/notes", data={"title": title, "csrf_token": logged_in.token("/notes")})
    assert (api.status_code, form.status_code) == ((201, 302) if accepted else (422, 200))
    if accepted:
        assert api.json["title"] == title
    assert count_rows(app, "notes") == (2 if accepted else 0)


@pytest.mark.parametrize("url", ["/api/users", "/api/token", "/api/notes"])
def test_a_json_body_naming_a_member_twice_is_400(client, url):
    response = client.post(url, data='{"username": "alice", "password": "x", "username": "bob"}',
                           headers={**api_headers(client, "carol"),
                                    "Content-Type": "application/json"})
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    assert "twice" in response.json["detail"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_bare_api_path_answers_problem_json(client, method):
    response = client.open("/api", method=method)
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


# ---------------------------------------------------------------------------
# 8. Flask configurations & environment variables
# ---------------------------------------------------------------------------


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
    assert sources.get("LOGIN_FAILURE_WINDOW") is None  # the default of the section that uses it


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


def test_config_page_masks_secrets_and_shows_sources(client, app):
    page = client.get("/config").get_data(as_text=True)
    assert TEST_SECRET not in page and JWT_TEST_KEY not in page
    assert "secret_key" not in page.replace("SECRET_KEY", "")
    assert re.search(r"<code>SECRET_KEY</code></th><td><code>•+ \(hidden\)</code></td>", page)
    assert re.search(r"<code>MAX_CONTENT_LENGTH</code></th><td><code>1048576</code></td>"
                     r"<td>Flask Tour default</td>", page)
    assert "create_app() argument" in page


def test_config_table_scrolls_by_keyboard_and_hides_the_database_path(clean_environment, tmp_path):
    configured = create_app({"TESTING": True, "DATABASE": str(tmp_path / "tour.sqlite")},
                            instance_path=str(tmp_path / "i"))
    default = create_app({"TESTING": True}, instance_path=str(tmp_path / "instance"))
    for app in (configured, default):
        page = app.test_client().get("/config").get_data(as_text=True)
        assert app.config["DATABASE"] not in page and str(tmp_path) not in page
        assert "<code>DATABASE</code></th><td><code>•••••• (" in page  # masked, as a path or unknown
        # axe's scrollable-region-focusable: a keyboard can reach, and so scroll, the table
        assert re.search(r'<div class="table-wrap" tabindex="0" role="region" aria-label="[^"]+">',
                         page)


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


# --- 8: attacks and faults ---------------------------------------------------


@pytest.mark.parametrize("name, value", [
    ("SMTP_PASS", "84736251"), ("DB_PASSWD", "73519246"), ("ADMIN_PIN", "4821"),
    ("DOOR_CODE", "59173"), ("DOOR_CODES", "[59174, 59175]"), ("MAINTENANCE", "true"),
    ("BACKUP_AUTH", "user:pw_visible"), ("CLOUD_CREDENTIALS", '{"k": "pw_visible"}'),
])
def test_config_page_hides_every_setting_the_app_does_not_define_whatever_its_type(
        clean_environment, tmp_path, name, value):
    clean_environment.setenv(f"FLASK_{name}", value)
    app = create_app({"GATE_PIN": 1234}, instance_path=str(tmp_path))
    page = app.test_client().get("/config").text
    for hidden in (name, "GATE_PIN"):
        assert f"<code>{hidden}</code></th><td><code>•••••• (hidden)</code>" in page
    for secret in ("84736251", "73519246", "4821", "59173", "59174", "pw_visible", "1234"):
        assert secret not in page
    assert "LOGIN_MAX_FAILURES</code></th><td><code>5</code>" in page  # a section's, shown


def test_the_docker_image_has_the_list_of_settings_that_config_shows(tmp_path):
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY .env.example ./" in dockerfile and ".env.example" not in (
        ROOT / ".dockerignore").read_text()
    image = tmp_path / "image"  # what the image's /app holds
    image.mkdir()
    shutil.copy(ROOT / ".env.example", image)
    assert {"TRUSTED_PROXIES", "ACCESS_LOG"} <= tour.documented_settings(str(image))
    assert tour.documented_settings(str(tmp_path)) == frozenset()  # without it: all hidden


@pytest.mark.parametrize("name", ["MAIL_PASS", "SMTP_PASSWD", "DB_PWD", "PIN", "PHONE_PIN_CODE",
                                  "OAUTH_CLIENT", "AUTH_HEADER", "GOOGLE_CREDENTIALS",
                                  "SIGNING_KEY", "APIKEY", "WEBHOOK_SIGNATURE"])
def test_secret_names_are_recognised_in_every_usual_spelling(name):
    assert tour.SECRET_NAME.search(name)


def test_secret_key_file_is_private_even_with_a_permissive_umask(clean_environment, tmp_path):
    previous = os.umask(0)
    try:
        create_app(instance_path=str(tmp_path / "instance"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "instance" / "secret_key").stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["SECRET_KEY", "JWT_SECRET_KEY"])
@pytest.mark.parametrize("key", ["", "weak-Key-42", "x" * 31, tour.EXAMPLE_SECRET, b"x" * 31,
                                 12345678901234567890123456789012345678901234567890],
                         ids=["empty", "short", "31 bytes", "example", "31 raw bytes", "a number"])
def test_weak_secret_keys_are_refused_outside_debug_and_testing(clean_environment, tmp_path,
                                                                name, key):
    with pytest.raises(RuntimeError) as refused:
        create_app({name: key}, instance_path=str(tmp_path))
    message = str(refused.value)
    assert f"FLASK_{name}" in message and "secrets.token_hex(32)" in message
    assert "32 bytes" in message
    if not isinstance(key, int):
        assert str(key) not in message or not key
    assert create_app({name: key, "TESTING": True}, instance_path=str(tmp_path))
    assert create_app({name: key, "DEBUG": True}, instance_path=str(tmp_path))
    assert create_app({name: "x" * 32}, instance_path=str(tmp_path))


def test_weak_secret_key_from_the_environment_is_refused(clean_environment, tmp_path):
    clean_environment.setenv("FLASK_SECRET_KEY", "1234")
    with pytest.raises(RuntimeError, match="FLASK_SECRET_KEY"):
        create_app(instance_path=str(tmp_path))


def test_config_page_never_shows_secrets_or_the_key_file(clean_environment, tmp_path):
    settings = tmp_path / "settings.py"
    settings.write_text('STRIPE_API_KEY = "sk_live_visible"\nGITHUB_TOKEN = "ghp_visible"\n'
                        'MAIL_PASSWORD = "hunter2_visible"\n'
                        'SECRET_KEY_FALLBACKS = ["old_key_visible"]\n'
                        'JWT_SECRET_KEY = "jwt_key_visible_0123456789abcdef0123456789"\n')
    clean_environment.setenv("APP_SETTINGS", str(settings))
    clean_environment.setenv("FLASK_MAIL__PASSWORD", "nested_visible")  # becomes MAIL["PASSWORD"]
    clean_environment.setenv("FLASK_DB_URL", "postgres://user:pw_visible@db/app")
    app = create_app(instance_path=str(tmp_path / "instance"))
    page = app.test_client().get("/config").get_data(as_text=True)
    assert app.config["SECRET_KEY"] not in page and "_visible" not in page
    assert str(tmp_path / "instance" / "secret_key") not in page
    assert "secret_key" not in page.replace("SECRET_KEY", "")
    assert "JWT_ACCESS_TOKEN_EXPIRES</code></th><td><code>900" in page
    assert not app.debug


def test_config_page_shows_a_sections_setting_set_from_the_environment(clean_environment, tmp_path):
    clean_environment.setenv("FLASK_TRUSTED_PROXIES", "1")
    clean_environment.setenv("FLASK_LOGIN_DELAYS", "[0, 30]")
    clean_environment.setenv("FLASK_JWT_ISSUER", "tour-of-class-3")
    page = create_app(instance_path=str(tmp_path)).test_client().get("/config").text
    assert "TRUSTED_PROXIES</code></th><td><code>1</code>" in page
    assert "LOGIN_DELAYS</code></th><td><code>[0, 30]</code>" in page
    assert "JWT_ISSUER</code></th><td><code>&#39;tour-of-class-3&#39;</code>" in page


def test_debug_mode_is_off_unless_explicitly_enabled(clean_environment, tmp_path):
    assert not create_app(instance_path=str(tmp_path)).debug
    clean_environment.setenv("FLASK_DEBUG", "1")
    assert create_app(instance_path=str(tmp_path)).debug


# ---------------------------------------------------------------------------
# 9. Database integration (sqlite3)
# ---------------------------------------------------------------------------


def test_get_db_is_one_connection_per_request_closed_at_teardown(app):
    with app.app_context():
        db = tour.get_db()
        assert tour.get_db() is db  # one per request, kept on g
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        with app.app_context():  # a request running at the same time gets its own
            assert tour.get_db() is not db
    with pytest.raises(sqlite3.ProgrammingError):  # closed at teardown
        db.execute("SELECT 1")


def test_a_request_that_fails_halfway_leaves_nothing_written(app):
    with app.app_context():
        tour.get_db().execute("INSERT INTO users (username, password_hash, session_id)"
                              " VALUES ('half', 'x', 'y')")
    assert count_rows(app, "users") == 0


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


def test_init_db_drops_a_table_whatever_its_name(runner, app, tmp_path):
    api_headers(runner.app.test_client())  # the database exists
    elsewhere = tmp_path / "written.sqlite"
    name = f'x"; ATTACH DATABASE \'{elsewhere}\' AS p; CREATE TABLE p.t (a); --'
    with contextlib.closing(sqlite3.connect(app.config["DATABASE"])) as db:
        db.execute(f'CREATE TABLE "{name.replace(chr(34), chr(34) * 2)}" (a)')
        db.commit()
    assert "Initialized the database" in runner.invoke(args=["init-db"]).output
    assert not elsewhere.exists()  # the name stayed a name: no SQL of its own ran
    with contextlib.closing(sqlite3.connect(app.config["DATABASE"])) as db:
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0] == 0


def test_database_page_shows_your_rows_and_the_sql_that_read_them(client, auth):
    anonymous = client.get("/database").get_data(as_text=True)
    assert "Log in to see the rows" in anonymous and escape(tour.NOTES_SQL) in anonymous
    auth.register()
    client.post("/notes", data={"title": "row one", "body": "", "csrf_token": auth.token("/notes")})
    html = client.get("/database").get_data(as_text=True)
    assert "<td>row one</td>" in html and "<th>user_id</th>" in html and "1 row\n" in html

# --- 9: attacks and faults ---------------------------------------------------


def test_a_busy_database_is_503_with_retry_after_never_500(app, client, monkeypatch, caplog):
    monkeypatch.setattr(tour, "BUSY_TIMEOUT", 0.2)
    headers = api_headers(client)
    AuthActions(client).login(username="alice")
    form = {"title": "waits", "csrf_token": csrf_from(client.get("/notes"))}
    blocker = sqlite3.connect(app.config["DATABASE"], isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        with caplog.at_level("ERROR", logger="app"):
            api = client.post("/api/notes", json={"title": "waits"}, headers=headers)
            page = client.post("/notes", data=form)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert api.status_code == 503 and api.headers["Retry-After"]
    assert api.mimetype == "application/problem+json" and "locked" not in api.get_data(as_text=True)
    assert page.status_code == 503 and page.headers["Retry-After"] and page.mimetype == "text/html"
    assert "Database unavailable: database is locked" in caplog.text
    assert count_rows(app, "notes") == 0
    assert client.post("/api/notes", json={"title": "now"}, headers=headers).status_code == 201


@contextlib.contextmanager
def read_only(path):
    """Make a file or folder read-only until the block ends; as root, whom modes do not stop,
    with chattr +i."""
    if os.geteuid() != 0:
        writable = stat.S_IMODE(path.stat().st_mode)
        path.chmod(writable & 0o555)
        restore = functools.partial(path.chmod, writable)
    elif subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        restore = functools.partial(subprocess.run, ["chattr", "-i", str(path)], check=True)
    else:
        pytest.skip("running as root where chattr +i is not available")
    try:
        yield
    finally:
        restore()


@pytest.mark.parametrize("existing", [False, True], ids=["new database", "existing database"])
def test_read_only_database_directory_is_503_and_logged(tmp_path, caplog, existing):
    directory = tmp_path / "data"
    directory.mkdir()
    settings = {"TESTING": True, "SECRET_KEY": TEST_SECRET, "DATABASE": str(directory / "db.sqlite")}
    if existing:  # written once, every connection closed, then the volume turns read-only
        subprocess.run([sys.executable, "-m", "flask", "--app", "app", "init-db"], cwd=ROOT, check=True,
                       env={**os.environ, "FLASK_DATABASE": settings["DATABASE"],
                            "FLASK_SECRET_KEY": TEST_SECRET}, capture_output=True)
    client = create_app(settings, instance_path=str(tmp_path / "i")).test_client()
    with read_only(directory), caplog.at_level("ERROR", logger="app"):
        health = client.get("/healthz")
        api = client.post("/api/users", json={"username": "newuser", "password": PASSWORD})
        page = client.post("/register", data={"username": "newuser", "password": PASSWORD,
                                              "csrf_token": csrf_from(client.get("/register"))})
        tour_page = client.get("/")
    assert health.status_code == 503 and health.json["database"] == "unavailable"
    assert health.json["reason"].startswith(f"the folder {directory} is read-only")
    assert api.status_code == 503 and api.mimetype == "application/problem+json"
    assert api.headers["Retry-After"] and api.json["detail"].startswith("The database is busy")
    assert page.status_code == 503 and page.mimetype == "text/html" and page.headers["Retry-After"]
    assert "try again" in page.get_data(as_text=True)
    assert tour_page.status_code == 200  # pages that need no database still work
    assert "Health check failed" in caplog.text and "Database unavailable" in caplog.text
    assert "Traceback" not in caplog.text and "Unhandled exception" not in caplog.text


def database_in_a_folder_removed_after_start_up(tmp_path):
    """An app whose database folder existed at start-up and is gone now."""
    folder = tmp_path / "gone"
    folder.mkdir()
    app = create_app({"TESTING": True, "DATABASE": str(folder / "db.sqlite")},
                     instance_path=str(tmp_path / "i"))
    folder.rmdir()
    return app


def test_database_errors_are_503_not_500(tmp_path, caplog):
    app = database_in_a_folder_removed_after_start_up(tmp_path)
    client = app.test_client()
    page = client.get("/login")
    with caplog.at_level("ERROR", logger="app"):
        page = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                           "csrf_token": csrf_from(page)})
    assert page.status_code == 503 and page.headers["Retry-After"] and page.mimetype == "text/html"
    folder = Path(app.config["DATABASE"]).parent
    assert f"Database unavailable: the database's folder {folder} does not exist" in caplog.text
    api = client.post("/api/token", json={"username": "abc", "password": PASSWORD})
    assert api.status_code == 503 and api.mimetype == "application/problem+json"


# The faults of a production database, made for real: a read-only file, a deleted file, a
# full disk. Each answers 503 to every write and to the health check, acknowledges nothing
# it cannot keep, and recovers without a restart once the fault is repaired.


@contextlib.contextmanager
def small_disk(folder, size="2m"):
    """A tmpfs of `size` mounted on `folder` until the block ends (needs root)."""
    folder.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a tmpfs: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill_disk(folder):
    """Write a file into `folder` until the disk is full; return its path."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as file:
        with pytest.raises(OSError, match="No space left on device"):
            for _ in range(100_000):
                file.write(b"\0" * 65536)
    return filler


def signed_in_writer(client):
    """Write a note through the API and through the form, then ask the health check.

    Returns (API status, form status, /healthz response as a cookieless monitor gets it); the
    tokens are fetched now, while the database still works."""
    client.application.config["HEALTH_CHECK_INTERVAL"] = 0  # a check per request: faults change
    headers = api_headers(client, "apiuser")
    AuthActions(client).register()
    csrf_token = csrf_from(client.get("/notes"))

    def write(title):
        api = client.post("/api/notes", json={"title": title}, headers=headers)
        page = client.post("/notes", data={"title": title, "csrf_token": csrf_token})
        return api.status_code, page.status_code, client.application.test_client().get("/healthz")
    return write


def titles_in(database):
    """The titles of the notes in the file at `database`, read without the app."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return sorted(row[0] for row in db.execute("SELECT title FROM notes"))


def test_a_read_only_database_file_is_503_and_recovers_without_restart(app, client, caplog):
    database, write = Path(app.config["DATABASE"]), signed_in_writer(client)
    assert write("before")[:2] == (201, 302)
    with read_only(database), caplog.at_level("ERROR", logger="app"):
        api, page, health = write("while read-only")
        reading = client.get("/notes")
    assert (api, page, health.status_code) == (503, 503, 503)
    assert health.json["reason"].startswith(f"{database} is read-only for this process")
    assert health.json["reason"].endswith(f"its owner uid {os.geteuid()}; make it writable")
    assert reading.status_code == 200  # reads still work
    assert f"Database unavailable: attempt to write a readonly database: {database}" in caplog.text
    assert f"Health check failed: {database} is read-only" in caplog.text
    api, page, health = write("after")  # the same app: no connection outlives its request
    assert (api, page, health.status_code) == (201, 302, 200)
    assert titles_in(database) == ["after", "after", "before", "before"]


def test_a_deleted_database_file_takes_no_write_and_loses_nothing_acknowledged(app, client,
                                                                               tmp_path):
    database, write = Path(app.config["DATABASE"]), signed_in_writer(client)
    assert write("before")[:2] == (201, 302)
    backup = tmp_path / "backup.sqlite"
    os.link(database, backup)  # the deleted file, kept where the test can put it back
    database.unlink()
    api, page, health = write("while deleted")
    assert (api, page, health.status_code) == (503, 503, 503)
    assert health.json["reason"].startswith(f"the database {database} is missing, but one was "
                                            f"made there (.{database.name}.created")
    assert not database.exists()  # no new, empty database took the writes
    os.link(backup, database)  # the file is restored: the same app writes again
    api, page, health = write("after")
    assert (api, page, health.status_code) == (201, 302, 200)
    assert titles_in(database) == ["after", "after", "before", "before"]  # every 201, no other


def test_a_full_disk_is_503_and_recovers_when_space_is_freed(tmp_path, caplog):
    with small_disk(tmp_path / "disk") as disk:
        app = create_app({"TESTING": True, "SECRET_KEY": TEST_SECRET,
                          "DATABASE": str(disk / "db.sqlite")}, instance_path=str(tmp_path / "i"))
        write = signed_in_writer(app.test_client())
        assert write("before")[:2] == (201, 302)
        filler = fill_disk(disk)
        with caplog.at_level("ERROR", logger="app"):
            api, page, health = write("while full")
        assert (api, page, health.status_code) == (503, 503, 503)
        assert health.json["reason"].startswith(f"the disk holding {disk / 'db.sqlite'} is full")
        assert "Database unavailable" in caplog.text and "Traceback" not in caplog.text
        filler.unlink()
        api, page, health = write("after")
        assert (api, page, health.status_code) == (201, 302, 200)
        assert titles_in(disk / "db.sqlite") == ["after", "after", "before", "before"]


def test_a_deleted_database_is_not_recreated_by_replacement_workers(tmp_path):
    """rm of the file, its -wal and -shm, then gunicorn replaces its workers (HUP): they make
    no new, empty database; /healthz and the log say what is missing and what to do."""
    database = tmp_path / "gunicorn.sqlite"
    with run_gunicorn(tmp_path, env={"FLASK_HEALTH_CHECK_INTERVAL": "0"}) as server:
        bearer = token_for(server.url)
        kept = LiveClient(server.url).post_json("/api/notes", {"title": "kept"}, bearer)
        assert kept.status == 201
        os.link(database, tmp_path / "backup.sqlite")  # the deleted file, for the test to restore
        for name in (database, *database.parent.glob(database.name + "-*")):
            name.unlink()
        workers = wait_for(lambda: len(pids := gunicorn_workers(server)) == 2 and pids, "2 workers")
        server.proc.send_signal(signal.SIGHUP)  # what a crash, a timeout or a reload also do
        wait_for(lambda: len(pids := gunicorn_workers(server) - workers) == 2 and pids,
                 "2 new workers")
        health = LiveClient(server.url).get("/healthz")
        newcomer = LiveClient(server.url).post_json("/api/users", {"username": "newcomer",
                                                                   "password": PASSWORD})
        note = LiveClient(server.url).post_json("/api/notes", {"title": "lost?"}, bearer)
        assert not database.exists()  # no new, empty database took them
        os.link(tmp_path / "backup.sqlite", database)  # restored: the new workers use it
        restored = LiveClient(server.url).get("/healthz")
        me = LiveClient(server.url).get("/api/me", bearer)
    assert (health.status, newcomer.status, note.status) == (503, 503, 503)
    missing = (f"the database {database} is missing, but one was made there "
               f"(.{database.name}.created still there): the app will not create an empty one")
    assert health.json["reason"].startswith(missing) and "flask init-db" in health.json["reason"]
    assert f"Database unavailable: {missing}" in server.output()
    assert (restored.status, me.status) == (200, 200)
    assert titles_in(database) == ["kept"]


def test_only_a_folder_that_never_held_the_database_gets_a_new_one(tmp_path, caplog):
    settings = {"TESTING": True, "SECRET_KEY": TEST_SECRET, "DATABASE": str(tmp_path / "db.sqlite")}
    new_worker = functools.partial(create_app, settings, instance_path=str(tmp_path / "i"))
    with caplog.at_level("WARNING", logger="app"):
        assert new_worker().test_client().get("/healthz").status_code == 200
    record = tmp_path / ".db.sqlite.created"
    assert f"Created the database {tmp_path / 'db.sqlite'}: {record} records it" in caplog.text
    (tmp_path / "db.sqlite").unlink()
    assert new_worker().test_client().get("/healthz").status_code == 503  # a new worker
    assert not (tmp_path / "db.sqlite").exists()
    for trace in ("db.sqlite-wal", "db.sqlite-shm"):  # left by SQLite: a database was there too
        record.rename(tmp_path / trace)
        assert new_worker().test_client().get("/healthz").json["reason"].startswith(
            f"the database {tmp_path / 'db.sqlite'} is missing, but one was made there ({trace} ")
        (tmp_path / trace).rename(record)
    runner = new_worker().test_cli_runner()
    assert "Initialized the database" in runner.invoke(args=["init-db"]).output  # the way back
    assert new_worker().test_client().get("/healthz").status_code == 200
    record.unlink()  # as a database made before the app wrote records has none
    with caplog.at_level("WARNING", logger="app"):
        assert new_worker().test_client().get("/healthz").status_code == 200
    assert f"Opened the database {tmp_path / 'db.sqlite'}: {record} records it" in caplog.text


@contextlib.contextmanager
def unprivileged_worker(make_app, requests):
    """A forked process, as nobody when the tests run as root, that builds one app and serves
    it as a gunicorn worker would: `serve(headers, *names)` runs those of `requests` (name:
    function of a test client and headers); each reply's (status, JSON), and the log so far."""
    context = multiprocessing.get_context("fork")
    to_worker, from_worker = context.Pipe()

    def run():
        if os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        app, log = make_app(), []
        app.logger.addHandler(logging_to(log))
        client = app.test_client()
        while message := from_worker.recv():
            headers, names = message
            replies = [requests[name](client, headers) for name in names]
            from_worker.send(([(reply.status_code, reply.get_json()) for reply in replies], log))
    process = context.Process(target=run)
    process.start()

    def serve(headers, *names):
        to_worker.send((headers, names))
        assert to_worker.poll(60), "the worker did not answer"
        return to_worker.recv()
    try:
        yield serve
    finally:
        to_worker.send(None)
        process.join(timeout=10)
        if process.is_alive():
            process.kill()


def test_a_read_only_period_leaves_a_read_only_shm_that_the_app_repairs(tmp_path):
    """As the issue found it: the app as an unprivileged user, no request open, chmod 444 on
    the database; a read then leaves SQLite's -shm with mode 444, and after chmod 644 every
    write failed for good. Now the read-only file is named, and the -shm repaired."""
    folder = Path(tempfile.mkdtemp(prefix="flask-tour-shm-"))  # tmp_path is closed to nobody
    try:
        folder.chmod(0o755)
        if os.geteuid() == 0:
            os.chown(folder, 65534, 65534)
        database, shm = folder / "db.sqlite", folder / "db.sqlite-shm"
        settings = {"TESTING": True, "SECRET_KEY": TEST_SECRET, "JWT_SECRET_KEY": JWT_TEST_KEY,
                    "DATABASE": str(database), "HEALTH_CHECK_INTERVAL": 0}
        create_app({**settings, "DATABASE": str(tmp_path / "warm-up.sqlite")}).test_client().get(
            "/api/notes")  # the modules a request needs, imported before the fork
        credentials = {"username": "ada", "password": PASSWORD}
        requests = {
            "sign up": lambda client, _: client.post("/api/users", json=credentials),
            "token": lambda client, _: client.post("/api/token", json=credentials),
            "write": lambda client, bearer: client.post("/api/notes", json={"title": "note"},
                                                        headers=bearer),
            "read": lambda client, bearer: client.get("/api/notes", headers=bearer),
            "health": lambda client, _: client.get("/healthz")}
        with unprivileged_worker(lambda: create_app(settings, instance_path=str(tmp_path / "i")),
                                 requests) as serve:
            (created, _), (_, token) = serve({}, "sign up", "token")[0]
            bearer = bearer_of(token)
            assert created == 201 and not shm.exists()  # no request open: no -shm
            database.chmod(0o444)
            replies, _ = serve(bearer, "read", "write", "health")
            assert [status for status, _ in replies] == [200, 503, 503]
            assert replies[2][1]["reason"] == (
                f"{database} is read-only for this process (uid {os.geteuid() or 65534}): its "
                f"mode is 444, its owner uid {database.stat().st_uid}; make it writable")
            assert stat.S_IMODE(shm.stat().st_mode) == 0o444  # SQLite copied the database's mode
            database.chmod(0o644)
            replies, log = serve(bearer, "write", "health")
            assert [status for status, _ in replies] == [201, 200]  # before the repair: 503s
            assert f"Made {shm} writable again (mode 644, as {database}): a read-only period " \
                   "of the database had left it read-only" in log
        assert titles_in(database) == ["note"]
    finally:
        shutil.rmtree(folder)


def test_a_side_file_the_app_cannot_repair_is_named_with_what_to_do(app, client):
    if os.geteuid() != 0:
        pytest.skip("needs root: to leave a -shm this process cannot make writable (chattr +i)")
    app.config["HEALTH_CHECK_INTERVAL"] = 0
    assert client.get("/healthz").status_code == 200
    shm = Path(app.config["DATABASE"] + "-shm")
    shm.write_bytes(b"")  # left behind, as by an earlier read-only period or another user
    with read_only(shm):
        health = client.get("/healthz")
    assert health.status_code == 503 and health.json["reason"] == (
        f"{shm} is read-only for this process (uid 0): its mode is 644, its owner uid 0; make it "
        "writable, or delete it while no process has the database open")
    assert client.get("/healthz").status_code == 200  # fixed: the next check sees it


def logging_to(lines):
    """A logging handler that appends each message to `lines`."""
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    return handler


def bearer_of(token_reply):
    return {"Authorization": "Bearer " + token_reply["access_token"]}


@pytest.mark.parametrize("mounted", [False, True], ids=["at /", "under /demo"])
def test_a_configured_secret_key_needs_no_instance_folder(clean_environment, tmp_path, mounted):
    clean_environment.setenv("FLASK_SECRET_KEY", TEST_SECRET)  # as .env.example suggests
    instance = tmp_path / "instance"
    app = create_app(instance_path=str(instance))
    prefix = "/demo" if mounted else ""
    if mounted:
        app.wsgi_app = DispatcherMiddleware(NotFound(), {"/demo": app.wsgi_app})
    assert not instance.exists()
    client = app.test_client()
    assert client.get(prefix + "/healthz").json == {"status": "ok", "database": "ok"}
    assert AuthActions(client, prefix).register().headers["Location"] == prefix + "/notes"
    assert client.get(prefix + "/notes").status_code == 200
    assert (instance / "flask_tour.sqlite").exists() and not (instance / "secret_key").exists()


def test_a_database_in_a_missing_folder_stops_start_up_naming_it(tmp_path):
    database = str(tmp_path / "no-such-folder" / "tour.sqlite")
    with pytest.raises(RuntimeError, match=re.escape(repr(database))):
        create_app({"TESTING": True, "DATABASE": database}, instance_path=str(tmp_path / "i"))
    started = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "routes"], cwd=ROOT,
                             env={**os.environ, "FLASK_DATABASE": database,
                                  "FLASK_SECRET_KEY": TEST_SECRET},
                             capture_output=True, text=True, timeout=30)
    assert started.returncode != 0 and database in started.stderr
    assert "its folder does not exist" in started.stderr


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


def test_a_note_that_fails_to_build_is_not_saved(app):
    @dataclasses.dataclass
    class PinnedNote(Note):  # exercise 10's `pinned`, added to the class before the table
        pinned: bool
    with app.app_context():
        user = User.create("grace", PASSWORD)
        with pytest.raises(TypeError, match="pinned"):
            PinnedNote.create(user.id, "told it failed")
    assert count_rows(app, "notes") == 0  # the user was told it failed: nothing was saved


def test_paginate_takes_its_table_and_filter_only_from_fixed_sets(app):
    class Users(Note):
        table = "users"
    with app.app_context():
        assert tour.paginate(Note, tour.BY_USER, (1,), 1, 10).total == 0
        for model, where in [(Users, tour.BY_USER), (Note, "1 = 1"),
                             (Note, "user_id = ? OR 1 = 1")]:
            with pytest.raises(ValueError, match="paginate reads only"):
                tour.paginate(model, where, (1,), 1, 10)


def test_password_hash_is_werkzeugs_default_method(app, monkeypatch):
    monkeypatch.setattr(tour, "generate_password_hash", werkzeug.security.generate_password_hash)
    default_method = werkzeug.security.generate_password_hash("x").split("$")[0]
    with app.app_context():
        user = User.create("grace", PASSWORD)
    assert user.password_hash.split("$")[0] == default_method
    assert PASSWORD not in user.password_hash


# --- 10: attacks and faults --------------------------------------------------

SQL_INJECTIONS = ["' OR 1=1 --", '"; DROP TABLE users; --', "%' --", "\\", "1; DELETE FROM notes"]


@pytest.mark.parametrize("text", SQL_INJECTIONS)
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


@pytest.mark.parametrize("text", SQL_INJECTIONS)
def test_sql_injection_through_every_field_and_query_parameter(client, logged_in, app, text):
    headers = api_headers(client, "bob")
    token = logged_in.token("/notes")
    assert logged_in.register(text, text).status_code == 200  # refused by validation
    assert logged_in.login(text, text).status_code == 200
    assert client.post("/api/token", json={"username": text, "password": text}).status_code in (401, 422)
    client.post("/notes", data={"title": text, "body": text, "csrf_token": token})
    client.post("/api/notes", json={"title": text, "body": text}, headers=headers)
    assert client.get("/search", query_string={"q": text, "page": text}).status_code == 200
    assert text in client.get("/notes").get_data(as_text=True).replace("&#39;", "'").replace(
        "&#34;", '"').replace("&amp;", "&")
    refused = client.get("/api/notes", query_string={"q": text, "page": text, "per_page": text},
                         headers=headers)
    assert refused.status_code == 422 and set(refused.json["errors"]) == {"page", "per_page"}
    found = client.get("/api/notes", query_string={"q": text}, headers=headers)
    assert found.status_code == 200 and [n["title"] for n in found.json["items"]] == [text]
    assert client.get("/user/" + text.replace("\\", "x")).status_code == 200
    with app.app_context():
        rows = tour.get_db().execute("SELECT title, body FROM notes").fetchall()
    assert [tuple(row) for row in rows] == [(text, text), (text, text)]
    assert count_rows(app, "users") == 2


def test_passwords_are_never_stored_or_logged_in_clear(client, auth, app, caplog, tmp_path):
    with caplog.at_level("DEBUG"):
        auth.register()
        auth.logout()
        auth.login(password="wrong " + PASSWORD)
        auth.login()
        api_headers(client, "bob")
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert PASSWORD.encode() not in data and b"wrong " not in data, path
    assert PASSWORD not in caplog.text and count_rows(app, "users") == 2


# ---------------------------------------------------------------------------
# 11. Authentication & JWT
# ---------------------------------------------------------------------------


# --- 11.1 Sessions and login -------------------------------------------------


def test_login_required_redirects_with_next(client, auth):
    response = client.get("/notes?page=2")
    assert response.headers["Location"] == "/login?next=/notes?page%3D2"
    auth.register()
    auth.logout()
    assert auth.login(next="/notes?page=2").headers["Location"] == "/notes?page=2"


def test_a_permanent_session_is_still_refreshed_on_every_request(app, client):
    @app.route("/remember-me")
    def remember_me():
        flask.session["who"], flask.session.permanent = "alice", True
        return ""
    client.get("/remember-me")
    refreshed = client.get("/data").headers.get("Set-Cookie", "")  # /data never reads it
    assert refreshed.startswith("session=") and "Expires=" in refreshed


def test_without_a_secret_key_the_session_says_so(app, client, caplog):
    app.secret_key = None
    @app.route("/store")
    def store():
        flask.session["x"] = 1
        return ""
    with caplog.at_level("ERROR", logger="app"):
        assert client.get("/store").status_code == 500
    assert "The session is unavailable because no secret key was set" in caplog.text


# The login throttle, for a classroom: time is moved by a Clock, never slept.


class Clock:
    """The `time` module of app.py, where the throttles live: tests move time() instead of sleeping."""

    def __init__(self):
        self.now = time.time()

    def time(self):
        return self.now

    def __getattr__(self, name):  # perf_counter and the rest: the real ones
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(tour, "time", clock)
    return clock


def token_attempt(client, username="alice", password=PASSWORD, address="127.0.0.1"):
    """POST /api/token from the client address `address`."""
    return client.post("/api/token", json={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def attempt_when_allowed(client, clock, *args):
    """A token request that, when refused with 429, waits out Retry-After and tries again."""
    response = token_attempt(client, *args)
    if response.status_code == 429:
        clock.now += int(response.headers["Retry-After"])
        response = token_attempt(client, *args)
    return response


def test_a_class_of_40_behind_one_address_each_mistyping_twice_is_never_refused(app, clock):
    room = {"REMOTE_ADDR": "127.0.0.2"}  # one NAT address for the whole class
    students = {f"student{n}": AuthActions(app.test_client()) for n in range(40)}
    for name, browser in students.items():  # the same instant throughout: the worst case
        assert browser.register(name, environ_base=room).status_code == 302
        browser.logout()
    for typo in ("wrong password", PASSWORD.upper()):
        for name, browser in students.items():
            assert browser.login(name, typo, environ_base=room).status_code == 200
    for name, browser in students.items():
        response = browser.login(name, environ_base=room)
        assert response.status_code == 302, response.get_data(as_text=True)


@pytest.mark.parametrize("seconds, words", [(1, "1 second"), (40, "40 seconds"), (99, "99 seconds"),
                                            (100, "2 minutes"), (900, "15 minutes")])
def test_waits_are_said_in_words(seconds, words):
    assert tour.in_words(seconds) == words



# --- 11.1: attacks and faults ------------------------------------------------


def test_session_cookie_is_httponly_samesite_lax_and_secure_when_configured(client, auth, tmp_path):
    cookie = auth.register().headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    configured = create_app({"TESTING": True, "SESSION_COOKIE_SECURE": True,
                             "DATABASE": str(tmp_path / "secure.sqlite")},
                            instance_path=str(tmp_path / "secure"))
    assert "; Secure" in configured.test_client().get("/login").headers["Set-Cookie"]


def test_session_fixation_is_prevented_by_a_fresh_session_on_login(client, auth):
    auth.register()
    auth.logout()
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
        session["csrf_token"] = "chosen-by-the-attacker"
    auth.client.post("/login", data={"username": "alice", "password": PASSWORD,
                                     "csrf_token": "chosen-by-the-attacker"})
    with client.session_transaction() as session:
        assert "planted" not in session and session.get("csrf_token") != "chosen-by-the-attacker"
        assert "user_id" in session


def test_session_is_cleared_on_logout(client, logged_in):
    logged_in.token("/")  # the page gives the session its CSRF token
    with client.session_transaction() as session:
        session["planted"] = "left behind"
        old_token = session["csrf_token"]
    logged_in.logout()
    with client.session_transaction() as session:
        assert not {"planted", "user_id"} & set(session)
        assert session.get("csrf_token") != old_token


def signed_in_as(client):
    """The name the page header shows for this client's session, or None when anonymous."""
    page = client.get("/").get_data(as_text=True)
    match = re.search(r"Signed in as <strong>([^<]*)</strong>", page)
    return match and match[1]


def test_a_copied_cookie_is_anonymous_after_logout_on_every_device(client, logged_in, app):
    token = logged_in.token("/notes")
    copied = client.get_cookie("session").value  # kept by an attacker, or a shared computer
    other_device = AuthActions(app.test_client())
    other_device.login()
    logged_in.logout()
    client.set_cookie("session", copied)
    assert signed_in_as(client) is None and signed_in_as(other_device.client) is None
    response = client.post("/notes", data={"title": "as alice", "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert count_rows(app, "notes") == 0
    assert logged_in.login().status_code == 302 and signed_in_as(client) == "alice"


def test_a_cookie_never_signs_in_to_a_later_account_with_the_same_id(app, runner):
    browsers = {name: AuthActions(app.test_client()) for name in ("alice", "bob", "carol")}
    for name, browser in browsers.items():
        browser.register(name)
    with app.app_context():
        User.find("carol").delete()
    AuthActions(app.test_client()).register("mallory")  # gets carol's id, 3
    with app.app_context():
        assert User.find("mallory").id == 3
    assert signed_in_as(browsers["carol"].client) is None
    runner.invoke(args=["init-db"])  # every id is free again
    AuthActions(app.test_client()).register("eve")
    assert signed_in_as(browsers["alice"].client) is None
    assert signed_in_as(browsers["bob"].client) is None


@pytest.mark.parametrize("url", ["/", "/notes", "/search?q=x", "/config", "/hooks",
                                 "/topics/11", "/errors/404"])
def test_pages_a_signed_in_user_sees_are_never_stored_by_a_cache(client, logged_in, url):
    assert client.get(url).headers.get("Cache-Control") == "no-store"
    assert "no-store" not in client.get("/static/style.css").headers.get("Cache-Control", "")
    logged_in.logout()
    assert "no-store" not in client.get(url).headers.get("Cache-Control", "")


@pytest.mark.parametrize("next_url, expected", [
    ("/notes?page=2", "/notes?page=2"),
    ("/search?q=x", "/search?q=x"),
    ("https://evil.example", "/notes"),
    ("//evil.example", "/notes"),
    ("/\\evil.example", "/notes"),
    ("\\\\evil.example", "/notes"),
    ("javascript:alert(1)", "/notes"),
    ("/\t/evil.example", "/notes"),
    ("/notes\r\nSet-Cookie: x=y", "/notes"),
    ("https:evil.example", "/notes"),
], ids=["path", "path with query", "absolute URL", "scheme-relative", "backslash",
        "double backslash", "javascript", "tab", "header injection", "scheme without slashes"])
def test_open_redirect_via_next_lands_on_this_site(client, auth, next_url, expected):
    auth.register()
    auth.logout()
    assert auth.login(next=next_url).headers["Location"] == expected


def test_user_enumeration_via_the_login_message_is_impossible(client, auth):
    auth.register()
    auth.logout()
    unknown = client.post("/api/token", json={"username": "nobody", "password": PASSWORD})
    wrong = client.post("/api/token", json={"username": "alice", "password": "wrong password"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json == wrong.json

    def form_error(username, password):
        html = auth.login(username, password).get_data(as_text=True)
        return re.search(r'<p class="error"[^>]* role="alert">([^<]*)</p>', html)[1]
    assert form_error("nobody", PASSWORD) == form_error("alice", "wrong password")


@pytest.mark.parametrize("username", ["alice", "nobody"], ids=["wrong password", "unknown user"])
def test_user_enumeration_via_timing_is_prevented_by_always_checking_a_hash(client, auth,
                                                                            monkeypatch, username):
    auth.register()
    auth.logout()
    calls = []
    real = tour.check_password_hash
    monkeypatch.setattr(tour, "check_password_hash",
                        lambda stored, password: calls.append(stored) or real(stored, password))
    auth.login(username, "wrong password")
    client.post("/api/token", json={"username": username or "nobody", "password": "wrong password"})
    assert len(calls) == 2


def failed_login(auth, username, address):
    """One failed form login for `username` from the client address `address`."""
    return auth.login(username, "wrong password", environ_base={"REMOTE_ADDR": address})


def test_brute_force_on_one_username_is_throttled_with_retry_after(app, client, auth):
    AuthActions(app.test_client()).register()  # the owner's browser, not the guesser's
    for attempt in range(5):  # from five addresses: only the username's delay grows
        assert failed_login(auth, "alice", f"198.51.100.{attempt}").status_code == 200
    page = auth.login(environ_base={"REMOTE_ADDR": "198.51.100.99"})
    assert page.status_code == 429 and page.mimetype == "text/html"
    assert 0 < int(page.headers["Retry-After"]) <= 30
    assert re.search(r"Try again in [0-9]+ seconds\.", page.get_data(as_text=True))
    api = client.post("/api/token", json={"username": "ALICE", "password": PASSWORD})
    assert api.status_code == 429 and api.mimetype == "application/problem+json"
    assert 0 < int(api.headers["Retry-After"]) <= 30 and "Try again in" in api.json["detail"]
    assert client.post("/api/token", json={"username": "bob", "password": PASSWORD}
                       ).status_code == 401


def test_password_spraying_from_one_address_is_throttled(app, client):
    auth = AuthActions(client)  # a browser that has never logged in to alice's account
    AuthActions(app.test_client()).register()
    for number in range(app.config["LOGIN_ADDRESS_MAX_FAILURES"]):  # one guess at each account
        response = token_attempt(client, f"user{number}", "wrong password", "203.0.113.7")
        assert response.status_code == 401
    page = auth.login(environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert page.status_code == 429 and "Retry-After" in page.headers
    assert "Try again in 15 minutes." in page.get_data(as_text=True)
    api = client.post("/api/token", json={"username": "alice", "password": PASSWORD},
                      environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert api.status_code == 429 and "Retry-After" in api.headers
    assert auth.login(environ_base={"REMOTE_ADDR": "203.0.113.8"}).status_code == 302


def test_password_spraying_cannot_reset_its_count_by_logging_in_to_its_own_account(app, client,
                                                                                   auth):
    app.config["LOGIN_ADDRESS_MAX_FAILURES"] = 5  # the default, 200, takes longer to reach
    auth.register("mallory")
    auth.logout()
    for name in ("bob", "carol", "dave", "erin"):
        failed_login(auth, name, "203.0.113.7")
    assert auth.login("mallory", environ_base={"REMOTE_ADDR": "203.0.113.7"}).status_code == 302
    auth.logout()
    assert failed_login(auth, "frank", "203.0.113.7").status_code == 200
    assert failed_login(auth, "grace", "203.0.113.7").status_code == 429


def test_parallel_guesses_cannot_all_slip_under_the_limit(app, client, monkeypatch):
    client.post("/api/users", json={"username": "alice", "password": PASSWORD})
    guesses, arrived, finished = 12, [], []
    everyone_waiting, release = threading.Condition(), threading.Event()

    def slow_check(stored, password):  # holds every guess inside the password check
        with everyone_waiting:
            arrived.append(password)
            everyone_waiting.notify()
        assert release.wait(timeout=10)
        return False

    def guess(number):
        response = app.test_client().post(
            "/api/token", json={"username": "alice", "password": f"wrong guess {number}"})
        with everyone_waiting:
            finished.append(response.status_code)
            everyone_waiting.notify()

    monkeypatch.setattr(tour, "check_password_hash", slow_check)
    threads = [threading.Thread(target=guess, args=(n,)) for n in range(guesses)]
    for thread in threads:
        thread.start()
    with everyone_waiting:  # every guess is either in the check or already answered
        assert everyone_waiting.wait_for(lambda: len(arrived) + len(finished) == guesses, 10)
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    free = app.config["LOGIN_DELAYS"].count(0)  # failures before the username's first delay
    assert sorted(finished) == [401] * free + [429] * (guesses - free)


def test_a_successful_login_forgets_the_owners_own_typos(client, auth):
    auth.register()
    auth.logout()
    for _ in range(3):  # without the reset, the second round's third typo would wait 30 s
        for _ in range(3):
            assert auth.login(password="wrong password").status_code == 200
        assert auth.login().status_code == 302
        auth.logout()


def test_login_throttle_is_shared_by_every_worker(client, auth, app):
    auth.register()
    auth.logout()
    for _ in range(5):
        auth.login(password="wrong password")
    other = another_worker(app).test_client()
    response = other.post("/api/token", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 429


@pytest.mark.parametrize("paced", [False, True], ids=["in a burst", "each guess when allowed"])
def test_20_guessers_on_20_addresses_keep_the_owner_out_for_at_most_a_minute(client, clock, paced):
    api_headers(client)
    for number in range(1, 21):
        address = f"127.0.0.{number}"
        if paced:
            assert attempt_when_allowed(client, clock, "alice", f"wrong guess {number}", address
                                        ).status_code == 401
        else:
            response = token_attempt(client, "alice", f"wrong guess {number}", address)
            assert response.status_code in (401, 429)
        owner = token_attempt(client, address="127.0.0.100")  # the owner, at any moment
        assert owner.status_code == 200 or int(owner.headers["Retry-After"]) <= 60
    owner = token_attempt(client, address="127.0.0.100")
    assert owner.status_code == 429 and int(owner.headers["Retry-After"]) <= 60
    clock.now += 60
    assert token_attempt(client, address="127.0.0.100").status_code == 200


def test_a_guesser_on_many_addresses_gets_at_most_a_few_tries_a_minute_per_account(client, clock):
    api_headers(client)
    start, checked = clock.now, []
    for second in range(600):  # a guess every second for ten minutes, each from a new address
        clock.now = start + second
        address = f"127.0.{second // 200}.{second % 200 + 1}"
        if token_attempt(client, "alice", f"wrong guess {second}", address).status_code == 401:
            checked.append(second)  # a guess whose password was checked
    busiest_minute = max(sum(t <= other < t + 60 for other in checked) for t in checked)
    assert busiest_minute <= 6 and len(checked) <= 6 + 10


def test_a_guesser_cannot_keep_the_owner_out_of_a_browser_they_logged_in_from(app, clock):
    owner, newcomer = app.test_client(), app.test_client()
    AuthActions(owner).register()
    AuthActions(owner).logout()  # logging out keeps the browser's known-device cookie
    assert owner.get_cookie("known_device") is not None
    for minute in range(30):  # a guess whenever the delay allows, from a new address each time
        clock.now += 60
        guess = app.test_client().post("/api/token", json={"username": "alice", "password":
                                       f"wrong guess {minute}"},
                                       environ_base={"REMOTE_ADDR": f"127.0.1.{minute + 1}"})
        assert guess.status_code == 401
        # Right after a guess: the owner's own browser gets in, a new browser has to wait
        # (once five guesses have used up the free tries: LOGIN_DELAYS starts with five zeros).
        assert AuthActions(newcomer).login(environ_base={"REMOTE_ADDR": "127.0.0.9"}
                                           ).status_code == (429 if minute >= 4 else 302)
        if minute < 4:
            AuthActions(newcomer).logout()
            newcomer.delete_cookie("known_device")  # stays a stranger to the account
        assert AuthActions(owner).login(environ_base={"REMOTE_ADDR": "127.0.0.9"}
                                        ).status_code == 302
        AuthActions(owner).logout()


def test_a_forged_known_device_cookie_earns_no_exemption(app, clock):
    client = app.test_client()
    api_headers(client)
    for index in range(5):  # the free tries: the next attempt, from anywhere, has to wait
        assert token_attempt(client, "alice", f"wrong guess {index}", f"127.0.1.{index + 1}"
                             ).status_code == 401
    forger = app.test_client()
    forger.set_cookie("known_device", URLSafeSerializer("not the key", salt="flask-tour known "
                                                        "device").dumps([1, "alice"]))
    assert AuthActions(forger).login().status_code == 429


def test_one_address_guessing_one_account_is_locked_for_the_window_not_its_owner(client, clock):
    api_headers(client)
    guesser = "127.0.0.66"
    for number in range(client.application.config["LOGIN_MAX_FAILURES"]):
        assert attempt_when_allowed(client, clock, "alice", f"wrong guess {number}", guesser
                                    ).status_code == 401
    clock.now += 60
    locked = token_attempt(client, "alice", "another guess", guesser)
    assert locked.status_code == 429 and 13 * 60 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert locked.json["detail"] == "Too many failed logins. Try again in 14 minutes."
    assert token_attempt(client, address="127.0.0.1").status_code == 200  # the owner, elsewhere
    assert token_attempt(client, "alice", "another guess", guesser).status_code == 429
    assert token_attempt(client, "bob", "a guess at bob", guesser).status_code == 401
    clock.now += 15 * 60  # failures count for LOGIN_FAILURE_WINDOW, then the pair is free again
    assert token_attempt(client, "alice", "another guess", guesser).status_code == 401


def test_the_owner_logging_in_does_not_reset_the_guessers_delay(client, clock):
    api_headers(client)
    for number in range(5):
        token_attempt(client, "alice", f"wrong guess {number}", f"127.0.0.{number + 1}")
    clock.now += 30
    assert token_attempt(client, address="127.0.0.100").status_code == 200
    assert token_attempt(client, "alice", "wrong guess 6", "127.0.0.6").status_code == 401
    assert token_attempt(client, "alice", "wrong guess 7", "127.0.0.7").status_code == 429


@pytest.mark.parametrize("door", ["form", "api"])
def test_registrations_from_one_address_are_limited_per_hour(app, clock, door):
    def register(number, address):
        environ = {"REMOTE_ADDR": address}
        if door == "form":
            return AuthActions(app.test_client()).register(f"user{number}", environ_base=environ)
        return app.test_client().post("/api/users", environ_base=environ, json={
            "username": f"user{number}", "password": PASSWORD})

    limit = app.config["REGISTRATIONS_PER_HOUR"]
    assert limit >= 60  # the classroom benchmark: 60 students behind one address, all at once
    for number in range(limit):
        assert register(number, "127.0.0.3").status_code in (201, 302)
    refused = register(limit, "127.0.0.3")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) == 3600
    assert "Try again in 60 minutes." in refused.get_data(as_text=True)
    assert count_rows(app, "users") == limit
    assert register(limit, "127.0.0.4").status_code in (201, 302)  # another address
    clock.now += 3600
    assert register(limit + 1, "127.0.0.3").status_code in (201, 302)


# One guesser behind the address a whole class shares (issue 18): the guesser stays slowed
# down, while every student gets in from a browser that has logged in to their account.
CLASS_ADDRESS = {"REMOTE_ADDR": "198.51.100.40"}


def test_spraying_from_the_class_address_locks_no_student_out_of_their_own_browser(app):
    students = {name: AuthActions(app.test_client()) for name in ("ada", "bob")}
    for name, browser in students.items():
        browser.register(name, environ_base=CLASS_ADDRESS)
        browser.logout()
    guesser = AuthActions(app.test_client())
    for number in range(app.config["LOGIN_ADDRESS_MAX_FAILURES"]):  # one guess at many names
        assert guesser.login(f"user{number}", "wrong password", environ_base=CLASS_ADDRESS
                             ).status_code == 200
    assert guesser.login("ada", environ_base=CLASS_ADDRESS).status_code == 429  # even if right
    for name, browser in students.items():
        assert browser.login(name, environ_base=CLASS_ADDRESS).status_code == 302
        browser.logout()
    assert guesser.login("user0", "wrong password", environ_base=CLASS_ADDRESS).status_code == 429


def test_guessing_at_a_classmate_from_the_class_address_leaves_their_browser_working(app, clock):
    bob = AuthActions(app.test_client())
    bob.register("bob", environ_base=CLASS_ADDRESS)
    bob.logout()
    guesser = AuthActions(app.test_client())
    for number in range(app.config["LOGIN_MAX_FAILURES"]):
        assert guesser.login("bob", f"wrong guess {number}", environ_base=CLASS_ADDRESS
                             ).status_code == 200
    locked = guesser.login("bob", environ_base=CLASS_ADDRESS)  # the right password, too late
    assert locked.status_code == 429 and "Try again in 15 minutes." in locked.text
    assert bob.login("bob", environ_base=CLASS_ADDRESS).status_code == 302
    bob.logout()
    assert guesser.login("bob", "one more guess", environ_base=CLASS_ADDRESS).status_code == 429


def test_a_known_device_that_keeps_failing_is_locked_as_a_guesser_is(app, clock):
    owner = AuthActions(app.test_client())  # or a thief with a copy of its cookie
    owner.register()
    owner.logout()
    for number in range(app.config["LOGIN_MAX_FAILURES"]):
        assert owner.login(password=f"wrong guess {number}").status_code == 200
    assert owner.login().status_code == 429  # the cookie is no way round the limit
    clock.now += app.config["LOGIN_FAILURE_WINDOW"]
    assert owner.login().status_code == 302


def delay_logins_to(auth, username):
    """Use up `username`'s free failures from five addresses: a new browser must now wait."""
    for number in range(5):
        auth.login(username, f"wrong guess {number}",
                   environ_base={"REMOTE_ADDR": f"127.0.2.{number}"})


def test_a_known_device_cookie_dies_with_its_account_and_stays_in_its_app(tmp_path):
    apps = {name: create_app({"TESTING": True, "SECRET_KEY": TEST_SECRET,  # the same key
                              "DATABASE": str(tmp_path / f"{name}.sqlite")},
                             instance_path=str(tmp_path / name)) for name in ("a", "b")}
    site = DispatcherMiddleware(NotFound(), {"/a": apps["a"], "/b": apps["b"]})
    browser, guesser = Client(site), AuthActions(Client(site), "/b")
    AuthActions(browser, "/a").register()  # alice, user 1 of app a
    known = browser.get_cookie("known_device", path="/a")
    assert known.http_only and browser.get_cookie("known_device", path="/") is None
    owner_of_b = AuthActions(Client(site), "/b")
    owner_of_b.register()  # another alice, user 1 of app b
    delay_logins_to(guesser, "alice")
    copied = AuthActions(Client(site), "/b")
    copied.client.set_cookie("known_device", known.value, path="/b")
    assert copied.login().status_code == 429  # a's cookie means nothing to b's alice
    assert owner_of_b.login().status_code == 302
    # The same app after `flask init-db`: a new alice, id 1 again, and the old browser
    apps["a"].test_cli_runner().invoke(args=["init-db"])
    AuthActions(Client(site), "/a").register()
    delay_logins_to(AuthActions(Client(site), "/a"), "alice")
    assert AuthActions(browser, "/a").login().status_code == 429
    # The cookie as it was before: [id, name], signed with the app's key
    old = AuthActions(Client(site), "/a")
    old.client.set_cookie("known_device", URLSafeSerializer(
        TEST_SECRET, salt="flask-tour known device").dumps([1, "alice"]), path="/a")
    assert old.login().status_code == 429


@pytest.mark.parametrize("door", ["form", "api"])
def test_a_name_refused_as_taken_costs_no_allowance_and_no_password_hash(app, monkeypatch, door):
    def register(username):
        if door == "form":
            return AuthActions(app.test_client()).register(username, environ_base=CLASS_ADDRESS)
        return app.test_client().post("/api/users", environ_base=CLASS_ADDRESS, json={
            "username": username, "password": PASSWORD})

    app.config["REGISTRATIONS_PER_HOUR"] = 3
    assert register("teacher").status_code in (201, 302)
    hashes, real = [], tour.generate_password_hash
    monkeypatch.setattr(tour, "generate_password_hash",
                        lambda password: hashes.append(password) or real(password))
    for attempt in range(20):
        refused = register("TEACHER")
        assert refused.status_code in (409, 200) and "already taken" in refused.text
    assert hashes == []
    # Free when checked, taken before the insert (a parallel request): that one counts, not this.
    with monkeypatch.context() as race:
        race.setattr(tour.User, "find", classmethod(lambda cls, username: None))
        assert "already taken" in register("teacher").text
    assert [register(name).status_code in (201, 302) for name in ("ada", "bob")] == [True, True]
    assert register("carol").status_code == 429
    assert count_rows(app, "users") == 3


# --- 11.2 JSON Web Tokens ----------------------------------------------------


def test_jwt_round_trip():
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "1", "exp": time.time() + 60}
    assert jwt_decode(jwt_encode(claims, KEY), KEY, ISSUER, AUDIENCE) == claims


def test_token_lifetime_is_configurable(app, client):
    app.config["JWT_ACCESS_TOKEN_EXPIRES"] = 60
    client.post("/api/users", json={"username": "alice", "password": PASSWORD})
    assert client.post("/api/token", json={"username": "alice", "password": PASSWORD}
                       ).json["expires_in"] == 60

# A token made by PyJWT 2.15.1, a standard library, which our code must verify:
#   jwt.encode({"sub": "1", "exp": 4102444800, "iss": "flask-tour", "aud": "flask-tour-api"},
#              JWT_TEST_KEY)
PYJWT_TOKEN = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwiZXhwIjo0MTAyNDQ0ODAwLCJpc3Mi"
               "OiJmbGFzay10b3VyIiwiYXVkIjoiZmxhc2stdG91ci1hcGkifQ."
               "gNAQKkX3KYRyEKE15fOQLh7C8ej2bTSahSbt5OWQKU4")


def test_tokens_from_a_standard_library_are_accepted():
    assert jwt_decode(PYJWT_TOKEN, KEY, ISSUER, AUDIENCE) == {
        "sub": "1", "exp": 4102444800, "iss": "flask-tour", "aud": "flask-tour-api"}


def test_a_standard_library_accepts_our_tokens(client):
    jwt = pytest.importorskip("jwt")  # PyJWT: not a dependency; skipped unless installed
    token = api_headers(client)["Authorization"].split()[1]
    claims = jwt.decode(token, JWT_TEST_KEY, algorithms=["HS256"], audience=AUDIENCE,
                        issuer=ISSUER, options={"require": ["exp", "iss", "aud", "sub"]})
    assert claims["sub"] == "1"
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, JWT_TEST_KEY, algorithms=["HS256"], audience="another-api")


def test_tokens_carry_and_require_the_configured_issuer_and_audience(app, client):
    headers = api_headers(client)
    app.config["JWT_AUDIENCE"] = "another-api"  # a token for flask-tour-api is not for this one
    assert_invalid_token(client, headers["Authorization"].split()[1])
    app.config["JWT_ISSUER"] = "another-issuer"
    assert client.get("/api/me", headers=api_headers(client)).status_code == 200
    assert jwt_decode(api_headers(client)["Authorization"].split()[1], KEY, "another-issuer",
                      "another-api")["iss"] == "another-issuer"


@pytest.mark.parametrize("header, claims", [
    ({"alg": "HS256"}, {}), ({"alg": "HS256", "typ": "JWT"}, {"aud": ["another-api", AUDIENCE]}),
], ids=["no typ", "aud array naming us"])
def test_jwt_without_typ_or_with_an_audience_array_naming_us_is_accepted(token_client, header,
                                                                         claims):
    token = forge(header, valid_claims(**claims))
    assert token_client.get("/api/me", headers=bearer(token)).status_code == 200


def test_missing_token_is_401_with_bare_bearer_challenge(client):
    for headers in ({}, {"Authorization": "Basic YTpi"}, {"Authorization": "Bearer"}):
        response = client.get("/api/me", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


# --- 11.2: attacks and faults ------------------------------------------------

# RFC 7515, Appendix A.1: the example HS256 JWS, and the "k" of its JWK (the HMAC key).
RFC7515_A1_TOKEN = (
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")

RFC7515_A1_KEY = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"


def test_jwt_rfc7515_a1_vector_signature_is_reproduced_and_token_is_expired():
    header, payload, signature = RFC7515_A1_TOKEN.split(".")
    key = tour.b64url_decode(RFC7515_A1_KEY)
    assert tour.b64url_decode(header) == b'{"typ":"JWT",\r\n "alg":"HS256"}'
    assert tour.b64url_encode(tour.hs256(key, f"{header}.{payload}")) == signature
    with pytest.raises(InvalidToken, match="expired"):
        jwt_decode(RFC7515_A1_TOKEN, key, "joe", AUDIENCE)
    # At the RFC's own time, the signature and times pass; the token names no audience.
    with pytest.raises(InvalidToken, match="'aud'"):
        jwt_decode(RFC7515_A1_TOKEN, key, "joe", AUDIENCE, now=1300819380 - 60)


@pytest.mark.parametrize("jti", [None, "", 0, ["a"]], ids=["no jti", "empty", "a number", "a list"])
def test_a_token_without_a_jti_string_is_refused_so_logout_can_revoke_every_token(
        token_client, app, jti):
    token = forge(HS256, valid_claims(jti=jti))  # signed with our key, as a leaked key would
    assert "'jti' is required" in assert_invalid_token(token_client, token).json["detail"]
    assert token_client.post("/api/logout", headers=bearer(token)).status_code == 401
    assert count_rows(app, "revoked_tokens") == 0  # no "None" revoked for every such token
    assert token_client.get("/api/me", headers=bearer(forge(HS256, valid_claims()))
                            ).status_code == 200


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_jwt_alg_none_is_rejected(token_client, alg, signed):
    token = forge({"alg": alg, "typ": "JWT"}, valid_claims())
    assert_invalid_token(token_client, token if signed else token.rsplit(".", 1)[0] + ".")


@pytest.mark.parametrize("header", [
    {"alg": "HS512"}, {"alg": "HS384"}, {"alg": "RS256"}, {"alg": "ES256"}, {"alg": "PS256"},
    {"alg": "EdDSA"}, {"alg": "hs256"}, {"alg": "HS256 "}, {"alg": ["HS256"]}, {"alg": None},
    {"typ": "JWT"},
], ids=repr)
def test_jwt_alg_other_than_hs256_is_rejected(token_client, header):
    assert_invalid_token(token_client, forge(header, valid_claims()))


@pytest.mark.parametrize("name, value", [
    ("kid", "key-1"), ("kid", "../../../../dev/null"), ("kid", "' OR 1=1 --"),
    ("jku", "https://evil.example/jwks.json"), ("x5u", "https://evil.example/cert.pem"),
    ("jwk", {"kty": "oct", "k": tour.b64url_encode(KEY)}), ("x5c", ["MIIBIjANBgkqhkiG9w0B"]),
    ("x5t", "dGh1bWJwcmludA"), ("crit", ["exp"]),
])
def test_jwt_key_selection_header_is_rejected_never_followed(token_client, monkeypatch, name, value):
    def no_network(*args, **kwargs):
        raise AssertionError("the verifier tried to fetch a key")
    monkeypatch.setattr(socket, "create_connection", no_network)
    assert_invalid_token(token_client, forge({**HS256, name: value}, valid_claims()))


@pytest.mark.parametrize("key", [b"another-key-that-is-long-enough-0123456789", TEST_SECRET.encode(),
                                 b"", KEY + b"x"], ids=["other", "session secret", "empty", "longer"])
def test_jwt_signed_with_another_key_is_rejected(token_client, key):
    assert_invalid_token(token_client, forge(HS256, valid_claims(), key))


def test_jwt_with_one_character_changed_anywhere_is_rejected(token_client):
    token = forge(HS256, valid_claims())
    for position, char in enumerate(token):
        variants = {chr(ord(char) ^ 1)}
        if char in BASE64URL_ALPHABET:
            # flips the lowest of the six bits; in the last character those bits are unused
            variants.add(BASE64URL_ALPHABET[BASE64URL_ALPHABET.index(char) ^ 1])
        for variant in variants:
            assert_invalid_token(token_client, token[:position] + variant + token[position + 1:])


def malformed_tokens():
    header, payload, signature = forge(HS256, valid_claims()).split(".")
    last = BASE64URL_ALPHABET[BASE64URL_ALPHABET.index(signature[-1]) ^ 1]
    return {
        "two segments": f"{header}.{payload}",
        "four segments": f"{header}.{payload}.{signature}.{signature}",
        "empty": "..",
        "padded header": f"{header}=.{payload}.{signature}",
        "padded payload": f"{header}.{payload}==.{signature}",
        "padded signature": f"{header}.{payload}.{signature}=",
        "standard alphabet": f"{header}.{payload}.{signature[:-2]}+/",
        "asterisk": f"{header}.{payload}*.{signature}",
        "space inside": f"{header}. {payload}.{signature}",
        "non-ASCII payload": f"{header}.{payload}\u00e9.{signature}",
        "non-ASCII header": f"\u00e9{header}.{payload}.{signature}",
        "one character too many": f"{header}.{payload}.{signature}A",
        "unused bits set": f"{header}.{payload}.{signature[:-1]}{last}",
    }


@pytest.mark.parametrize("name", list(malformed_tokens()))
def test_jwt_malformed_segments_are_rejected(token_client, name):
    assert_invalid_token(token_client, malformed_tokens()[name])


@pytest.mark.parametrize("part", ["header", "payload"])
@pytest.mark.parametrize("text", ["[]", '["HS256"]', '"HS256"', "null", "42", "true", "not json"])
def test_jwt_header_or_payload_that_is_not_a_json_object_is_rejected(token_client, part, text):
    header, payload = json.dumps(HS256), json.dumps(valid_claims())
    token = raw_token(text, payload) if part == "header" else raw_token(header, text)
    assert_invalid_token(token_client, token)


def test_jwt_duplicate_members_are_rejected(token_client):
    payload = json.dumps(valid_claims())
    assert_invalid_token(token_client, raw_token('{"alg": "none", "alg": "HS256"}', payload))
    assert_invalid_token(token_client, raw_token(json.dumps(HS256),
                                                 '{"sub": "2", ' + payload[1:]))


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["{now}", True, False, None, [], {}, "NaN", "Infinity"])
def test_jwt_time_claim_that_is_not_a_number_is_rejected(token_client, claim, value):
    if value in ("NaN", "Infinity"):  # JSON extensions Python's parser would accept
        payload = json.dumps({**valid_claims(), claim: 0}).replace(f'"{claim}": 0',
                                                                  f'"{claim}": {value}')
        token = raw_token(json.dumps(HS256), payload)
    else:
        value = str(int(time.time())) if value == "{now}" else value
        token = forge(HS256, {**valid_claims(), claim: value})
    assert "must be a number" in assert_invalid_token(token_client, token).json["detail"]


@pytest.mark.parametrize("changes, accepted", [
    ({"exp": -tour.CLOCK_LEEWAY - 10}, False),
    ({"exp": -3600}, False),
    ({"exp": -tour.CLOCK_LEEWAY + 10}, True),
    ({"nbf": tour.CLOCK_LEEWAY + 10}, False),
    ({"nbf": tour.CLOCK_LEEWAY - 10}, True),
    ({"iat": tour.CLOCK_LEEWAY + 10}, False),
    ({"iat": tour.CLOCK_LEEWAY - 10}, True),
    ({"exp": None}, False),
], ids=["expired just past the leeway", "expired an hour ago", "expired within the leeway",
        "nbf in the future", "nbf within the leeway", "iat in the future", "iat within the leeway",
        "no exp"])
def test_jwt_expired_or_not_yet_valid_is_rejected_with_a_small_documented_leeway(
        token_client, changes, accepted):
    now = int(time.time())
    claims = valid_claims(**{name: None if offset is None else now + offset
                             for name, offset in changes.items()})
    if accepted:
        assert token_client.get("/api/me", headers=bearer(forge(HS256, claims))).status_code == 200
    else:
        assert_invalid_token(token_client, forge(HS256, claims))
    assert tour.CLOCK_LEEWAY <= 60


@pytest.mark.parametrize("size", [tour.MAX_TOKEN_LENGTH, 1_000_000])
def test_jwt_absurdly_long_token_is_rejected_before_decoding_anything(token_client, monkeypatch,
                                                                      size):
    token = forge(HS256, valid_claims(pad="x" * size))
    decoded = []
    monkeypatch.setattr(tour, "b64url_decode", lambda text: decoded.append(text))
    assert "too long" in assert_invalid_token(token_client, token).json["detail"]
    assert decoded == []


@pytest.mark.parametrize("sub", ["999", "0", "-1", "99999999999999999999", "1.0", " 1", "1 ", "",
                                 "\u00b2", "\u0661", "alice", 1, 1.0, True, ["1"], None])
def test_jwt_sub_that_is_not_an_existing_users_id_is_rejected(token_client, sub):
    assert_invalid_token(token_client, forge(HS256, valid_claims(sub=sub)))


def test_jwt_of_a_deleted_user_is_rejected(client, app):
    headers = api_headers(client)
    with app.app_context():
        User.find("alice").delete()
    assert_invalid_token(client, headers["Authorization"].split()[1])


def test_a_token_never_authenticates_a_later_account_with_the_same_id(client, app, runner):
    tokens = {name: api_headers(client, name) for name in ("alice", "bob", "carol")}
    with app.app_context():
        User.find("carol").delete()
    api_headers(client, "mallory")  # gets carol's id, 3
    assert client.get("/api/me", headers=tokens["carol"]).status_code == 401
    client.post("/api/logout", headers=tokens["bob"])
    runner.invoke(args=["init-db"])  # empties revoked_tokens too
    api_headers(client, "eve")
    api_headers(client, "dave")
    for name in ("alice", "bob"):
        response = client.get("/api/me", headers=tokens[name])
        assert response.status_code == 401, name
        assert response.headers["WWW-Authenticate"] == INVALID_TOKEN_CHALLENGE


def test_api_answers_with_the_callers_data_are_never_stored_by_a_cache(client):
    headers = api_headers(client)
    created = client.post("/api/notes", json={"title": "private"}, headers=headers)
    responses = [created, client.get("/api/me", headers=headers),
                 client.get("/api/notes", headers=headers),
                 client.patch("/api/notes/1", json={"body": "x"}, headers=headers),
                 client.get("/api/notes/1", headers=headers)]
    for response in responses:
        assert response.status_code < 300 and response.headers["Cache-Control"] == "no-store"


def test_logging_out_of_the_pages_ends_the_accounts_tokens(client, logged_in):
    headers = api_headers(client)
    assert client.get("/api/me", headers=headers).status_code == 200
    logged_in.logout()
    assert client.get("/api/me", headers=headers).status_code == 401
    assert client.get("/api/me", headers=api_headers(client)).status_code == 200


def test_jwt_survives_a_restart_and_dies_with_a_key_change(clean_environment, tmp_path):
    def start(instance, **settings):
        return create_app({"DATABASE": str(tmp_path / "db.sqlite"), **settings},
                          instance_path=str(tmp_path / instance)).test_client()

    generated = api_headers(start("i"))  # key generated into the instance folder
    configured = api_headers(start("i", JWT_SECRET_KEY=JWT_TEST_KEY), "bob")
    assert start("i").get("/api/me", headers=generated).status_code == 200
    assert start("i", JWT_SECRET_KEY=JWT_TEST_KEY).get("/api/me", headers=configured).status_code == 200
    (tmp_path / "i" / "secret_key").unlink()  # a new key on the next start
    assert_invalid_token(start("i"), generated["Authorization"].split()[1])
    rotated = start("i", JWT_SECRET_KEY=JWT_TEST_KEY[::-1])
    assert_invalid_token(rotated, configured["Authorization"].split()[1])


def test_session_cookie_alone_gets_401_on_the_api(client, logged_in):
    assert "Signed in as" in client.get("/").get_data(as_text=True)
    with client:
        client.get("/api/hello")
        assert flask.g.user is None  # the cookie was not even read
    for method, url in [("GET", "/api/me"), ("GET", "/api/notes"), ("POST", "/api/notes"),
                        ("POST", "/api/logout"), ("DELETE", "/api/notes/1")]:
        response = client.open(url, method=method, json={"title": "x"})
        assert response.status_code == 401, url
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert count_rows(client.application, "notes") == 0


@pytest.mark.parametrize("changes", [
    {"aud": "another-api"}, {"aud": ["another-api"]}, {"aud": None}, {"aud": ""},
    {"aud": [["flask-tour-api"]]}, {"aud": {"flask-tour-api": True}},
    {"iss": "https://evil.example"}, {"iss": None}, {"iss": ["flask-tour"]}, {"iss": "Flask-Tour"},
    {"sub": "0001"}, {"sub": "01"}, {"sub": "0"},
], ids=repr)
def test_jwt_meant_for_another_api_issuer_or_spelling_of_the_user_is_rejected(token_client,
                                                                            changes):
    assert_invalid_token(token_client, forge(HS256, valid_claims(**changes)))


@pytest.mark.parametrize("typ", ["at+jwt", "JWS", "jwt+at", "", None, 1, ["JWT"]])
def test_jwt_of_another_type_is_rejected(token_client, typ):
    response = assert_invalid_token(token_client, forge({**HS256, "typ": typ}, valid_claims()))
    assert "typ" in response.json["detail"]


# Hostile JSON texts for every header and claim field: every JSON type, numbers beyond any
# float or date, NaN and Infinity, lone surrogates, and nesting deep enough to exhaust the
# parser's stack (arrays: 1000 levels fit under MAX_TOKEN_LENGTH, objects only 400).
HOSTILE_JSON = [
    "null", "true", "false", "0", "-1", "1.5", "-0.0", "1e308", "1e400", "-1e400", "NaN",
    "Infinity", "-Infinity", str(10**400), str(-10**400), str(2**53 + 1), str(2**63), "1E999",
    '""', '"x"', '"0001"', '"1"', '"\\ud800"', '"\\u0000"', '"HS256"', '"JWT"', '"flask-tour"',
    '"flask-tour-api"', "[]", "{}", '["flask-tour-api"]', '[null]', '{"a": 1}', '{"": {}}',
    "[" * 1000 + "]" * 1000, "[" * 10 + str(10**400) + "]" * 10, '{"a":' * 400 + "1" + "}" * 400,
]
HEADER_FIELDS = ["alg", "typ", "cty", "zip", "kid", "crit", "b64"]
CLAIM_FIELDS = ["iss", "aud", "sub", "sid", "exp", "nbf", "iat", "jti", "scope"]


def json_with(members, name, raw):
    """The JSON text of the object `members` with member `name` set to the JSON text `raw`."""
    pairs = [f"{json.dumps(key)}: {json.dumps(value)}" for key, value in members.items()
             if key != name]
    return "{" + ", ".join([*pairs, f"{json.dumps(name)}: {raw}"]) + "}"


def fuzzed_tokens():
    """Tokens with a hostile value in each header and claim field, and hostile whole segments."""
    header, claims = json.dumps(HS256), json.dumps(valid_claims())
    for raw in HOSTILE_JSON:
        yield raw_token(raw, claims)
        yield raw_token(header, raw)
        for name in HEADER_FIELDS:
            yield raw_token(json_with(HS256, name, raw), claims)
        for name in CLAIM_FIELDS:
            yield raw_token(header, json_with(valid_claims(), name, raw))


def test_the_decoder_fuzzed_raises_only_invalid_token_or_returns_valid_claims():
    count = 0
    for token in fuzzed_tokens():
        try:
            claims = jwt_decode(token, KEY, ISSUER, AUDIENCE)
        except InvalidToken:
            continue
        finally:
            count += 1
        assert claims["iss"] == ISSUER and tour.is_numeric_date(claims["exp"]), token
        assert claims["exp"] > time.time() - tour.CLOCK_LEEWAY, token
    assert count > 500
    # Deeper than any token may be: the parser's stack, not the length limit, is what stops it.
    for text in ("[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000):
        with pytest.raises(InvalidToken, match="nested too deeply"):
            tour.json_object(tour.b64url_encode(text.encode()))


def test_the_api_answers_every_fuzzed_token_with_200_or_the_401_challenge(token_client):
    for token in fuzzed_tokens():
        response = token_client.get("/api/me", headers=bearer(token))
        assert response.status_code in (200, 401), token
        if response.status_code == 401:
            assert response.headers["WWW-Authenticate"] == INVALID_TOKEN_CHALLENGE


@pytest.mark.parametrize("method, url", [("GET", "/api/me"), ("POST", "/api/logout")])
@pytest.mark.parametrize("field, raw", [
    ("header", "[" * 1000 + "]" * 1000),  # 2,715 characters as a token, under MAX_TOKEN_LENGTH
    ("sub", "[" * 1000 + "]" * 1000), ("exp", str(10**400)), ("iat", str(10**400)),
    ("nbf", str(10**400)), ("exp", str(-10**400)),
], ids=["nested header", "nested claim", "exp 10**400", "iat 10**400", "nbf 10**400",
        "exp -10**400"])
def test_tokens_that_crashed_the_verifier_are_401_with_the_challenge(token_client, method, url,
                                                                     field, raw):
    claims = json.dumps(valid_claims())
    if field == "header":
        token = raw_token(raw, claims)
    else:
        token = raw_token(json.dumps(HS256), json_with(valid_claims(), field, raw))
    response = token_client.open(url, method=method, headers=bearer(token))
    assert response.status_code == 401 and response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == INVALID_TOKEN_CHALLENGE


# --- 11.3 The API's account endpoints ----------------------------------------


def test_duplicate_username_is_409_on_the_api(client):
    client.post("/api/users", json={"username": "Alice", "password": PASSWORD})
    response = client.post("/api/users", json={"username": "aLiCe", "password": PASSWORD})
    assert response.status_code == 409 and response.mimetype == "application/problem+json"


def test_token_endpoint_and_me(client):
    client.post("/api/users", json={"username": "alice", "password": PASSWORD})
    response = client.post("/api/token", json={"username": "alice", "password": PASSWORD})
    body = response.json
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert response.headers["Cache-Control"] == "no-store"
    claims = jwt_decode(body["access_token"], KEY, ISSUER, AUDIENCE)
    assert set(claims) == {"iss", "aud", "sub", "sid", "iat", "exp", "jti"}
    assert claims["exp"] - claims["iat"] == 900
    assert (claims["iss"], claims["aud"]) == ("flask-tour", "flask-tour-api")
    me = client.get("/api/me", headers={"Authorization": "Bearer " + body["access_token"]})
    assert me.json["username"] == "alice" and "password_hash" not in me.json


def test_wrong_credentials_on_the_token_endpoint_carry_a_challenge(client):
    response = client.post("/api/token", json={"username": "nobody", "password": PASSWORD})
    assert response.status_code == 401 and response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_api_logout_revokes_the_token_in_every_worker(client, app):
    headers = api_headers(client)
    assert client.post("/api/logout", headers=headers).status_code == 204
    for worker in (client, another_worker(app).test_client()):
        response = worker.get("/api/me", headers=headers)
        assert response.status_code == 401 and "revoked" in response.json["detail"]
    assert client.get("/api/me", headers=api_headers(client)).status_code == 200


def test_api_logout_cleans_up_expired_revocations(client, app):
    now = int(time.time())
    with app.app_context():
        db = tour.get_db()
        db.execute("INSERT INTO revoked_tokens VALUES ('old', ?)", (now - tour.CLOCK_LEEWAY - 2,))
        # Expired, but still inside the clock leeway the verifier allows: it must stay revoked.
        db.execute("INSERT INTO revoked_tokens VALUES ('recent', ?)", (now - 1,))
        db.commit()
    assert client.post("/api/logout", headers=api_headers(client)).status_code == 204
    with app.app_context():
        jtis = {row[0] for row in tour.get_db().execute("SELECT jti FROM revoked_tokens")}
    assert "old" not in jtis and "recent" in jtis and len(jtis) == 2


def test_a_revoked_token_stays_revoked_while_the_clock_leeway_would_accept_it(app, clock):
    app.config["JWT_ACCESS_TOKEN_EXPIRES"] = 5
    client, other = app.test_client(), app.test_client()
    revoked = api_headers(client)
    assert client.post("/api/logout", headers=revoked).status_code == 204
    clock.now += 7  # expired, but within the 30 seconds of leeway
    assert client.post("/api/logout", headers=api_headers(other, "bob")).status_code == 204
    assert client.get("/api/me", headers=revoked).status_code == 401


# --- 11.3: attacks and faults ------------------------------------------------


@pytest.mark.parametrize("password, status", [("1234567", 422), ("12345678", 201)])
def test_short_passwords_are_refused(client, password, status):
    response = client.post("/api/users", json={"username": "bob", "password": password})
    assert response.status_code == status


# ---------------------------------------------------------------------------
# 3. URL parameters & query strings
# ---------------------------------------------------------------------------


def test_user_greeting_escapes_the_name(client):
    page = client.get("/user/<img src=x onerror=alert(1)>").get_data(as_text=True)
    assert "Hello, <bdi>&lt;img src=x onerror=alert(1)&gt;</bdi>" in page
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
    return re.findall(r'<li><a href="/notes/\d+/edit"><bdi>([^<]*)</bdi></a>', html)


def test_search_matches_title_and_body_case_insensitively(client, searchable):
    assert set(search_titles(client, "flask")) == {"Flask routing", "Jinja"}


@pytest.mark.parametrize("query, expected", [("%25", ["100% sure"]), ("_", ["snake_case"]),
                                             ("e_c", ["snake_case"]), ("0%25+s", ["100% sure"])])
def test_search_treats_wildcards_literally(client, searchable, query, expected):
    assert search_titles(client, query) == expected


def test_overlong_search_is_a_message_on_the_page_and_422_on_the_api(client, searchable):
    page = client.get("/search", query_string={"q": "a" * 50_001})
    assert page.status_code == 200 and "Must be at most 200 characters." in page.text
    assert 'aria-describedby="q-error"' in page.text and "match" not in page.text
    api = client.get("/api/notes", query_string={"q": "a" * 201}, headers=api_headers(client))
    assert api.status_code == 422 and api.json["errors"] == {"q": "Must be at most 200 characters."}


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
    assert 'aria-describedby="%s-hint %s-error"' % (field, field) in html  # its rule, then what failed
    if username:
        assert 'value="%s"' % username.replace("<", "&lt;").replace(">", "&gt;") in html
    assert password not in html.replace('name="password"', "") or not password
    assert count_rows(app, "users") == 0


def test_register_form_states_its_rules_before_the_first_try(client):
    html = client.get("/register").get_data(as_text=True)
    username, password = tour.USER_FIELDS["username"], tour.USER_FIELDS["password"]
    rules = {"username": f"{username.min_length} to {username.max_length} characters: letters, "
                         "digits, &#39;.&#39;, &#39;_&#39; or &#39;-&#39;.",
             "password": f"{password.min_length} characters or more."}
    for field, rule in rules.items():
        assert f'<p class="field-hint" id="{field}-hint">{rule}</p>' in html
        assert re.search(rf'<input id="{field}"[^>]* aria-describedby="{field}-hint"', html)
    assert re.fullmatch(username.pattern, "a.b_c-9") and not re.fullmatch(username.pattern, "a b")
    assert "field-hint" not in client.get("/login").get_data(as_text=True)  # no rules to log in


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
    html = client.post("/notes", data={"title": "", "body": "keep me", "csrf_token": token}
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


# --- 5: attacks and faults ---------------------------------------------------


def test_the_notes_form_says_when_the_quota_is_reached_and_keeps_the_text(app, client, logged_in):
    app.config["NOTES_PER_USER"] = 2
    token = logged_in.token("/notes")
    for title in ("first", "second"):
        assert client.post("/notes", data={"title": title, "csrf_token": token}).status_code == 302
    full = client.post("/notes", data={"title": "third", "body": "typed with care",
                                       "csrf_token": token})
    assert full.status_code == 403 and full.mimetype == "text/html"
    assert "You have 2 notes, the most an account may keep." in full.text
    assert 'value="third"' in full.text and "typed with care" in full.text
    assert count_rows(app, "notes") == 2


def test_saving_notes_too_fast_in_the_form_is_429(app, client, logged_in, clock):
    app.config["NOTE_WRITES_PER_MINUTE"] = 1
    token = logged_in.token("/notes")
    assert client.post("/notes", data={"title": "first", "csrf_token": token}).status_code == 302
    too_fast = client.post("/notes/1/edit", data={"title": "edited", "csrf_token": token})
    assert too_fast.status_code == 429 and too_fast.mimetype == "text/html"
    assert "Retry-After" in too_fast.headers and "saving notes too fast" in too_fast.text
    clock.now += 60
    assert client.post("/notes/1/edit", data={"title": "edited", "csrf_token": token}
                       ).status_code == 302


def csrf_attempts():
    """Ways an attacker's request can carry a CSRF token, each as (form field, header)."""
    def before_logout(auth):
        token = auth.token("/notes")
        auth.logout()
        auth.login()
        return token, None
    return {
        "missing": lambda auth: (None, None),
        "empty": lambda auth: ("", None),
        "wrong": lambda auth: ("wrong-token", None),
        "wrong in the header": lambda auth: (None, "wrong-token"),
        "another session's": lambda auth: (AuthActions(auth.client.application.test_client())
                                           .token(), None),
        "from before logout": before_logout,
    }

CSRF_TARGETS = [
    ("POST", "/notes", {"title": "forged"}),
    ("POST", "/notes/1/edit", {"title": "forged"}),
    ("POST", "/notes/1/delete", {}),
    ("POST", "/logout", {}),
    ("POST", "/register", {"username": "eve", "password": PASSWORD}),
    ("POST", "/login", {"username": "alice", "password": PASSWORD}),
]


@pytest.mark.parametrize("method, url, data", CSRF_TARGETS,
                         ids=[f"{method} {url}" for method, url, _ in CSRF_TARGETS])
@pytest.mark.parametrize("attempt", list(csrf_attempts()))
def test_cross_site_request_forgery_is_400_and_writes_nothing(client, logged_in, app, method, url,
                                                              data, attempt):
    client.post("/notes", data={"title": "mine", "body": "", "csrf_token": logged_in.token()})
    field, header = csrf_attempts()[attempt](logged_in)
    before = database_snapshot(app)
    response = client.open(url, method=method, headers={"X-CSRFToken": header} if header else {},
                           data={**data, **({"csrf_token": field} if field is not None else {})})
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "CSRF token" in response.get_data(as_text=True)
    assert database_snapshot(app) == before
    assert "Signed in as <strong>alice</strong>" in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("method, url, status", [
    ("POST", "/no-such-page", 404), ("DELETE", "/notes/1/delete", 405),
    ("PUT", "/notes/1/edit", 405), ("POST", "/topics/99/x", 404)])
def test_an_unsafe_request_to_no_route_is_its_404_or_405_not_a_csrf_400(client, logged_in, app,
                                                                         method, url, status):
    client.post("/notes", data={"title": "mine", "csrf_token": logged_in.token()})
    before = database_snapshot(app)
    response = client.open(url, method=method, data={"title": "forged"})  # no CSRF token
    assert response.status_code == status and "CSRF" not in response.get_data(as_text=True)
    assert database_snapshot(app) == before


def test_deleting_a_note_asks_first_without_javascript(client, logged_in, app):
    client.post("/notes", data={"title": "keep <me>?", "csrf_token": logged_in.token()})
    notes_page = client.get("/notes").get_data(as_text=True)
    assert 'href="/notes/1/delete"' in notes_page and "<form" not in notes_page.split("<h2>")[1]
    confirm = client.get("/notes/1/delete")  # the link only asks
    html = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and count_rows(app, "notes") == 1
    assert "Delete this note?" in html and "keep &lt;me&gt;?" in html
    assert 'method="post" action="/notes/1/delete"' in html and 'href="/notes">Cancel' in html
    response = client.post("/notes/1/delete", data={"csrf_token": csrf_from(confirm)})
    assert response.headers["Location"] == "/notes" and count_rows(app, "notes") == 0
    assert client.get("/notes/1/delete").status_code == 404


def test_a_malformed_origin_is_a_cross_site_400_not_a_500(client, logged_in, app):
    token = logged_in.token("/notes")
    for headers, base in (({"Origin": "http://[::1"}, "http://localhost"),
                          ({"Referer": "https://[::1/x"}, "https://localhost")):
        response = client.post("/notes", data={"title": "x", "csrf_token": token},
                               headers=headers, base_url=base)
        assert response.status_code == 400 and count_rows(app, "notes") == 0


@pytest.mark.parametrize("scheme, headers, accepted", [
    ("http", {"Origin": "https://evil.example"}, False),
    ("http", {"Origin": "null"}, False),
    ("http", {"Origin": "http://localhost.evil.example"}, False),
    ("https", {"Referer": "https://evil.example/form"}, False),
    ("https", {"Origin": "http://localhost"}, False),  # the same host, but not over HTTPS
    ("https", {}, False),  # over HTTPS, a browser always says where a form came from
    ("http", {"Origin": "http://localhost"}, True),
    ("http", {"Referer": "https://evil.example/"}, True),  # plain HTTP: only Origin is trusted
    ("http", {}, True),
    ("https", {"Referer": "https://localhost/notes"}, True),
    ("https", {"Origin": "https://localhost", "Referer": "https://evil.example/"}, True),
], ids=repr)
def test_a_valid_token_sent_from_another_site_is_400(client, logged_in, app, scheme, headers,
                                                      accepted):
    token = logged_in.token("/notes")
    response = client.post("/notes", data={"title": "forged?", "csrf_token": token},
                           headers=headers, base_url=f"{scheme}://localhost")
    assert response.status_code == (302 if accepted else 400)
    assert count_rows(app, "notes") == (1 if accepted else 0)
    if not accepted:
        assert response.mimetype == "text/html" and "another site" in response.get_data(as_text=True)


@pytest.mark.parametrize("username", ["x" * 200_000, " alice", "alice ", "alice\u3000", "al"],
                         ids=["200,000 characters", "leading space", "trailing space",
                              "ideographic space", "too short"])
def test_the_login_form_applies_the_same_field_rules_as_the_api(client, auth, app, username):
    auth.register()
    auth.logout()
    assert auth.login(username).status_code == 200  # refused, as the API refuses it
    assert client.post("/api/token", json={"username": username, "password": PASSWORD}
                       ).status_code == 422
    assert count_rows(app, "login_failures") == 0  # nothing stored, however long
    assert signed_in_as(client) is None


def test_csrf_token_in_the_x_csrftoken_header_is_accepted(client, logged_in, app):
    token = logged_in.token("/notes")
    response = client.post("/notes", data={"title": "via header"}, headers={"X-CSRFToken": token})
    assert response.status_code == 302 and count_rows(app, "notes") == 1


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
    biggest = client.get(f"/api/notes?per_page={tour.API_MAX_PAGE_SIZE}", headers=headers).json
    assert biggest["per_page"] == tour.API_MAX_PAGE_SIZE
    found = client.get("/api/notes?q=EVEN", headers=headers).json
    assert found["total"] == 13


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


# --- 6: attacks and faults ---------------------------------------------------


def test_an_account_keeps_at_most_notes_per_user_notes(app, client):
    app.config["NOTES_PER_USER"] = 3
    headers = api_headers(client)
    ids = [client.post("/api/notes", json={"title": f"note {n}"}, headers=headers).json["id"]
           for n in range(3)]
    refused = client.post("/api/notes", json={"title": "one too many"}, headers=headers)
    assert refused.status_code == 403 and refused.mimetype == "application/problem+json"
    assert refused.json["detail"] == ("You have 3 notes, the most an account may keep. "
                                      "Delete some to make room for new ones.")
    assert count_rows(app, "notes") == 3
    assert client.patch(f"/api/notes/{ids[0]}", json={"body": "changed"}, headers=headers
                        ).status_code == 200  # changing a note needs no room
    assert client.delete(f"/api/notes/{ids[0]}", headers=headers).status_code == 204
    assert client.post("/api/notes", json={"title": "room again"}, headers=headers
                       ).status_code == 201
    assert client.post("/api/notes", json={"title": "bob's first"},
                       headers=api_headers(client, "bob")).status_code == 201
    create = client.get("/api/openapi.json").json["paths"]["/api/notes"]["post"]
    assert {"403", "429"} <= set(create["responses"])
    assert "at most 3 notes" in create["description"]


def test_parallel_creates_cannot_overshoot_the_quota(app, client):
    app.config["NOTES_PER_USER"] = 5
    headers, writers = api_headers(client), 16
    start = threading.Barrier(writers)

    def create(number):
        start.wait(timeout=10)
        return app.test_client().post("/api/notes", json={"title": f"note {number}"},
                                      headers=headers).status_code
    with ThreadPoolExecutor(writers) as pool:
        statuses = list(pool.map(create, range(writers)))
    assert sorted(statuses) == [201] * 5 + [403] * (writers - 5)
    assert count_rows(app, "notes") == 5


def test_note_writes_per_account_are_rate_limited(app, client, clock):
    app.config["NOTE_WRITES_PER_MINUTE"] = 3
    headers = api_headers(client)
    url = client.post("/api/notes", json={"title": "one"}, headers=headers).headers["Location"]
    assert client.patch(url, json={"body": "two"}, headers=headers).status_code == 200
    assert client.put(url, json={"title": "three"}, headers=headers).status_code == 200
    too_fast = client.post("/api/notes", json={"title": "four"}, headers=headers)
    assert too_fast.status_code == 429 and too_fast.mimetype == "application/problem+json"
    assert 0 < int(too_fast.headers["Retry-After"]) <= 60
    assert too_fast.json["detail"].startswith("You are saving notes too fast. Try again in")
    assert client.patch(url, json={"body": "five"}, headers=headers).status_code == 429
    assert client.post("/api/notes", json={"title": "x" * 201}, headers=headers
                       ).status_code == 422  # refused before it counts
    assert client.post("/api/notes", json={"title": "bob's"}, headers=api_headers(client, "bob")
                       ).status_code == 201
    assert client.delete(url, headers=headers).status_code == 204  # deleting makes room: free
    assert count_rows(app, "notes") == 1
    clock.now += 60
    assert client.post("/api/notes", json={"title": "a minute later"}, headers=headers
                       ).status_code == 201


@pytest.mark.parametrize("note_id", ["0", "-1", "99999999999999999999", "9223372036854775808",
                                     "abc", "1.5"])
def test_impossible_note_ids_are_404(client, logged_in, note_id):
    headers = api_headers(client, "bob")
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        response = client.open(f"/api/notes/{note_id}", method=method, json={"title": "x"},
                               headers=headers)
        assert response.status_code == 404 and response.mimetype == "application/problem+json"
    token = logged_in.token("/notes")
    assert client.get(f"/notes/{note_id}/edit").status_code == 404
    assert client.post(f"/notes/{note_id}/delete", data={"csrf_token": token}).status_code == 404


@pytest.mark.parametrize("method", ["PROPFIND", "FOO", "BREW", "TRACE", "CONNECT"])
@pytest.mark.parametrize("url, allow", [("/api/notes", "GET, HEAD, OPTIONS, POST"),
                                        ("/api/notes/1", "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"),
                                        ("/api/hello", "GET, HEAD, OPTIONS"),
                                        ("/", "GET, HEAD, OPTIONS"),
                                        ("/notes", "GET, HEAD, OPTIONS, POST"),
                                        ("/logout", "OPTIONS, POST"),
                                        ("/static/style.css", "GET, HEAD, OPTIONS")])
def test_unknown_http_methods_are_405_with_allow(client, method, url, allow):
    response = client.open(url, method=method)
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == set(allow.split(", "))
    expected = "application/problem+json" if url.startswith("/api/") else "text/html"
    assert response.mimetype == expected

HOSTILE_VALUES = [None, True, 0, -1, 2**64, 1e308, "", " ", "x" * 20_000, "\u0000", "\ud800",
                  "' OR 1=1 --", "<script>alert(1)</script>", [], {}, ["x"], {"$ne": ""}]


def fuzz_requests(document):
    """(method, url, json body) for every operation, with hostile path, query and body values."""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for value in HOSTILE_VALUES:
                raw = str(value).encode("utf-8", "surrogatepass")  # URLs carry bytes
                url = re.sub(r"\{\w+\}", quote(raw, safe=""), path) + "?" + urlencode(
                    {p["name"]: raw for p in operation.get("parameters", ()) if p["in"] == "query"})
                schema_name = (operation.get("requestBody", {}).get("content", {})
                               .get("application/json", {}).get("schema", {}).get("$ref", ""))
                schema = document["components"]["schemas"].get(schema_name.rsplit("/", 1)[-1], {})
                yield method, url, {name: value for name in schema.get("properties", {})} or value


def test_fuzzing_every_api_operation_from_openapi_finds_no_500_and_no_leak(client, app):
    headers = api_headers(client)
    client.post("/api/notes", json={"title": "mine"}, headers=headers)
    document = client.get("/api/openapi.json").json
    count = 0
    for method, url, body in fuzz_requests(document):
        for auth in (headers, {}):
            response = client.open(url, method=method.upper(), json=body, headers=auth)
            text = response.get_data(as_text=True)
            assert response.status_code < 500, (method, url, body)
            assert "Traceback" not in text and JWT_TEST_KEY not in text and TEST_SECRET not in text
            count += 1
    assert count > 300


def examples(schema):
    """(value, whether `schema` allows it) at and just past each limit of a string or integer."""
    if schema.get("type") == "integer":
        low, high = schema["minimum"], schema["maximum"]
        yield from [(low, True), (high, True), (low - 1, False), (high + 1, False), ("x", False),
                    ("", False), ("null", False), (" 1", False)]
        return
    shortest, longest = schema.get("minLength", 0), schema["maxLength"]
    for text in ["a" * max(shortest, 1), "a" * longest, "a" * (longest + 1), "a" * (shortest - 1),
                 " " + "a" * max(shortest, 1), "a" * longest + " ", "\u3000" + "a" * shortest,
                 "\x1c" + "a" * (longest - 1), "a" * (longest - 1) + "\x85"]:
        pattern = schema.get("pattern", "^[\\s\\S]*$")
        yield text, shortest <= len(text) <= longest and bool(re.search(pattern, text))
    yield 1, False


def property_requests(document, note_url):
    """(operation, method, url, body, whether the document allows it): one field changed at a time."""
    schemas = document["components"]["schemas"]
    for path, operations in document["paths"].items():
        url = path.replace("/api/notes/{note_id}", note_url)
        for method, operation in operations.items():
            for parameter in operation.get("parameters", ()):
                if parameter["in"] == "query":
                    for value, valid in examples(parameter["schema"]):
                        query = urlencode({parameter["name"]: value})  # in a URL, 1 is text too
                        yield operation, method, f"{url}?{query}", None, valid or value == 1
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                schema = schemas[body["schema"]["$ref"].rsplit("/", 1)[1]]
                base = {name: "a" * max(8, field.get("minLength", 0))
                        for name, field in schema["properties"].items()}
                for name, field in schema["properties"].items():
                    for value, valid in examples(field):
                        yield operation, method, url, {**base, name: value}, valid


def test_answers_agree_with_the_openapi_document_at_every_limit(app, client):
    app.config.update(LOGIN_DELAYS=(0,), LOGIN_MAX_FAILURES=10**6)  # the throttle is not tested here
    headers = api_headers(client)
    note_url = client.post("/api/notes", json={"title": "mine"}, headers=headers).headers["Location"]
    document = client.get("/api/openapi.json").json
    checked = 0
    for operation, method, url, body, valid in property_requests(document, note_url):
        kwargs = {"json": body} if body is not None else {}
        response = client.open(url, method=method.upper(), headers=headers, **kwargs)
        assert str(response.status_code) in operation["responses"], (method, url, body)
        assert (response.status_code != 422) == valid, (method, url, body, response.json)
        if response.status_code >= 400:
            assert response.mimetype == "application/problem+json"
        checked += 1
    assert checked > 100
    for method, url in [("POST", "/api/notes"), ("POST", "/api/token"), ("PATCH", note_url)]:
        duplicate = client.open(url, method=method, headers={**headers,
                                "Content-Type": "application/json"},
                                data='{"title": "a", "title": "b"}')
        assert duplicate.status_code == 400 and "400" in document["paths"][
            url.replace(note_url, "/api/notes/{note_id}")][method.lower()]["responses"]


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
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-ID"])
    assert re.fullmatch(r"app;dur=\d+\.\d", headers["Server-Timing"])


def test_a_response_object_reused_by_a_view_gets_each_request_s_own_headers(app, client):
    shared = flask.Response("pong")
    app.add_url_rule("/ping", "ping", lambda: shared)
    client.get("/ping", headers={"X-Request-ID": "first"})
    second = client.get("/ping", headers={"X-Request-ID": "second"})
    assert second.headers.getlist("X-Request-ID") == ["second"]
    assert len(second.headers.getlist("Content-Security-Policy")) == 1


def test_a_security_header_the_view_set_itself_is_kept_not_doubled(app, client):
    app.add_url_rule("/private", "private",
                     lambda: ("ok", {"referrer-policy": "no-referrer"}))  # any case of the name
    headers = client.get("/private").headers
    assert headers.getlist("Referrer-Policy") == ["no-referrer"]
    assert headers["Content-Security-Policy"] == tour.CONTENT_SECURITY_POLICY  # the rest still added


def test_access_log_line(client, caplog):
    with caplog.at_level("INFO", logger="app"):
        response = client.get("/data", headers={"X-Request-ID": "trace-me"},
                              environ_base={"REMOTE_ADDR": "198.51.100.4"})
    assert response.status_code == 200
    assert re.search(r"198\.51\.100\.4 GET /data 200 \d+\.\dms trace-me", caplog.text)


def test_access_log_line_cannot_be_forged_through_the_path(client, caplog):
    with caplog.at_level("INFO", logger="app"):
        client.get("/user/x%0A203.0.113.9%20GET%20/admin%20200")
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()
    assert "'/user/x\\n203.0.113.9 GET /admin 200'" in caplog.text


def test_access_log_can_be_switched_off_without_losing_errors(app, client, caplog):
    app.config["ACCESS_LOG"] = False
    with caplog.at_level("INFO", logger="app"):
        assert client.get("/data").headers["X-Request-ID"]  # the hooks still run
        crash = client.get("/errors/500", headers={"X-Request-ID": "trace-me"})
    assert crash.status_code == 500
    # nginx logs the id; the app's error line carries it too, so the two can be matched.
    assert [record.getMessage() for record in caplog.records] == [
        "Unhandled exception (request trace-me)"]
    assert "It writes no access-log line here" in client.get("/hooks").text


@pytest.mark.parametrize("value", ["false", "no", 0, None])
def test_an_access_log_setting_that_is_not_a_boolean_stops_the_app(tmp_path, value):
    with pytest.raises(RuntimeError, match=r"ACCESS_LOG is .*; it must be true or false"):
        create_app({"TESTING": True, "ACCESS_LOG": value}, instance_path=str(tmp_path))


@pytest.mark.parametrize("text, value", [("false", False), ("true", True), ("False", None),
                                         ("no", None), ("0", None)])
def test_access_log_from_the_environment(clean_environment, tmp_path, text, value):
    clean_environment.setenv("FLASK_ACCESS_LOG", text)
    if value is None:  # JSON's false only: other spellings would arrive as truthy text
        with pytest.raises(RuntimeError, match="FLASK_ACCESS_LOG=false"):
            create_app({"TESTING": True}, instance_path=str(tmp_path))
    else:
        assert create_app({"TESTING": True}, instance_path=str(tmp_path)).config["ACCESS_LOG"] is value


def test_hooks_page_shows_this_request(client, logged_in):
    response = client.get("/hooks", headers={"X-Request-ID": "hook-demo"})
    page = response.get_data(as_text=True)
    assert "<code>hook-demo</code> (kept from your X-Request-ID header)" in page
    assert "It also writes one access-log line" in page
    assert "alice" in page and "Content-Security-Policy" in page
    assert "Security headers, from a second <code>after_request</code> hook" in page


# --- 12: attacks and faults --------------------------------------------------


FORGED_METHOD = "G\x1b[2J\x1b[31mFORGED\x08\x08ET"  # clears the terminal, then backspaces


def test_access_log_line_cannot_be_forged_through_the_method(client, caplog):
    with caplog.at_level("INFO", logger="app"):
        assert client.open("/data", method=FORGED_METHOD).status_code == 405
    line, = [record.getMessage() for record in caplog.records]
    assert "\x1b" not in line and "\x08" not in line
    assert f"{FORGED_METHOD.upper()!r} /data 405 " in line


def test_access_log_line_cannot_be_forged_through_a_forwarded_address(tmp_path, caplog):
    app = app_behind_proxies(tmp_path, 1)  # reached around its proxy, or the proxy passes it on
    with caplog.at_level("INFO", logger="app"):
        app.test_client().get("/data", headers={"X-Forwarded-For": "\x1b[2J203.0.113.9"})
    line, = [record.getMessage() for record in caplog.records]
    assert line.startswith("'\\x1b[2J203.0.113.9' GET /data 200 ")


def test_the_development_server_escapes_a_forged_method_in_both_its_log_lines(app, caplog):
    with serve_in_thread(app) as url, caplog.at_level("INFO"):
        with socket.create_connection(("127.0.0.1", urlsplit(url).port), timeout=10) as sock:
            sock.sendall(FORGED_METHOD.encode("latin-1") + b" /data HTTP/1.1\r\n"
                         b"Host: localhost\r\nConnection: close\r\n\r\n")
            reply = b"".join(iter(lambda: sock.recv(65536), b""))
        wait_for(lambda: any(r.name == "werkzeug" for r in caplog.records), "werkzeug's line")
    assert reply.startswith(b"HTTP/1.1 405")
    lines = {record.name: record.getMessage() for record in caplog.records}
    # Werkzeug (`flask run`) escapes the request line itself, as \xNN, then colours it.
    assert "G\\x1b[2J\\x1b[31mFORGED\\x08\\x08ET /data HTTP/1.1" in lines["werkzeug"]
    for line in (lines["werkzeug"], lines["app"]):
        assert "\x1b[2J" not in line and "\x08" not in line


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


@pytest.mark.parametrize("method, url", [
    ("GET", "/"), ("GET", "/data"), ("GET", "/api/notes"), ("GET", "/no-such-page"),
    ("GET", "/static/style.css"), ("GET", "/errors/500"), ("GET", "/errors/429"), ("GET", "/search"),
    ("POST", "/notes"), ("PROPFIND", "/"), ("HEAD", "/"), ("OPTIONS", "/api/notes"),
    ("GET", "/api/openapi.json"), ("GET", "/notes"), ("POST", "/api/notes"), ("GET", "/errors/413"),
])
def test_every_response_has_the_security_headers(client, method, url):
    headers = client.open(url, method=method).headers
    added_headers = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options",
                     "Referrer-Policy", "X-Request-ID", "Server-Timing")
    assert [len(headers.getlist(name)) for name in added_headers] == [1] * 6  # added once
    policy = dict(part.strip().split(" ", 1) for part in
                  headers["Content-Security-Policy"].split(";"))
    assert "'unsafe-inline'" not in policy.get("script-src", policy["default-src"])
    assert policy["script-src"] == "'self'" and policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'" and headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "Strict-Transport-Security" not in headers


def test_hsts_only_over_https(client):
    response = client.get("/", base_url="https://localhost")
    assert re.fullmatch(r"max-age=\d{8}; includeSubDomains",
                        response.headers["Strict-Transport-Security"])
    assert "Strict-Transport-Security" not in client.get("/").headers


def test_oversized_body_is_413(client, app):
    big = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    page = client.post("/register", data={"username": big})
    assert page.status_code == 413 and page.mimetype == "text/html"
    headers = api_headers(client)
    for url in ("/api/users", "/api/token", "/api/notes"):
        api = client.post(url, data=big, content_type="application/json", headers=headers)
        assert api.status_code == 413 and api.mimetype == "application/problem+json", url
        assert api.json["status"] == 413
    assert count_rows(app, "notes") == 0


def send_chunked(client, url, body, headers=(), **kwargs):
    """POST `body` without Content-Length, as gunicorn passes on a chunked request."""
    return client.post(url, input_stream=io.BytesIO(body), environ_overrides={
        "wsgi.input_terminated": True}, headers={"Transfer-Encoding": "chunked", **dict(headers)},
        **kwargs)


def test_oversized_chunked_body_is_413_not_truncated(client, logged_in, app):
    limit = app.config["MAX_CONTENT_LENGTH"]
    token = logged_in.token("/notes")
    big = json.dumps({"title": "x" * limit}).encode()
    api = send_chunked(client, "/api/notes", big, content_type="application/json",
                       headers=api_headers(client, "bob"))
    assert api.status_code == 413 and api.mimetype == "application/problem+json"
    form = urlencode({"csrf_token": token, "title": "t", "body": "x" * limit}).encode()
    page = send_chunked(client, "/notes", form, content_type="application/x-www-form-urlencoded")
    assert page.status_code == 413 and page.mimetype == "text/html"
    small = urlencode({"csrf_token": token, "title": "chunked", "body": ""}).encode()
    assert send_chunked(client, "/notes", small.ljust(limit, b"&"),
                        content_type="application/x-www-form-urlencoded").status_code == 302
    assert count_rows(app, "notes") == 1


# Framing (FRAME_ANCESTORS): a course page may show the tour in an <iframe> only when the
# setting lists its origin; unset, every site is refused, as before.

COURSE = "https://course.example.org"
LMS = "https://lms.example.edu:8443"


def framed_app(tmp_path, origins, name="framed"):
    """An app that FRAME_ANCESTORS=`origins` lets those sites frame."""
    return create_app({"TESTING": True, "SECRET_KEY": TEST_SECRET, "FRAME_ANCESTORS": origins,
                       "DATABASE": str(tmp_path / f"{name}.sqlite")},
                      instance_path=str(tmp_path / f"{name}-instance"))


def test_framing_is_refused_by_default_by_both_headers(client):
    response = client.get("/login")
    assert response.headers["Content-Security-Policy"] == tour.CONTENT_SECURITY_POLICY
    assert tour.CONTENT_SECURITY_POLICY.endswith("frame-ancestors 'none'")
    assert response.headers["X-Frame-Options"] == "DENY"
    cookie = response.headers["Set-Cookie"]
    assert "SameSite=Lax" in cookie and "Secure" not in cookie


@pytest.mark.parametrize("setting", [f"{COURSE} {LMS}", f" {COURSE},{LMS} ", [COURSE, LMS],
                                     f"{COURSE.upper()}, {LMS}"])
def test_frame_ancestors_lets_exactly_the_listed_origins_frame_the_app(tmp_path, setting):
    client = framed_app(tmp_path, setting).test_client()
    for url in ("/login", "/data", "/no-such-page", "/static/style.css"):
        headers = client.get(url, base_url="https://localhost").headers
        assert headers["Content-Security-Policy"] == tour.CONTENT_SECURITY_POLICY.replace(
            "frame-ancestors 'none'", f"frame-ancestors {COURSE} {LMS}"), url
        assert "X-Frame-Options" not in headers, url  # it cannot name two sites
        assert "Strict-Transport-Security" in headers and headers["X-Content-Type-Options"]


def test_a_framed_app_sends_its_session_cookie_samesite_none_secure_and_keeps_csrf(tmp_path):
    app = framed_app(tmp_path, COURSE)
    assert app.config["SESSION_COOKIE_SAMESITE"] == "None" and app.config["SESSION_COOKIE_SECURE"]
    client = app.test_client()
    https = {"base_url": "https://localhost", "headers": {"Origin": "https://localhost"}}
    token = csrf_from(client.get("/register", **https))
    response = client.post("/register", data={"username": "alice", "password": PASSWORD,
                                              "csrf_token": token}, **https)
    assert response.status_code == 302
    cookies = response.headers.getlist("Set-Cookie")
    session_cookie = next(cookie for cookie in cookies if cookie.startswith("session="))
    assert "; Secure" in session_cookie and "SameSite=None" in session_cookie
    assert all("; Secure" in cookie for cookie in cookies)  # the known-device cookie too
    # SameSite no longer keeps other sites' forms out: the CSRF token still does.
    forged = client.post("/notes", data={"title": "forged"}, **https)
    assert forged.status_code == 400 and b"CSRF" in forged.data


@pytest.mark.parametrize("setting", [
    "*", "https://*.example.org", "https:", "https://course.example.org/lessons",
    "course.example.org", "http://course.example.org", "'self'", "'unsafe-inline'",
    "https://course.example.org; script-src *", "https://course.example.org'",
    'https://course.example.org"', "https://course.example.org:99999",
    "https://course.example.org:0", "https://user@course.example.org", "data:", 8443,
    ["https://course.example.org", "*"], "https://course.example.org\r\nSet-Cookie: x=1",
])
def test_a_frame_ancestors_value_that_is_not_a_list_of_origins_stops_the_app(tmp_path, setting):
    with pytest.raises(RuntimeError, match=r"FRAME_ANCESTORS has .*, which is not an origin"):
        framed_app(tmp_path, setting)


def test_frame_ancestors_set_after_registration_is_checked_too(tmp_path):
    host = flask.Flask("host", instance_path=str(tmp_path / "instance"))
    host.testing = True  # the error reaches the test
    host.register_blueprint(tour.hooks_bp)  # someone else's app, with our hooks
    host.config["FRAME_ANCESTORS"] = "* ; script-src 'unsafe-inline'"
    host.add_url_rule("/", "home", lambda: "home")
    with pytest.raises(RuntimeError, match="FRAME_ANCESTORS has '\\*'"):
        host.test_client().get("/")  # never a CSP that lets every site frame it or run scripts
    host.config["FRAME_ANCESTORS"] = "https://course.example.org"
    policy = host.test_client().get("/").headers["Content-Security-Policy"]
    assert policy.endswith("frame-ancestors https://course.example.org")


def test_frame_ancestors_from_the_environment_is_shown_on_the_config_page(clean_environment,
                                                                            tmp_path):
    clean_environment.setenv("FLASK_FRAME_ANCESTORS", f"{COURSE} {LMS}")
    app = create_app({"TESTING": True, "DATABASE": str(tmp_path / "env.sqlite")},
                     instance_path=str(tmp_path / "instance"))
    page = app.test_client().get("/config").get_data(as_text=True)
    assert f"{COURSE} {LMS}" in unescape(page)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_a_real_browser_shows_the_app_in_a_frame_only_for_the_configured_origin(tmp_path):
    # Two loopback origins: the course page on localhost:A frames apps on 127.0.0.1:B and :C.
    # A framed page that the browser shows fetches its style sheet; a refused one fetches nothing.
    apps, requested = [], {"allowed": [], "default": []}

    def course_page(environ, start_response):
        body = "".join(f'<iframe src="{url}/login"></iframe>' for url in apps).encode()
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
        return [body]

    def recording(app, paths):
        def wsgi(environ, start_response):
            paths.append(environ["PATH_INFO"])
            return app(environ, start_response)
        return wsgi

    with serve_in_thread(course_page) as course:
        course = course.replace("127.0.0.1", "localhost")  # another site than 127.0.0.1
        allowed = framed_app(tmp_path, course, "allowed")
        default = framed_app(tmp_path, "", "default")
        with serve_in_thread(recording(allowed, requested["allowed"])) as allowed_url, \
                serve_in_thread(recording(default, requested["default"])) as default_url, \
                headless_chromium(tmp_path) as browser:
            apps[:] = [allowed_url, default_url]
            browser.open(course + "/", 1000, 600)  # once the frames have loaded too
    assert requested == {"allowed": ["/login", "/static/style.css", "/static/app.js"],
                         "default": ["/login"]}


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


@pytest.mark.parametrize("code", sorted(tour.ERROR_SENTENCES))
def test_error_pages_say_our_sentences_not_werkzeugs(app, client, code):
    stock = werkzeug.exceptions.default_exceptions[code].description
    app.add_url_rule(f"/test-abort-{code}", f"abort_{code}", lambda: flask.abort(code))
    for response in (client.get(f"/test-abort-{code}"),
                     client.get(f"/test-abort-{code}", headers={"Accept": "application/json"})):
        body = response.get_data(as_text=True)
        assert response.status_code == code and stock not in body and "browser" not in body
        assert unescape(tour.ERROR_SENTENCES[code]) in unescape(body)
    page = client.get(f"/test-abort-{code}").get_data(as_text=True)
    assert 'href="/topics/13"' in page and 'href="/"' in page  # where to go from here


def test_an_error_given_a_reason_keeps_it(client):
    page = client.get("/errors/429").get_data(as_text=True)
    assert "A demonstration of the rate-limit page." in page
    assert tour.ERROR_SENTENCES[429] not in page


def test_classic_errors_page_shows_each_real_message_and_logs_nothing_unexpected(
        client, logged_in, caplog):
    with caplog.at_level("INFO", logger="app"):
        response = client.get("/errors/classic")
        html = unescape(response.get_data(as_text=True))
        token = csrf_from(response)
        method = client.post("/errors/classic", data={"csrf_token": token})
        bare = client.post("/errors/classic/form-key", data={"csrf_token": token})
        csrf = client.post("/errors/classic/form-key", data={"title": "no token"})
    for message in ("RuntimeError: Working outside of application context.",
                    "400 BAD REQUEST: The form's CSRF token is missing or out of date.",
                    "MethodNotAllowed: 405 Method Not Allowed: The method is not allowed",
                    "BuildError: Could not build url for endpoint 'notes'.",
                    "TemplateNotFound: 404.html",
                    "BadRequestKeyError: 400 Bad Request: The browser (or proxy) sent a request",
                    "cannot import name 'db' from partially initialized module"):
        assert message in html
    assert "Signed in as <strong>alice</strong>" in html  # the inner request did not touch this g
    assert (method.status_code, bare.status_code, csrf.status_code) == (405, 400, 400)
    assert "Unhandled exception" not in caplog.text
    assert "errors.classic_errors" in {endpoint for _, endpoint, _ in TOPIC_BY_NUMBER[13]["demos"]}
    assert 'href="/errors/classic"' in client.get("/").get_data(as_text=True)

# --- 13: attacks and faults --------------------------------------------------


def test_error_pages_never_show_secrets_paths_or_tracebacks(clean_environment, tmp_path, monkeypatch):
    app = create_app(instance_path=str(tmp_path / "instance"))
    secret, key_file = app.config["SECRET_KEY"], str(tmp_path / "instance" / "secret_key")

    def crash(*args, **kwargs):
        raise RuntimeError(f"leaking {secret} from {key_file}")
    app.view_functions["json.data"] = crash
    client = app.test_client()
    responses = [client.get(f"/errors/{code}") for code in tour.DEMO_ERRORS] + [
        client.get("/data"), client.get("/data", headers={"Accept": "application/json"}),
        client.get("/api/me", headers=bearer("x.y.z")), client.post("/notes"),
        client.post("/api/users", data="{", content_type="application/json"),
        client.open("/", method="FOO"), client.get("/no-such-page"),
        client.post("/api/users", data="x" * (app.config["MAX_CONTENT_LENGTH"] + 1))]
    for response in responses:
        body = response.get_data(as_text=True)
        assert response.status_code >= 400
        for leak in (secret, key_file, str(tmp_path), "Traceback", 'File "', "RuntimeError",
                     "leaking"):
            assert leak not in body, (response.request.path, leak)


# ---------------------------------------------------------------------------
# 14. Deployment (Gunicorn + Nginx, Docker)
# ---------------------------------------------------------------------------


def test_healthz(client):
    assert client.get("/healthz").json == {"status": "ok", "database": "ok"}


def test_healthz_is_503_without_a_database(tmp_path, caplog):
    app = database_in_a_folder_removed_after_start_up(tmp_path)
    with caplog.at_level("ERROR", logger="app"):
        response = app.test_client().get("/healthz")
    assert response.status_code == 503 and response.json["database"] == "unavailable"
    assert "Health check failed" in caplog.text

FORWARDED = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9", "X-Forwarded-Proto": "https",
             "X-Forwarded-Host": "tour.example", "X-Forwarded-Port": "8443",
             "X-Forwarded-Prefix": "/tour"}


def app_behind_proxies(tmp_path, proxies):
    """A test app that trusts X-Forwarded-* from `proxies` proxies (0: none)."""
    app = create_app({"TESTING": True, "SECRET_KEY": TEST_SECRET, "TRUSTED_PROXIES": proxies,
                      "DATABASE": str(tmp_path / "db.sqlite")}, instance_path=str(tmp_path / "i"))
    app.jinja_env.bytecode_cache = COMPILED_TEMPLATES  # as the app fixture's
    return app


def test_proxy_fix_gives_the_app_the_clients_view(tmp_path):
    app = app_behind_proxies(tmp_path, 1)
    app.config.update(SESSION_COOKIE_SECURE=True, SESSION_COOKIE_PATH="/tour")  # as deployed there
    with app.test_client() as client:
        response = client.get("/login", headers=FORWARDED)
        assert request.remote_addr == "203.0.113.9"  # added by our one proxy, not by the client
        assert (request.scheme, request.host, request.script_root) == (
            "https", "tour.example:8443", "/tour")
        assert url_for("forms.notes", _external=True) == "https://tour.example:8443/tour/notes"
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


@pytest.mark.parametrize("host", ["evil:99999", "xn--", "[::1"])
def test_the_proxy_page_survives_a_malformed_host(app, host):
    environ = create_environ("/proxy")
    environ["HTTP_HOST"] = host  # the test client itself refuses such a host: straight to WSGI
    statuses = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    assert statuses[0].split()[0] in ("200", "400") and b"Traceback" not in body


@pytest.mark.parametrize("proxies", [0, 1])
def test_proxy_page_shows_what_the_app_sees_beside_what_reached_it(tmp_path, proxies):
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    html = app_behind_proxies(tmp_path, proxies).test_client().get(
        "/proxy", headers=headers).get_data(as_text=True)
    rows = dict((label, (seen, raw)) for label, seen, raw in re.findall(
        r'<th scope="row">(.*?)</th><td><code>(.*?)</code></td><td><code>(.*?)</code>', html))
    if proxies:
        assert rows["Client address"] == ("203.0.113.7", "127.0.0.1")
        assert rows["Scheme"] == ("https", "http")
    else:
        assert rows["Client address"] == ("127.0.0.1", "127.0.0.1")
        assert "X-Forwarded-For: 203.0.113.7</code> (ignored)" in html


@pytest.mark.parametrize("header", ["Host", "X-Forwarded-Host"])
def test_a_malformed_host_is_a_400_not_a_500(tmp_path, header):
    client = app_behind_proxies(tmp_path, 1).test_client()
    response = client.get("/", headers={header: "x" * 64 + ".example"})  # labels stop at 63
    assert response.status_code == 400 and response.mimetype == "application/problem+json"


def test_a_host_trusted_hosts_does_not_list_is_a_400_not_a_500(tmp_path):
    app = create_app({"SECRET_KEY": TEST_SECRET, "DATABASE": str(tmp_path / "t.sqlite"),
                      "TRUSTED_HOSTS": ["tour.example.org"]}, instance_path=str(tmp_path / "i"))
    refused = app.test_client().get("/", headers={"Host": "evil.example"})
    assert refused.status_code == 400 and refused.json["detail"] == "Host 'evil.example' is not trusted."
    assert app.test_client().get("/", headers={"Host": "tour.example.org"}).status_code == 200


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
            targets.update(collected(response.get_data(as_text=True)).other_targets)
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
            assert auth.logout().headers["Location"] == "/demo/login"
    assert auth.login(next="/search?q=x").headers["Location"] == "/demo/search?q=x"
    headers = api_headers(client, "bob", prefix="/demo")
    created = client.post("/demo/api/notes", json={"title": "api"}, headers=headers)
    assert created.headers["Location"] == f"/demo/api/notes/{created.json['id']}"
    assert client.get("/demo/api/openapi.json").json["servers"] == [{"url": "/demo"}]


def test_two_apps_in_one_process_share_no_data_and_no_sessions(tmp_path):
    apps = {name: create_app({"TESTING": True, "SECRET_KEY": f"{name}-{TEST_SECRET}",
                              "SESSION_COOKIE_PATH": f"/{name}",  # each app its own cookie
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
    local = (ROOT / "deploy" / "local.sh").read_text()
    assert "EXPOSE 8000" in dockerfile and "127.0.0.1:8000/healthz" in dockerfile
    assert re.search(r"^USER [1-9]\d*:", dockerfile, re.M), "the container runs as root"
    assert re.findall(r"^  (\w+): \*app$", compose, re.M) == ["app1", "app2"]
    for needle in ("server app1:8000;", "server app2:8000;", "/srv/flask-tour/static/"):
        assert needle in nginx and needle in local  # deploy/local.sh's sed line rewrites these
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in compose
    assert "./static:/srv/flask-tour/static:ro" in compose and "- instance:/app/instance" in compose
    megabytes = int(re.search(r"client_max_body_size (\d+)m;", nginx).group(1))
    assert megabytes * 1024 * 1024 == tour.DEFAULTS["MAX_CONTENT_LENGTH"]


def test_gunicorn_serves_the_tour(tmp_path):
    with run_gunicorn(tmp_path) as server:
        with urllib.request.urlopen(server.url + "/") as response:
            page = response.read().decode()
    assert all(f'href="/topics/{n}"' in page for n in TOPIC_NUMBERS)


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
            assert [(name, static.headers[name]) for name, _ in tour.SECURITY_HEADERS] == list(
                tour.SECURITY_HEADERS)  # nginx sends the app's own security headers
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
        traced = LiveClient(proxy.url).request("GET", "/data", headers={"X-Request-ID": "via-nginx"})
        assert traced.headers["X-Request-ID"] == "via-nginx"
        nginx_log = tmp_path / "nginx" / "access.log"
        wait_for(lambda: 'GET /data HTTP/1.1" 200' in nginx_log.read_text().splitlines()[-1],
                 "nginx's access log")
        assert nginx_log.read_text().splitlines()[-1].endswith(" id=via-nginx")  # the app's id
        assert re.match(r'127\.0\.0\.1 \[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d\] "GET ',
                        nginx_log.read_text().splitlines()[-1])  # who, and when


# --- 14: attacks and faults --------------------------------------------------


def test_concurrent_writes_lose_nothing_and_never_fail(tmp_path):
    with run_gunicorn(tmp_path, workers=4) as server:
        with NoteWriters(server, clients=64) as writers:
            writers.stop.wait(LOAD_SECONDS)  # the load runs for LOAD_SECONDS, nothing to await
    outcomes = writers.outcomes
    assert [o.error for o in outcomes if o.status is None] == []
    assert [(o.status, o.body) for o in outcomes if o.status != 201] == []
    assert not any(b"locked" in o.body for o in outcomes)
    notes, integrity = stored_notes(tmp_path / "gunicorn.sqlite")
    acknowledged = {o.title: json.loads(o.body)["id"] for o in outcomes if o.status == 201}
    # Sent, acknowledged and stored are the same notes, however many this machine managed.
    assert outcomes and len(outcomes) == len(acknowledged) == len(notes) and integrity == "ok"
    assert acknowledged == notes


def test_a_killed_worker_loses_no_acknowledged_note(tmp_path):
    database, access_log = tmp_path / "gunicorn.sqlite", tmp_path / "access.log"
    with run_gunicorn(tmp_path, workers=4, args=access_log_args(access_log)) as server:
        with NoteWriters(server, clients=16) as writers:
            writers.wait_for(200)
            workers = wait_for(lambda: len(pids := gunicorn_workers(server)) == 4 and pids,
                               "4 workers")
            os.kill(max(workers), signal.SIGKILL)
            replacement = wait_for(lambda: gunicorn_workers(server) - workers,
                                   "a replacement worker").pop()
            wait_for(lambda: f"<{replacement}>" in logged_requests(access_log, "/api/notes"),
                     "the replacement worker to serve a note", timeout=30)
            writers.wait_for(len(writers.created()) + 200)
    outcomes = writers.outcomes
    assert [o.status for o in outcomes if o.status is not None and o.status != 201] == []
    lost_answers = [o for o in outcomes if o.status is None]
    assert len(lost_answers) <= 1  # at most the one request the killed worker was serving
    notes, integrity = stored_notes(database)
    assert integrity == "ok"
    acknowledged = {o.title: json.loads(o.body)["id"] for o in outcomes if o.status == 201}
    assert acknowledged.items() <= notes.items()
    assert set(notes) - set(acknowledged) <= {o.title for o in lost_answers}


def test_healthz_proves_a_write_and_leaves_nothing_behind(app, client, monkeypatch):
    monkeypatch.setattr(tour, "BUSY_TIMEOUT", 0.2)
    app.config["HEALTH_CHECK_INTERVAL"] = 0  # a write per check
    assert client.get("/healthz").status_code == 200
    assert count_rows(app, "health_checks") == 0
    blocker = sqlite3.connect(app.config["DATABASE"], isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock: reads still work
    try:
        locked = client.get("/healthz")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert locked.status_code == 503
    assert locked.json["reason"] == f"database is locked: {app.config['DATABASE']}"
    assert client.get("/healthz").status_code == 200


def test_healthz_checks_the_file_at_the_configured_path(app, client, tmp_path):
    database = Path(app.config["DATABASE"])
    app.config["HEALTH_CHECK_INTERVAL"] = 0
    assert client.get("/healthz").status_code == 200
    moved = tmp_path / "moved.sqlite"
    database.rename(moved)  # the file the app used is no longer at the configured path
    gone = client.get("/healthz")
    assert gone.status_code == 503 and gone.json == {"status": "error", "database": "unavailable",
                                                     "reason": tour.database_problem(str(database))}
    assert gone.json["reason"].startswith(f"the database {database} is missing, but one was "
                                          f"made there (.{database.name}.created still there)")
    moved.rename(database)
    assert client.get("/healthz").status_code == 200


def test_healthz_writes_at_most_once_per_interval_and_answers_from_that_result(app, client):
    app.config["HEALTH_CHECK_INTERVAL"] = 3600
    assert client.get("/healthz").status_code == 200
    with read_only(Path(app.config["DATABASE"])):
        cached = client.get("/healthz")  # no write tried: the answer of the check above
        app.config["HEALTH_CHECK_INTERVAL"] = 0
        checked = client.get("/healthz")
    assert cached.status_code == 200 and checked.status_code == 503


def test_healthz_fails_on_a_full_disk_under_concurrent_writes_and_recovers(tmp_path):
    """The issue's case: writers on a small tmpfs filled up; its write check alone fitted in
    pages SQLite already had, and said 200 while every note write failed."""
    with small_disk(tmp_path / "disk", "3m") as disk:
        database = disk / "db.sqlite"
        env = {"FLASK_DATABASE": str(database), "FLASK_HEALTH_CHECK_INTERVAL": "0"}
        with run_gunicorn(tmp_path, workers=4, env=env) as server:
            with WriteLoad(server.url, token_for(server.url), threads=4) as load:
                wait_for(lambda: len(load.replies) >= 20, "writes before the disk fills")
                filler = fill_disk(disk)
                full = [LiveClient(server.url).get("/healthz") for _ in range(8)]
                filler.unlink()
                wait_for(lambda: LiveClient(server.url).get("/healthz").status == 200,
                         "/healthz once space is freed")
                freed_at = len(load.replies)
                wait_for(lambda: any(status == 201 for _, status, _ in load.replies[freed_at:]),
                         "a write after the space is freed")
        with contextlib.closing(sqlite3.connect(database)) as db:
            stored = dict(db.execute("SELECT id, title FROM notes"))
    assert [reply.status for reply in full] == [503] * 8  # every worker, every poll
    assert all(reply.json["reason"].startswith(f"the disk holding {database} is full: ")
               for reply in full)
    assert load.errors == [] and {status for _, status, _ in load.replies} <= {201, 503}
    acknowledged = {note_id: title for title, status, note_id in load.replies if status == 201}
    assert acknowledged.items() <= stored.items()  # no 201 that is not in the configured file
    statuses = [status for _, status, _ in load.replies]
    print(f"full disk: {statuses.count(201)} writes stored, {statuses.count(503)} refused (503)")


def test_a_database_deleted_under_load_acknowledges_only_what_it_keeps(tmp_path):
    """gunicorn under writes while the file is deleted: 503s, never a 201 the file lacks."""
    database, backup = tmp_path / "gunicorn.sqlite", tmp_path / "backup.sqlite"
    with run_gunicorn(tmp_path, env={"FLASK_HEALTH_CHECK_INTERVAL": "0"}) as server:
        with WriteLoad(server.url, token_for(server.url)) as load:
            wait_for(lambda: len(load.replies) >= 50, "writes before the deletion")
            os.link(database, backup)  # the deleted file, kept where the test can put it back
            database.unlink()
            deleted_at = len(load.replies)
            wait_for(lambda: len(load.replies) >= deleted_at + 50, "writes after the deletion")
        health = LiveClient(server.url).get("/healthz")
        os.link(backup, database)  # restored: the same workers take writes again
        restored = LiveClient(server.url).get("/healthz")
    assert load.errors == [] and {status for _, status, _ in load.replies} == {201, 503}
    assert all(status == 503 for _, status, _ in load.replies[deleted_at + 8:])  # 8: in flight
    assert health.status == 503 and health.json["reason"].startswith(
        f"the database {database} is missing, but one was made there")
    assert restored.status == 200
    with contextlib.closing(sqlite3.connect(database)) as db:
        stored = dict(db.execute("SELECT id, title FROM notes"))
    acknowledged = {note_id: title for title, status, note_id in load.replies if status == 201}
    assert acknowledged.items() <= stored.items()


# --- 14: production settings, nginx and rolling restarts ---------------------


def test_every_deployment_runs_gunicorn_with_its_config_file():
    command = "gunicorn -c deploy/gunicorn.conf.py app:app"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "app:app"]' in dockerfile
    assert "COPY deploy/gunicorn.conf.py deploy/" in dockerfile
    assert "ENV GUNICORN_BIND=0.0.0.0:8000" in dockerfile and "127.0.0.1:8000/healthz" in dockerfile
    assert "command:" not in (ROOT / "docker-compose.yml").read_text()  # the image's CMD
    assert command in (ROOT / "deploy" / "local.sh").read_text()
    assert command in documented("WEB_CONCURRENCY=2 gunicorn")
    assert "gunicorn -c deploy/gunicorn.conf.py" in (ROOT / "README.md").read_text()


def test_gunicorn_conf_reads_bind_and_workers_from_the_environment():
    default = load_gunicorn_conf({})
    assert (default.bind, default.workers) == (["127.0.0.1:8000"], 1)
    custom = load_gunicorn_conf({"GUNICORN_BIND": "0.0.0.0:9000", "WEB_CONCURRENCY": "3"})
    assert (custom.bind, custom.workers) == (["0.0.0.0:9000"], 3)
    assert default.forwarded_allow_ips == [] and default.secure_scheme_headers == {}
    assert default.forwarder_headers == [] and default.control_socket_disable
    compose = (ROOT / "docker-compose.yml").read_text()
    grace = int(re.search(r"^  stop_grace_period: (\d+)s$", compose, re.M).group(1))
    assert grace > default.graceful_timeout  # docker stop must not SIGKILL requests in progress
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    read_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", nginx).group(1))
    assert read_timeout <= default.timeout  # nginx notices a stalled instance first


def test_documented_gunicorn_command_trusts_no_local_client(tmp_path, clean_work_tree):
    """The doc's command verbatim: a local client cannot claim https; no control socket."""
    port = free_port()
    env = shell_environment(tmp_path, GUNICORN_BIND=f"127.0.0.1:{port}")
    with running(["bash", "-c", documented("WEB_CONCURRENCY=2 gunicorn")], port,
                 tmp_path / "gunicorn.log", cwd=ROOT, env=env) as server:
        wait_for(lambda: server.output().count("Booting worker") == 2, "WEB_CONCURRENCY=2 workers")
        client = LiveClient(server.url)
        for headers in (FORGED_SCHEME, {"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "off"}):
            reply = client.get("/hooks", headers)
            assert reply.status == 200  # not gunicorn's "Contradictory scheme headers"
            assert "<dt>Scheme</dt><dd><code>http</code></dd>" in reply.text
            assert "Strict-Transport-Security" not in reply.headers
        page = client.get("/login", FORGED_SCHEME)
        assert "Secure" not in page.headers["Set-Cookie"]
        assert "/evil" not in client.get("/login", {"SCRIPT_NAME": "/evil"}).text  # no prefix
    assert "Control socket" not in server.output() and "Control server" not in server.output()


def test_gunicorn_given_a_script_name_stops_at_start_and_says_what_to_do(tmp_path):
    # Served, every path outside /demo would be gunicorn's 500 and the cookie would cover "/".
    with pytest.raises(RuntimeError, match="exited") as failure:
        with run_gunicorn(tmp_path, workers=1, env={"SCRIPT_NAME": "/demo"}):
            pass
    assert "SCRIPT_NAME=/demo is set in gunicorn's environment" in str(failure.value)
    assert "X-Forwarded-Prefix" in str(failure.value)
    assert "FLASK_SESSION_COOKIE_PATH=/demo" in str(failure.value)


# nginx: forged scheme headers, its own pages, a stalled instance -------------


@needs_nginx
def test_nginx_clears_scheme_headers_a_client_sends(tmp_path):
    """gunicorn without our config file trusts scheme headers from nginx's address: nginx must
    set or clear every one, or any client gets the 400 of a contradiction, or https."""
    with contextlib.ExitStack() as stack:
        apps = [stack.enter_context(run_gunicorn(tmp_path, workers=1,
                                                 env={"FLASK_TRUSTED_PROXIES": "1"}))
                for _ in range(2)]
        proxy = stack.enter_context(nginx_in_front_of(tmp_path, [app.port for app in apps]))
        for headers in (FORGED_SCHEME, {"X-Forwarded-Ssl": "on"}, {"X-Forwarded-Protocol": "ssl"},
                        {"Forwarded": "proto=https"}):
            for _ in apps:  # each instance once (round robin)
                reply = LiveClient(proxy).get("/hooks", headers)
                assert reply.status == 200, reply.text
                assert "<dt>Scheme</dt><dd><code>http</code></dd>" in reply.text
                assert "Strict-Transport-Security" not in reply.headers
                assert_security_headers(reply)  # once each: nginx's, not also the app's


@needs_nginx
def test_nginx_own_error_pages_carry_the_security_headers(tmp_path):
    edits = [("proxy_read_timeout 10s;", "proxy_read_timeout 1s;")]
    with stalled_instance() as stalled:
        with nginx_in_front_of(tmp_path, [free_port(), free_port()], edits) as proxy:
            missing = LiveClient(proxy).get("/static/no-such-file.css")
            assert missing.status == 404 and "X-Request-ID" not in missing.headers
            assert_security_headers(missing)
            down = LiveClient(proxy).get("/")  # both instances refuse the connection
            assert down.status == 502 and "X-Request-ID" not in down.headers
            assert_security_headers(down)
        with nginx_in_front_of(tmp_path, [stalled, stalled], edits, "nginx-504") as proxy:
            timed_out = LiveClient(proxy).post_json("/api/notes", {"title": "lost?"})
            assert timed_out.status == 504
            assert_security_headers(timed_out)


@needs_nginx
def test_nginx_stops_sending_requests_to_a_stalled_instance(tmp_path):
    """One instance accepts connections and never answers: GETs are retried on the other, the
    stalled one is then skipped (fail_timeout), so even POSTs all succeed after the first."""
    edits = [("proxy_read_timeout 10s;", "proxy_read_timeout 1s;")]
    with stalled_instance() as stalled, run_gunicorn(
            tmp_path, workers=2, env={"FLASK_TRUSTED_PROXIES": "1"}) as live:
        bearer = token_for(live.url)
        with nginx_in_front_of(tmp_path, [stalled, live.port], edits) as proxy:
            started = time.monotonic()
            for _ in range(2):
                assert LiveClient(proxy).get("/data").status == 200
            assert time.monotonic() - started < 3  # one request waited the 1 s, then retried
            started = time.monotonic()
            statuses = [LiveClient(proxy).post_json("/api/notes", {"title": f"n{n}"}, bearer).status
                        for n in range(20)]
            assert statuses == [201] * 20 and time.monotonic() - started < 5


# Rolling restart under POST load, with the documented commands ----------------


@needs_nginx
def test_rolling_restart_under_post_load_loses_nothing(tmp_path, clean_work_tree):
    """docs/deployment.md's start, restart and stop, verbatim: two gunicorns behind nginx,
    writes through nginx while each instance is restarted in turn: no client error, and every
    201 is in the database."""
    documented_blocks = {block.strip() for block in bash_blocks(DEPLOYMENT_DOC)
                         if "docker" not in block}
    assert documented_blocks == {documented(name).strip() for name in (
        "WEB_CONCURRENCY=2 gunicorn", "local.sh start", "local.sh restart", "local.sh stop")}, \
        "a command in docs/deployment.md that no test runs"
    # nginx's workers (nobody, when the tests run as root) need to reach their temp folders.
    run_dir = Path(tempfile.mkdtemp(prefix="flask-tour-test-"))
    run_dir.chmod(0o755)
    nginx_port, ports = free_port(), [free_port(), free_port()]
    env = shell_environment(tmp_path, RUN_DIR=str(run_dir), NGINX_LISTEN=f"127.0.0.1:{nginx_port}",
                            APP1_PORT=str(ports[0]), APP2_PORT=str(ports[1]))
    url = f"http://127.0.0.1:{nginx_port}"
    try:
        run_documented("local.sh start", env)
        pids = {port: (run_dir / f"app-{port}.pid").read_text() for port in ports}
        bearer = token_for(url)
        with WriteLoad(url, bearer) as load:
            wait_for(lambda: len(load.replies) >= 50, "the first writes")
            started = time.monotonic()
            run_documented("local.sh restart", env)
            restart_seconds = time.monotonic() - started
            during = len(load.replies)
            wait_for(lambda: len(load.replies) >= during + 50, "writes after the restart")
        assert {port: (run_dir / f"app-{port}.pid").read_text() for port in ports}.keys() == \
            pids.keys()
        assert all((run_dir / f"app-{port}.pid").read_text() != pids[port] for port in ports)
        assert load.errors == []
        assert [reply for reply in load.replies if reply[1] != 201] == []
        with contextlib.closing(sqlite3.connect(env["FLASK_DATABASE"])) as db:
            stored = dict(db.execute("SELECT id, title FROM notes"))
        assert {note_id: title for title, _, note_id in load.replies} == stored
        upstreams = re.findall(r"upstream=127\.0\.0\.1:(\d+)", (run_dir / "access.log").read_text())
        assert {int(port) for port in upstreams} == set(ports)
        for port in ports:
            log = (run_dir / f"app-{port}.log").read_text()
            assert "Control socket" not in log and "Control server" not in log
        print(f"rolling restart: {len(load.replies)} POSTs, {len(stored)} stored, 0 errors; "
              f"restart took {restart_seconds:.1f} s")
    finally:
        run_documented("local.sh stop", env, check=False)
        shutil.rmtree(run_dir, ignore_errors=True)


def test_local_sh_start_shows_why_an_instance_did_not_start(tmp_path, clean_work_tree):
    """A database folder that does not exist: the instance stops at once, and the script says
    so with the end of the instance's log, instead of waiting for /healthz in silence."""
    run_dir = Path(tempfile.mkdtemp(prefix="flask-tour-test-"))
    database = tmp_path / "no-such-folder" / "tour.sqlite"
    env = shell_environment(tmp_path, RUN_DIR=str(run_dir), FLASK_DATABASE=str(database),
                            NGINX_LISTEN=f"127.0.0.1:{free_port()}", APP1_PORT=str(free_port()),
                            APP2_PORT=str(free_port()))
    try:
        started = subprocess.run(["bash", "-c", documented("local.sh start")], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["bash", "-c", documented("local.sh stop")], cwd=ROOT, env=env,
                       capture_output=True, timeout=60)
        shutil.rmtree(run_dir, ignore_errors=True)
    assert started.returncode != 0
    assert "/healthz: gunicorn (pid " in started.stderr and "stopped before it answered" in \
        started.stderr
    assert f"RuntimeError: DATABASE is {str(database)!r}, but its folder does not exist" in \
        started.stderr


# README, .ci/run, compose, Dockerfile, nginx.conf kept in step ----------------


def test_compose_reads_env_file_in_the_form_every_version_knows():
    compose = (ROOT / "docker-compose.yml").read_text()
    assert re.search(r"^  env_file: \.env$", compose, re.M)
    assert not re.search(r"^\s+required:", compose, re.M)
    assert "test -f .env || cp .env.example .env" in DEPLOYMENT_DOC.read_text()


def test_the_image_installs_runtime_packages_only():
    dockerfile = (ROOT / "Dockerfile").read_text()
    install = re.search(r"^RUN grep .*?(?<!\\)$", dockerfile, re.M | re.S).group(0)
    assert "grep -v '^pytest==' requirements.txt > /tmp/runtime.txt" in install
    assert "pip install --no-cache-dir -r /tmp/runtime.txt" in install
    requirements = (ROOT / "requirements.txt").read_text().split()
    kept = [line for line in requirements if not line.startswith("pytest==")]
    assert [line.split("==")[0] for line in kept] == ["flask", "python-dotenv", "gunicorn"]


def test_the_dockerfile_splits_no_words():
    # hadolint's SC2046, for machines without hadolint (.ci/run runs the real one): an unquoted
    # $(...) in a RUN line is split on spaces and globbed by the shell.
    dockerfile = (ROOT / "Dockerfile").read_text()
    runs = re.findall(r"^RUN .*?(?<!\\)$", dockerfile, re.M | re.S)
    assert runs and not [run for run in runs if re.search(r'(?<!")\$\(|`', run)], runs


def test_nginx_conf_headers_equal_the_apps():
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    added = re.findall(r'^\s*add_header ([\w-]+) "?(.*?)"? always;$', nginx, re.M)
    assert added == list(tour.SECURITY_HEADERS)  # once, at server level, on every response
    directives = re.findall(r"^\s*#?\s*add_header .*$", nginx, re.M)
    assert len(directives) == len(added)  # none without `always`, none in a location
    hidden = re.findall(r"^\s*proxy_hide_header ([\w-]+);$", nginx, re.M)
    assert hidden == [name for name, _ in tour.SECURITY_HEADERS]  # the app's copies
    cleared = {"X-Forwarded-Ssl", "X-Forwarded-Protocol", "X-Forwarded-Scheme", "X-Url-Scheme",
               "Forwarded", "X-Forwarded-Port", "X-Forwarded-Prefix"}
    server = nginx.split("location /static/")[0]
    for block in (server, nginx.split("# location /tour/ {")[1]):
        set_headers = set(re.findall(r'proxy_set_header ([\w-]+) ""?;', block))
        assert cleared - {"X-Forwarded-Prefix"} <= set_headers, block


# ---------------------------------------------------------------------------
# 15. Testing
# ---------------------------------------------------------------------------

# What /testing sends its throwaway app, in order, and what each answer must be.
TESTING_DEMO = [("GET /welcome/Ada", "200 OK"), ("GET /api/hello", "200 OK"),
                ("GET /api/notes", "401 UNAUTHORIZED"), ("GET /register", "200 OK"),
                ("POST /register", "400 BAD REQUEST"), ("POST /register", "302 FOUND"),
                ("GET /notes", "200 OK")]


def demo_shown(response):
    """(request, status) of each exchange /testing shows, and its text."""
    page = response.get_data(as_text=True)
    shown = re.findall(r"<code>([A-Z]+ /[^<]*)</code> &rarr;\s*<span[^>]*>([^<]+)</span>", page)
    return shown, unescape(page)


def test_the_testing_demo_shows_each_request_and_its_real_status(clean_environment, client):
    shown, html = demo_shown(client.get("/testing"))
    assert shown == TESTING_DEMO
    assert "Location: /notes" in html and "Welcome, ada!" in html  # signed up, then signed in
    assert "The form's CSRF token is missing" in html  # the refusal's own words
    assert "application/problem+json" in html and "session=…; HttpOnly" in html
    assert not re.search(r"session=[^…]", html)  # no cookie value is shown


# A server's own address and cookie settings, which create_app reads for the throwaway app too.
SERVER_ENVIRONMENT = {"FLASK_PREFERRED_URL_SCHEME": "https", "FLASK_SERVER_NAME": "example.org",
                      "FLASK_APPLICATION_ROOT": "/tour", "FLASK_TRUSTED_HOSTS": '["example.org"]',
                      "FLASK_SESSION_COOKIE_DOMAIN": "example.org",
                      "FLASK_SESSION_COOKIE_PATH": "/tour", "FLASK_SESSION_COOKIE_SECURE": "true",
                      "FLASK_FRAME_ANCESTORS": "https://course.example.org"}


def test_the_testing_demo_works_whatever_address_the_server_has(
        clean_environment, client, monkeypatch):
    built = []
    monkeypatch.setattr(tour, "create_app", lambda config, **kwargs: built.append(
        create_app(config, **kwargs)) or built[-1])
    for name, value in SERVER_ENVIRONMENT.items():  # set after this test's own app is built
        clean_environment.setenv(name, value)
    shown, html = demo_shown(client.get("/testing"))
    assert shown == TESTING_DEMO
    assert "Location: /notes" in html and "Welcome, ada!" in html
    [throwaway] = built
    assert throwaway.config["SESSION_COOKIE_SECURE"] is True  # the variables did reach it
    assert throwaway.config["FRAME_ANCESTORS"] == "https://course.example.org"


def test_the_testing_demo_sees_nothing_of_the_visitor_and_leaves_no_file(
        app, logged_in, monkeypatch, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where TemporaryDirectory makes folders
    built = []
    monkeypatch.setattr(tour, "create_app", lambda config, **kwargs: built.append(config) or
                        create_app(config, **kwargs))
    html = logged_in.client.get("/testing").get_data(as_text=True)
    page, requests = re.search(r'(.*)(<ol class="exchanges">.*?</ol>)', html, re.S).groups()
    assert "Welcome, ada!" in requests and "alice" not in requests  # alice's page, ada's requests
    # Rendered after them: the throwaway app's requests left this one's `g.user` in place.
    assert "Signed in as <strong>alice</strong>" in page
    [settings] = built
    assert settings["DATABASE"].startswith(str(scratch)) and settings["TESTING"] is True
    assert settings["SECRET_KEY"] != app.config["SECRET_KEY"]
    assert list(scratch.iterdir()) == []  # its folder is deleted
    assert count_rows(app, "users") == 1  # alice only: ada lived in the throwaway app


def test_the_testing_demo_builds_one_app_at_a_time(app, client, monkeypatch, reader):
    monkeypatch.setattr(tour, "THROWAWAY_WAIT", 0)
    lock = app.extensions["testing_demo_lock"]
    with lock:  # another visitor's app is being built
        response = client.get("/testing")
    assert response.status_code == 503 and response.headers["Retry-After"] == "2"
    assert b"The testing demo is busy" in response.data
    assert client.get("/testing").status_code == 200  # and free again after
    assert reader.application.extensions["testing_demo_lock"] is not lock  # one lock per app


def test_the_testing_demo_is_built_at_most_once_per_reuse_period(
        clean_environment, client, monkeypatch):
    built = []
    monkeypatch.setattr(tour, "create_app", lambda config, **kwargs: built.append(config) or
                        create_app(config, **kwargs))
    first, again = client.get("/testing").text, client.get("/testing").text
    assert len(built) == 1 and "302 FOUND" in first  # reloading it costs the server nothing
    assert "302 FOUND" in again  # the same requests and answers, shown again
    monkeypatch.setattr(tour, "THROWAWAY_REUSE", -1)  # the period is over: a new app
    client.get("/testing")
    assert len(built) == 2


def fixture_region(text):
    """(first line number, lines) of test_app.py's fixtures region, found by its markers."""
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("# region fixtures"))
    end = lines.index("# endregion fixtures")
    return start + 1, lines[start:end + 1]


def test_topic_15_shows_the_fixtures_exactly_as_test_app_py_has_them(reader):
    text = (ROOT / "test_app.py").read_text(encoding="utf-8")
    first_line, region = fixture_region(text)
    html = reader.get("/topics/15").get_data(as_text=True)
    shown = re.findall(r'<span class="line" data-line="(\d+)" id="file-test-app-py-fixtures-L\d+">(.*?)\n</span>',
                       html, re.S)
    assert [(int(number), unescape(re.sub(r"<[^>]+>", "", line))) for number, line in shown] == list(
        enumerate(region, start=first_line))
    # No second copy: the suite's app, client and runner are defined once, in that region.
    fixtures = {node.name: node.lineno for node in ast.parse(text).body
                if isinstance(node, ast.FunctionDef) and node.name in ("app", "client", "runner")}
    assert sorted(fixtures) == ["app", "client", "runner"]
    assert sum(1 for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)
               and node.name in fixtures) == 3
    assert all(first_line < line < first_line + len(region) for line in fixtures.values())
    assert "import pytest" not in (ROOT / "app.py").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------
# 16. Blueprints, and growing into a package
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The folder `flask tour export` wrote the package into, once for this file's tests."""
    folder = tmp_path_factory.mktemp("export")
    app = create_app({"TESTING": True, "SECRET_KEY": TEST_SECRET, "DATABASE": str(folder / "t.sqlite")},
                     instance_path=str(folder / "instance"))
    result = app.test_cli_runner().invoke(args=["tour", "export", str(folder / "out")])
    assert result.exit_code == 0, result.output
    return folder / "out"


# Run with `python -I` in the export's folder: import the package and every module of it, with
# nothing of this checkout importable, then each topic's demo from the copy test against it.
EXPORTED_DEMOS = """
import functools, importlib, json, pkgutil, re, sys, tempfile, types
sys.path.insert(0, ".")
import flask_tour
modules = [importlib.import_module("flask_tour." + info.name)
           for info in pkgutil.iter_modules(flask_tour.__path__)]
assert "app" not in sys.modules, "the package imported app.py"
for module in modules:  # as the suite's fast_password_hashing does for app.py
    if hasattr(module, "generate_password_hash"):
        module.generate_password_hash = functools.partial(module.generate_password_hash,
                                                          method="pbkdf2:sha256:1000")
names = types.SimpleNamespace(**{name: value for module in [flask_tour, *modules]
                                 for name, value in vars(module).items() if not name.startswith("__")})
sys.path.append(sys.argv[1])
import test_app
shown = {}
with tempfile.TemporaryDirectory() as folder:
    for number in map(int, sys.argv[2:]):
        app = flask_tour.create_app({"TESTING": True, "SECRET_KEY": test_app.TEST_SECRET,
                                     "JWT_SECRET_KEY": test_app.JWT_TEST_KEY,
                                     "DATABASE": f"{folder}/{number}.sqlite"},
                                    instance_path=f"{folder}/instance-{number}")
        shown[number] = str(test_app.demo_of_topic(number, app, names))
    # The tour itself, signed out: each topic page (its heading, imports, numbered code), then
    # every link the crawl reaches from the tour.
    app = flask_tour.create_app({"TESTING": True, "SECRET_KEY": test_app.TEST_SECRET,
                                 "DATABASE": f"{folder}/tour.sqlite"}, instance_path=f"{folder}/instance")
    client, pages = app.test_client(), {}
    for number in test_app.TOPIC_NUMBERS:
        response = client.get(f"/topics/{number}")
        html = response.get_data(as_text=True)
        code = test_app.code_lines(html)
        blocks = test_app.shown_code(html)
        imports = blocks[blocks.index("\\n".join(text for _, text in code)) - 1] if code else None
        pages[number] = [response.status_code, test_app.SOURCE_HEADING.findall(html), code, imports]
    crawled = test_app.crawl(client, "/")
    run_it = re.search(r'id="run-heading".*?</pre>', client.get("/").get_data(as_text=True), re.S).group()
print(json.dumps({"shown": shown, "pages": pages, "crawled": crawled, "run_it": run_it}))
"""


def test_the_exported_package_runs_each_topics_demo_in_a_fresh_interpreter(exported):
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("FLASK_", "PYTHON")) and name != "APP_SETTINGS"}
    environment["PYTHONDONTWRITEBYTECODE"] = "1"
    numbers = [number for number in TOPIC_NUMBERS if number in COPY_EXPECTATIONS]
    result = subprocess.run([sys.executable, "-I", "-B", "-c", EXPORTED_DEMOS, str(ROOT), *map(str, numbers)],
                            cwd=exported, env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.splitlines()[-1])
    shown = found["shown"]
    for number in numbers:
        assert COPY_EXPECTATIONS[number] in shown[str(number)], number
    assert "flask_tour.forms" in shown["16"]  # each Blueprint now comes from a module of its own
    # Each topic page shows its section from the module that holds it, with that file's lines.
    modules = {path: path.read_text(encoding="utf-8") for path in (exported / "flask_tour").glob("*.py")}
    for number in TOPIC_NUMBERS:
        status, heading, code, imports = found["pages"][str(number)]
        path, text = next((path, text) for path, text in modules.items() if number in tour.sections_of(text))
        first_line, source = tour.sections_of(text)[number]
        last_line = first_line + source.count("\n")
        assert status == 200 and heading == [[f"flask_tour/{path.name}", str(first_line), str(last_line)]]
        assert code == [[line_number, line] for line_number, line in enumerate(source.splitlines(), first_line)]
        assert imports == tour.import_lines(source, text), number  # from the top of that module
    assert "from .migrations import add_migration" in found["pages"]["10"][3].splitlines()
    assert found["pages"]["1"][3] == "from flask import Flask"  # create_app imports the rest inside
    broken = {url: status for url, status in found["crawled"].items()
              if status >= 400 and not url.startswith("/errors/")}
    assert not broken and len(found["crawled"]) > 30
    assert not any(url.endswith("/tests") for url in found["crawled"])  # test_app.py is not exported
    assert "&amp;&amp; flask --app flask_tour run</code>" in found["run_it"]


def package_imports(folder):
    """{module: modules of the package it imports at its top} and {module: any it imports inside a function}."""
    at_top, inside = {}, {}
    for path in (folder / "flask_tour").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {node for node in tree.body if isinstance(node, ast.ImportFrom)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                found = at_top if node in top else inside
                found.setdefault(path.stem, set()).add(node.module or "__init__")
            if isinstance(node, (ast.Import, ast.ImportFrom)):  # never the one-module app
                assert "app" not in [getattr(node, "module", None), *(alias.name for alias in node.names)], path
    return at_top, inside


def test_no_module_of_the_export_imports_one_that_imports_it_back(exported):
    at_top, inside = package_imports(exported)
    assert set(inside) == {"__init__"}  # the factory imports the sections when it runs
    assert at_top["forms"] >= {"auth", "json_", "models"}

    def reachable(name, seen=()):
        return {name} | {found for imported in at_top.get(name, ()) if imported not in seen
                         for found in reachable(imported, (*seen, name))}
    for name, imported in at_top.items():
        assert not any(name in reachable(other) for other in imported), name
    assert "tour" not in at_top  # the appendix lives with the tour's views, which it serves


def test_the_export_refuses_a_folder_that_already_has_the_package(exported, runner, tmp_path):
    before = sorted((exported / "flask_tour").rglob("*"))
    result = runner.invoke(args=["tour", "export", str(exported)])
    assert result.exit_code == 1 and "flask_tour already exists: nothing was written" in result.output
    assert sorted((exported / "flask_tour").rglob("*")) == before
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "flask_tour").symlink_to(tmp_path / "elsewhere")
    assert runner.invoke(args=["tour", "export", str(tmp_path / "target")]).exit_code == 1
    assert list((tmp_path / "elsewhere").iterdir()) == []  # nothing written through the link


def test_the_export_refuses_an_empty_folder_name(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "" would mean here
    result = runner.invoke(args=["tour", "export", ""])
    assert result.exit_code == 2 and "an empty name would write into the current folder" in result.output
    assert list(tmp_path.iterdir()) == []


def test_the_exported_init_names_the_package_and_cannot_run_as_a_script(exported, reader):
    init = (exported / "flask_tour" / "__init__.py").read_text(encoding="utf-8")
    assert init.splitlines()[0].endswith("; also the app that `flask --app flask_tour run` and "
                                         "`gunicorn flask_tour:app` serve.\"\"\"")
    for path in (exported / "flask_tour").glob("*.py"):  # relative imports: no module runs alone
        assert "if __name__ ==" not in path.read_text(encoding="utf-8"), path.name
    assert "if __name__ ==" in (ROOT / "app.py").read_text(encoding="utf-8")
    # The tour's "Run it yourself" says `flask run` here; the export's says --app flask_tour.
    assert "&amp;&amp; flask run</code>" in reader.get("/").get_data(as_text=True)


def test_the_blueprints_page_names_each_command_as_flask_runs_it(reader):
    html = reader.get("/blueprints").get_data(as_text=True)
    cells = re.findall(r"<td>(?:<code>flask [^<]+</code>(?:, )?)+</td>", html)
    shown = {command for cell in cells for command in re.findall(r"<code>flask ([^<]+)</code>", cell)}
    assert {"db-status", "db-upgrade", "create-user", "tour export"} <= shown  # cli_group None or "tour"
    for command in shown:  # `flask db-status` is app.cli's "db-status"; `flask tour export`, a group's
        found = reader.application.cli
        for word in command.split():
            found = found.commands[word]
    assert tour.cli_group("named", flask.Blueprint("named", __name__)) == "named"  # the default


def test_the_export_refuses_a_circular_import_and_a_module_that_lacks_what_it_uses(exported):
    text = (ROOT / "app.py").read_text(encoding="utf-8")
    database = tour.source_sections()[9][1]
    looped = text.replace(database, database.replace("# Uses nothing from other sections",
                                                     "# Uses `User` (section 10)", 1))
    with pytest.raises(click.ClickException, match=r"circular import: (db -> models -> db|models -> db -> models)"):
        tour.package_modules(looped)
    exported_module = (exported / "flask_tour" / "blueprints.py").read_text(encoding="utf-8")
    with pytest.raises(click.ClickException, match="export from the whole app.py"):
        tour.package_modules(exported_module)


def test_the_blueprints_page_shows_the_layout_the_export_writes(reader, exported):
    html = reader.get("/blueprints").get_data(as_text=True)
    written = sorted(path.name for path in (exported / "flask_tour").iterdir())
    assert {"__init__.py", "db.py", "models.py", "auth.py", "templates", "static", "lessons"} <= set(written)
    # Beside the package, the pins that the exported tour's "Run it yourself" installs.
    assert (exported / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()
    for name in written:
        assert f"<code>flask_tour/{name}</code>" in html, name
    assert "<code>from .migrations import add_migration</code>" in html  # models.py's
    topic = reader.get("/topics/16").get_data(as_text=True)
    assert 'id="note-import-order"' in topic


# --- 16: embedding -----------------------------------------------------------
# Chosen sections registered into someone else's Flask app, which keeps its own routes,
# session, error handlers and layout.



def host_app(tmp_path, *blueprints, layout=True):
    """Someone else's app, in a folder of its own: a page that counts visits in the session,
    its own 404 text, and (with `layout`) its own base.html; then our `blueprints`."""
    (tmp_path / "templates").mkdir(exist_ok=True)
    if layout:
        (tmp_path / "templates" / "base.html").write_text(
            "<title>Host: {% block title %}{% endblock %}</title>"
            "<main class=host>{% block content %}{% endblock %}</main>")
    host = flask.Flask("host", root_path=str(tmp_path))
    host.secret_key = TEST_SECRET

    @host.route("/")
    def home():
        flask.session["visits"] = flask.session.get("visits", 0) + 1
        return f"Host home, visit {flask.session['visits']}"

    @host.errorhandler(404)
    def not_found(error):
        return "Host: nothing here", 404

    for blueprint in blueprints:
        host.register_blueprint(blueprint)
    return host


def test_two_sections_registered_in_a_foreign_app_work_and_leave_it_as_it_was(tmp_path):
    client = host_app(tmp_path, tour.params_bp, tour.json_bp).test_client()
    # Its own route and session, as before.
    assert client.get("/").text == "Host home, visit 1"
    assert client.get("/").text == "Host home, visit 2"
    # Its own 404, also for a URL of ours that does not match.
    assert client.get("/nowhere").text == client.get("/user/").text == "Host: nothing here"
    # Section 3's page, in the host's own layout, still escaping the name.
    page = client.get("/user/<b>Ada").text
    assert page.startswith("<title>Host: Hello</title><main class=host>")
    assert "Hello, <bdi>&lt;b&gt;Ada</bdi>" in page
    # Section 7's JSON.
    data = client.get("/data")
    assert data.is_json and data.get_json() == {"name": "Nutan", "role": "DevOps Engineer"}
    # Neither brought an app-wide hook: no headers of ours on the host's pages.
    headers = client.get("/").headers
    assert not {"Content-Security-Policy", "X-Frame-Options", "X-Request-ID"} & set(headers)


def test_our_pages_bring_their_layout_to_an_app_without_a_base_html(tmp_path):
    client = host_app(tmp_path, tour.templates_bp, tour.params_bp, layout=False).test_client()
    page = client.get("/user/Ada").text
    assert '<a class="brand" href="/">Flask Tour</a>' in page and "Hello, <bdi>Ada</bdi>" in page
    assert client.get("/welcome/Ada").status_code == 200


def test_the_config_page_in_a_foreign_app_hides_its_settings(tmp_path):
    host = host_app(tmp_path, tour.config_bp)
    host.config["DATABASE_URL"] = "postgres://app:hunter2@db/app"  # the host's, not ours
    page = host.test_client().get("/config")
    assert page.status_code == 200 and "hunter2" not in page.text


def app_wide_effects(blueprint, tmp_path):
    """What registering `blueprint` changes in an app beyond its own URLs."""
    host = flask.Flask("host", root_path=str(tmp_path))
    tmp_path.mkdir()
    host.config.update(SECRET_KEY=TEST_SECRET, DATABASE=str(tmp_path / "host.sqlite"),
                       TRUSTED_PROXIES=1)
    tour.init_database(host)  # what the sections with tables need first
    before = (dict(host.before_request_funcs), dict(host.after_request_funcs),
              str(host.error_handler_spec), set(host.jinja_env.globals),
              set(host.jinja_env.filters), host.wsgi_app)
    host.register_blueprint(blueprint)
    after = (dict(host.before_request_funcs), dict(host.after_request_funcs),
             str(host.error_handler_spec), set(host.jinja_env.globals),
             set(host.jinja_env.filters), host.wsgi_app)
    names = ("before_app_request", "after_app_request", "app_errorhandler",
             "app_template_global", "app_template_filter", "middleware")
    return {name for name, old, new in zip(names, before, after) if old != new}


def test_the_embedding_notes_name_every_blueprint_that_acts_app_wide(tmp_path):
    blueprints = {name: value for name, value in vars(tour).items()
                  if isinstance(value, flask.Blueprint)}
    app_wide = {name for name, blueprint in blueprints.items()
                if app_wide_effects(blueprint, tmp_path / name)}
    assert {"hooks_bp", "auth_bp", "forms_bp", "errors_bp"} <= app_wide
    notes = {note["id"]: note for note in TOPIC_BY_NUMBER[16]["notes"]}
    paragraph = next(part for part in notes["embedding-blueprints"]["text"].split("\n\n")
                     if part.startswith("App-wide:"))
    named, _, within = paragraph.partition("the rest")
    assert set(re.findall(r"`(\w+_bp)`", named)) == app_wide
    assert set(re.findall(r"`(\w+_bp)`", within)) == set(blueprints) - app_wide


# ---------------------------------------------------------------------------
# 17. Contexts, g and the command line
# ---------------------------------------------------------------------------


def typed_twice(password):
    """What a user types at a password prompt that asks for confirmation."""
    return f"{password}\n{password}\n"


def test_contexts_page_shows_the_real_error_and_what_this_request_has(client, logged_in):
    page = client.get("/contexts").get_data(as_text=True)
    assert "RuntimeError: Working outside of application context." in page
    assert "ProgrammingError: Cannot operate on a closed database." in page  # teardown closed it
    assert "<code>g.request_id</code>, <code>g.started</code>, <code>g.user</code>" in page
    assert "<code>request.endpoint</code> is <code>contexts.show_contexts</code>" in page
    with client.session_transaction() as session:
        assert "<code>session_id</code>" in page and session["session_id"] not in page  # names only
    # The hooks in Flask's calling order: the app's before_request first, close_db last.
    hooks = re.sub(r"<[^>]+>", "", page.split('id="hooks"')[1])
    assert "before_request: start_request, then refuse_oversized_stream, then load_logged_in_user" in hooks
    assert "teardown_appcontext: remove_deleted_files, then close_db" in hooks  # the last added runs first


def test_create_user_reads_the_password_unseen_and_the_user_can_log_in(runner, auth):
    result = runner.invoke(args=["create-user", "ada"], input=typed_twice(PASSWORD))
    assert result.exit_code == 0, result.output
    assert "Created the user ada (id 1)" in result.output and PASSWORD not in result.output
    assert auth.login("ada").headers["Location"] == "/notes"


def test_create_user_asks_again_when_the_confirmation_differs(app, runner):
    result = runner.invoke(args=["create-user", "ada"], input=f"{PASSWORD}\n{PASSWORD}!\n")
    assert "The two entered values do not match." in result.output
    assert result.exit_code == 1 and count_rows(app, "users") == 0  # no more input: aborted


def test_create_user_refuses_what_the_register_form_refuses(app, runner, logged_in):
    taken = runner.invoke(args=["create-user", "ALICE"])  # usernames ignore case
    assert taken.exit_code == 1 and "The username 'ALICE' is taken." in taken.output
    assert "Password" not in taken.output  # refused before the password is typed
    weak = runner.invoke(args=["create-user", "bob"], input=typed_twice("short"))
    assert weak.exit_code == 2 and tour.USER_FIELDS["password"].check("short") in weak.output
    badly_named = runner.invoke(args=["create-user", "bob smith"])
    assert badly_named.exit_code == 2 and "Use letters, digits" in badly_named.output
    assert count_rows(app, "users") == 1


def test_delete_user_asks_first_then_deletes_the_notes_too(app, runner, logged_in, client):
    client.post("/notes", data={"title": "mine", "csrf_token": logged_in.token("/notes")})
    note_id, token = new_note(client)
    attach(client, note_id, PNG, "mine.png", token)
    assert runner.invoke(args=["delete-user", "alice"], input="n\n").exit_code == 1
    assert count_rows(app, "users") == 1
    result = runner.invoke(args=["delete-user", "alice"], input="y\n")
    assert "Deleted alice and their 2 notes." in result.output and result.exit_code == 0
    assert count_rows(app, "notes") == 0
    assert uploads_of(app) == []  # the command's teardown removed the note's file too
    missing = runner.invoke(args=["delete-user", "alice", "--yes"])
    assert missing.exit_code == 1 and "There is no user called 'alice'." in missing.output


def test_a_command_on_a_missing_database_says_why_without_a_traceback(app, runner):
    runner.invoke(args=["create-user", "ada"], input=typed_twice(PASSWORD))
    os.remove(app.config["DATABASE"])
    for args in (["create-user", "bob"], ["delete-user", "ada", "--yes"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
        assert "Error: The database" in result.output
        assert "is missing" in result.output and "Traceback" not in result.output
    assert not os.path.exists(app.config["DATABASE"])  # and no empty one made in its place


def test_flask_shell_has_the_models_and_get_db(app):
    names = app.make_shell_context()
    assert names["User"] is User and names["Note"] is Note and names["get_db"] is tour.get_db
    assert names["app"] is app  # Flask's own, kept


def test_flask_routes_lists_the_app_endpoints(runner):
    output = runner.invoke(flask.cli.routes_command).output
    assert re.search(r"^contexts\.show_contexts +GET +/contexts *$", output, re.M)
    assert "forms.login" in output and "tour.topic" in output


# ---------------------------------------------------------------------------
# 18. Schema migrations
# ---------------------------------------------------------------------------

# The tables exactly as main made them at 26a98d2, before issue 19 (its MODELS_SCHEMA,
# LOGIN_SCHEMA, JWT_SCHEMA and HEALTH_SCHEMA), at user_version 2: the session id's two upgrades.
SCHEMA_OF_MAIN_BEFORE_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    session_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    body TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX IF NOT EXISTS notes_by_user ON notes (user_id, id);

CREATE TABLE IF NOT EXISTS login_failures (
    username TEXT NOT NULL COLLATE NOCASE,
    address TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_by_username ON login_failures (username, failed_at);
CREATE INDEX IF NOT EXISTS login_failures_by_address ON login_failures (address, failed_at);
CREATE TABLE IF NOT EXISTS rate_limited (
    key TEXT NOT NULL,
    at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_limited_by_key ON rate_limited (key, at);
CREATE INDEX IF NOT EXISTS rate_limited_by_expiry ON rate_limited (expires_at);

CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS health_checks (checked_at REAL NOT NULL);
PRAGMA journal_mode = WAL;
PRAGMA user_version = 2;
"""

# The users and notes tables as main made them before issue 12 (no session_id), at version 0.
SCHEMA_BEFORE_SESSION_IDS = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE TABLE notes (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    body TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
"""

OLD_ACCOUNTS = {"alice": ("correct horse battery", ["alice's first", "alice's second"]),
                "Bob": ("another good passphrase", ["bob's only note"])}


def old_database(path, schema):
    """A database file as an older main left it: its schema, two users with hashes, their notes."""
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(schema)
        has_session_ids = "session_id" in [row[1] for row in old.execute("PRAGMA table_info(users)")]
        for username, (password, titles) in OLD_ACCOUNTS.items():
            values = {"username": username, "password_hash": werkzeug.security.generate_password_hash(
                password, method="pbkdf2:sha256:1000")}
            if has_session_ids:
                values["session_id"] = secrets_hex()
            user_id = old.execute(f"INSERT INTO users ({', '.join(values)}) VALUES "
                                  f"({', '.join('?' * len(values))})", tuple(values.values())).lastrowid
            for title in titles:
                old.execute("INSERT INTO notes (user_id, title, body) VALUES (?, ?, ?)",
                            (user_id, title, f"body of {title}"))
        old.commit()


def secrets_hex():
    return os.urandom(16).hex()


def settings_for(path):
    return {"TESTING": True, "SECRET_KEY": TEST_SECRET, "JWT_SECRET_KEY": JWT_TEST_KEY,
            "DATABASE": str(path)}


def schema_shape(path):
    """Each index's columns and each table's (in any order: ALTER TABLE adds at the end)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        names = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {name: [row[2] for row in db.execute(f'PRAGMA index_xinfo("{name}")')]
                or sorted(row[1] for row in db.execute(f'PRAGMA table_info("{name}")'))
                for name in names}


@pytest.mark.parametrize("schema", [SCHEMA_OF_MAIN_BEFORE_MIGRATIONS, SCHEMA_BEFORE_SESSION_IDS],
                         ids=["main-before-issue-19", "before-session-ids"])
def test_an_old_database_upgrades_with_every_login_and_note_still_working(tmp_path, schema):
    path = tmp_path / "old.sqlite"
    old_database(path, schema)
    app = create_app(settings_for(path), instance_path=str(tmp_path / "i"))
    for username, (password, titles) in OLD_ACCOUNTS.items():
        client = app.test_client()
        assert AuthActions(client).login(username, password).status_code == 302
        page = client.get("/notes").get_data(as_text=True)
        assert all(escape(title) in page for title in titles)
        token = client.post("/api/token", json={"username": username, "password": password})
        headers = {"Authorization": "Bearer " + token.json["access_token"]}
        notes = client.get("/api/notes", headers=headers).json["items"]
        assert sorted(note["title"] for note in notes) == sorted(titles)
        assert all(client.get(f"/api/notes/{note['id']}", headers=headers).json["body"]
                   == f"body of {note['title']}" for note in notes)
    fresh = tmp_path / "new.sqlite"
    create_app(settings_for(fresh), instance_path=str(tmp_path / "j")).test_client().get("/healthz")
    assert schema_shape(path) == schema_shape(fresh)  # today's tables, columns and indexes
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(app.extensions["migrations"])
        session_ids = [row[0] for row in db.execute("SELECT session_id FROM users")]
    assert len(set(session_ids)) == 2 and all(re.fullmatch(r"[0-9a-f]{32}", s) for s in session_ids)


def test_workers_starting_together_on_an_old_database_upgrade_it_once(tmp_path):
    path = tmp_path / "old.sqlite"
    old_database(path, SCHEMA_BEFORE_SESSION_IDS)
    workers = [create_app(settings_for(path), instance_path=str(tmp_path / "i")) for _ in range(4)]
    start = threading.Barrier(len(workers))

    def first_request(worker):  # each upgrades, or finds it done; a second ALTER would fail
        start.wait(timeout=10)
        return worker.test_client().get("/healthz").status_code
    with ThreadPoolExecutor(len(workers)) as pool:
        assert list(pool.map(first_request, workers)) == [200] * len(workers)
    assert AuthActions(workers[0].test_client()).login("alice", OLD_ACCOUNTS["alice"][0]).status_code == 302


def count_this_run(db):
    """A migration that leaves a row for each time it runs."""
    db.execute("INSERT INTO migration_runs VALUES (3, ?)", (os.getpid(),))


def migrate_in_a_process(path, instance, start, results):
    """A forked process that builds the app, waits for the others, then migrates: its numbers."""
    app = create_app(settings_for(path), instance_path=instance)
    tour.add_migration(app, 3, "count the runs", count_this_run)
    start.wait(timeout=30)
    with app.app_context(), contextlib.closing(tour.connect(str(path))) as db:
        results.put([migration.number for migration in tour.apply_pending(db)])


def test_two_processes_migrating_one_file_at_once_both_succeed_and_each_migration_runs_once(tmp_path):
    path = tmp_path / "old.sqlite"
    old_database(path, SCHEMA_BEFORE_SESSION_IDS + "CREATE TABLE migration_runs (number, pid);")
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=migrate_in_a_process,
                                 args=(path, str(tmp_path / "i"), start, results)) for _ in range(2)]
    for process in processes:
        process.start()
    applied = [results.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert [process.exitcode for process in processes] == [0, 0]
    assert sorted(number for numbers in applied for number in numbers) == [1, 2, 3]  # once each
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM migration_runs").fetchone()[0] == 1
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3


def test_a_failing_migration_rolls_back_entirely(tmp_path):
    path = tmp_path / "old.sqlite"
    old_database(path, SCHEMA_OF_MAIN_BEFORE_MIGRATIONS)
    app = create_app(settings_for(path), instance_path=str(tmp_path / "i"))
    tour.add_migration(app, 3, "a column, then a mistake",
                       "ALTER TABLE notes ADD COLUMN pinned INTEGER; UPDATE no_such_table SET x = 1")
    result = app.test_cli_runner().invoke(args=["db-upgrade"])
    assert result.exit_code == 1 and "no such table: no_such_table" in result.output
    assert "Traceback" not in result.output
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2  # unchanged
        assert "pinned" not in [row[1] for row in db.execute("PRAGMA table_info(notes)")]
    assert app.test_client().get("/migrations").status_code == 503  # a page says so, no 500
    with contextlib.closing(sqlite3.connect(path)) as db:  # and the next start tries again
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_database_newer_than_the_code_is_refused_with_a_clear_message(tmp_path, caplog):
    path = tmp_path / "new.sqlite"
    app = create_app(settings_for(path), instance_path=str(tmp_path / "i"))
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 7")  # as newer code would leave it
    restarted = create_app(settings_for(path), instance_path=str(tmp_path / "i"))
    client = restarted.test_client()
    page = client.get("/migrations")
    assert page.status_code == 503 and "Traceback" not in page.get_data(as_text=True)
    api = client.post("/api/token", json={"username": "alice", "password": PASSWORD})
    assert api.status_code == 503 and api.mimetype == "application/problem+json"
    assert "is at migration 7, newer than this code's last (2)" in caplog.text
    runner = restarted.test_cli_runner()
    for command in ("db-upgrade", "db-status"):
        result = runner.invoke(args=[command])
        assert result.exit_code == 1 and "newer than this code's last (2)" in result.output
        assert "restore a backup" in result.output and "Traceback" not in result.output
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 7  # not downgraded


def test_a_negative_user_version_is_refused_not_migrated_from_the_end(tmp_path):
    path = tmp_path / "odd.sqlite"
    old_database(path, SCHEMA_BEFORE_SESSION_IDS)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = -1")  # no version of the app writes it
    app = create_app(settings_for(path), instance_path=str(tmp_path / "i"))
    result = app.test_cli_runner().invoke(args=["db-upgrade"])
    assert result.exit_code == 1 and "user_version -1, which no version of this app writes" in result.output
    assert app.test_client().get("/migrations").status_code == 503
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == -1  # nothing ran


def test_db_status_and_db_upgrade_say_what_is_pending_then_apply_it(tmp_path):
    path = tmp_path / "old.sqlite"
    old_database(path, SCHEMA_BEFORE_SESSION_IDS)
    runner = create_app(settings_for(path), instance_path=str(tmp_path / "i")).test_cli_runner()
    status = runner.invoke(args=["db-status"]).output
    assert "Current version: 0\nLatest version: 2\n" in status
    assert "Pending 1: users get a session_id column\nPending 2: every user gets" in status
    upgrade = runner.invoke(args=["db-upgrade"]).output
    assert upgrade.startswith("Applied 1: users get a session_id column\nApplied 2: ")
    assert "is at version 2, the latest." in upgrade
    assert "nothing to do" in runner.invoke(args=["db-upgrade"]).output
    assert "Pending" not in runner.invoke(args=["db-status"]).output


def test_a_new_database_and_init_db_are_at_the_latest_version(app, runner, client):
    assert client.get("/migrations").status_code == 200
    with app.app_context():
        assert tour.stored_version(tour.get_db()) == 2
    assert runner.invoke(args=["init-db"]).exit_code == 0
    with app.app_context():
        assert tour.stored_version(tour.get_db()) == 2


def test_the_migrations_page_shows_each_ones_state_and_code(app, client):
    html = client.get("/migrations").get_data(as_text=True)
    assert app.config["DATABASE"] not in html  # where the data lives stays on the server
    assert "is at version <strong>2</strong>" in html and html.count("<td>applied</td>") == 2
    assert "ALTER TABLE users ADD COLUMN session_id" in unescape(html)
    assert "def give_every_user_a_session_id(db):" in html


def test_migrations_are_numbered_in_order_and_sql_is_split_into_statements(app):
    with pytest.raises(ValueError, match="out of order: the next number is 3"):
        tour.add_migration(app, 4, "skipped one", "SELECT 1")
    assert tour.split_statements("INSERT INTO t VALUES ('a;b');\n; SELECT 2") == [
        "INSERT INTO t VALUES ('a;b');", " SELECT 2;"]


# ---------------------------------------------------------------------------
# 19. File uploads and cookies
# ---------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(24)  # the signature of a PNG file, then anything


def new_note(client, title="with files"):
    """Create a note through the form; (its id, the session's CSRF token)."""
    token = csrf_from(client.get("/notes"))
    client.post("/notes", data={"title": title, "body": "", "csrf_token": token})
    return int(re.findall(r"/notes/(\d+)/edit", client.get("/notes").text)[0]), token


def attach(client, note_id, content, name, token=None):
    """Post a file with the edit page's form; `token` None sends no CSRF token at all."""
    data = {"file": (io.BytesIO(content), name), **({"csrf_token": token} if token else {})}
    return client.post(f"/notes/{note_id}/attachments", data=data)


def uploads_of(app):
    """The names in the instance folder's uploads/ (none when it was never made)."""
    folder = Path(app.instance_path) / "uploads"
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def files_outside_uploads(tmp_path):
    """Every file under the test's folder (instance folder, database) except in uploads/."""
    return {str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*")
            if "uploads" not in path.relative_to(tmp_path).parts}


def main_of(response):
    """The <main> of a page: what it says, without the links back to its own address."""
    return re.search(r"<main.*</main>", response.text, re.S)[0]


def test_an_attachment_is_stored_under_a_random_name_and_sent_back_to_its_owner(app, client,
                                                                                logged_in):
    note_id, token = new_note(client)
    response = attach(client, note_id, PNG, "../../my cat.png", token)
    assert response.status_code == 302 and response.headers["Location"] == f"/notes/{note_id}/edit"
    [stored] = uploads_of(app)
    assert re.fullmatch(r"[0-9a-f]{32}", stored)  # the sender's name never became a path
    edit = client.get(f"/notes/{note_id}/edit").text
    link = re.search(rf'href="(/notes/{note_id}/attachments/\d+)">my_cat.png<', edit)[1]
    image = client.get(link)
    assert image.data == PNG and image.mimetype == "image/png"
    assert image.headers["Content-Disposition"].startswith("inline")  # an image is shown
    assert image.headers["X-Content-Type-Options"] == "nosniff"
    assert image.headers["Content-Security-Policy"] == "default-src 'none'; sandbox; frame-ancestors 'none'"
    assert attach(client, note_id, "plain words\n".encode(), "notes.TXT", token).status_code == 302
    text_link = re.search(r'href="([^"]+)">notes.txt<', client.get(f"/notes/{note_id}/edit").text)[1]
    text = client.get(text_link)
    assert text.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert text.headers["Content-Disposition"] == "attachment; filename=notes.txt"  # a download


def test_upload_attacks_are_refused_and_nothing_is_written_outside_the_uploads_folder(
        app, client, logged_in, tmp_path):
    note_id, token = new_note(client)
    attach(client, note_id, PNG, "first.png", token)  # the folder and the database exist
    before_tree, before_instance, before_uploads = work_tree(), files_outside_uploads(tmp_path), \
        uploads_of(app)
    limit = app.config["MAX_ATTACHMENT_BYTES"]
    attacks = {
        "over MAX_ATTACHMENT_BYTES": (PNG + bytes(limit), "big.png", token, 413),
        "over MAX_CONTENT_LENGTH": (PNG + bytes(app.config["MAX_CONTENT_LENGTH"]), "huge.png",
                                    token, 413),
        "a path and a script's extension": (b"print('owned')\n", "../../app.py", token, 415),
        "HTML named .png": (b"<script>alert(document.cookie)</script>", "cat.png", token, 415),
        "HTML named .txt, then NUL": (b"<p>\x00</p>", "page.txt", token, 415),
        "no CSRF token": (PNG, "cat.png", None, 400),
    }
    for attack, (content, name, sent_token, status) in attacks.items():
        response = attach(client, note_id, content, name, sent_token)
        assert response.status_code == status, attack
        assert response.mimetype == "text/html" and "Traceback" not in response.text, attack
        assert uploads_of(app) == before_uploads, attack  # nothing left behind
    assert "An attachment may be at most 512 KB." in attach(
        client, note_id, PNG + bytes(limit), "big.png", token).text  # the 413 page says why
    assert "CSRF token is missing" in attach(client, note_id, PNG, "cat.png", None).text  # not another 400
    assert count_rows(app, "attachments") == 1
    assert files_outside_uploads(tmp_path) == before_instance
    assert work_tree() == before_tree


def test_an_api_upload_over_the_limit_is_a_problem_and_leaves_nothing(app, client):
    headers = api_headers(client)
    note = client.post("/api/notes", json={"title": "api"}, headers=headers).json
    url = f"/api/notes/{note['id']}/attachments"
    for size in (app.config["MAX_ATTACHMENT_BYTES"], app.config["MAX_CONTENT_LENGTH"]):
        response = client.post(url, headers=headers,
                               data={"file": (io.BytesIO(PNG + bytes(size)), "big.png")})
        assert response.status_code == 413 and response.mimetype == "application/problem+json"
    assert client.post(url, headers=headers, json={"file": "x"}).status_code == 400  # not multipart
    assert uploads_of(app) == [] and client.get(url, headers=headers).json == {"items": []}


def test_the_api_uploads_lists_and_sends_attachments_as_the_openapi_document_says(app, client):
    headers = api_headers(client)
    note = client.post("/api/notes", json={"title": "api"}, headers=headers).json
    url = f"/api/notes/{note['id']}/attachments"
    created = client.post(url, headers=headers, data={"file": (io.BytesIO(b"%PDF-1.7\n"), "r.pdf")})
    assert created.status_code == 201 and created.json["content_type"] == "application/pdf"
    assert client.get(url, headers=headers).json["items"] == [created.json]
    pdf = client.get(created.headers["Location"], headers=headers)
    assert pdf.data == b"%PDF-1.7\n" and pdf.headers["Content-Disposition"] == "attachment; filename=r.pdf"
    assert client.get(created.headers["Location"]).status_code == 401  # the token is the only way in
    document = client.get("/api/openapi.json").json["paths"]
    upload = document["/api/notes/{note_id}/attachments"]["post"]
    assert {"413", "415", "403"} <= set(upload["responses"])
    assert "multipart/form-data" in upload["requestBody"]["content"]


def test_someone_elses_attachment_is_a_404_like_one_that_never_existed(app, client, logged_in):
    note_id, token = new_note(client)
    attach(client, note_id, PNG, "mine.png", token)
    own_url = re.search(r'href="(/notes/\d+/attachments/\d+)"', client.get(f"/notes/{note_id}/edit").text)[1]
    attachment_id = int(own_url.rsplit("/", 1)[1])
    other = app.test_client()
    AuthActions(other).register("mallory")
    other_note, _ = new_note(other, "mallory's")
    guesses = [own_url, f"/notes/{other_note}/attachments/{attachment_id}"]
    missing = other.get(f"/notes/{other_note}/attachments/{attachment_id + 99}")
    for guess in guesses:
        response = other.get(guess)
        assert response.status_code == 404 and main_of(response) == main_of(missing), guess
    headers = api_headers(other, "eve")
    api_missing = other.get(f"/api/notes/{note_id}/attachments/{attachment_id + 99}", headers=headers)
    for url in (f"/api{own_url}", f"/api/notes/{note_id}/attachments"):
        response = other.get(url, headers=headers)
        assert response.status_code == 404 and response.json["detail"] in (
            api_missing.json["detail"], "No such note."), url


def test_deleting_a_note_deletes_its_files_through_the_form_and_the_api(app, client, logged_in):
    note_id, token = new_note(client)
    attach(client, note_id, PNG, "a.png", token)
    attach(client, note_id, b"GIF89a;", "b.gif", token)
    assert len(uploads_of(app)) == 2
    client.post(f"/notes/{note_id}/delete", data={"csrf_token": token})
    assert uploads_of(app) == [] and count_rows(app, "attachments") == 0
    headers = api_headers(client, "bob")
    note = client.post("/api/notes", json={"title": "api"}, headers=headers).json
    client.post(f"/api/notes/{note['id']}/attachments", headers=headers,
                data={"file": (io.BytesIO(PNG), "c.png")})
    assert len(uploads_of(app)) == 1
    assert client.delete(f"/api/notes/{note['id']}", headers=headers).status_code == 204
    assert uploads_of(app) == [] and count_rows(app, "attachment_files_to_remove") == 0


def test_a_file_whose_row_could_not_be_written_is_removed(app, client, logged_in, monkeypatch):
    note_id, token = new_note(client)

    def full_disk(*args):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(tour.Attachment, "create", full_disk)
    assert attach(client, note_id, PNG, "a.png", token).status_code == 503
    assert uploads_of(app) == []


def test_an_account_cannot_fill_the_disk(app, client, logged_in):
    # Two files, however small: each counts as a disk block (byte counts would allow hundreds).
    app.config["ATTACHMENT_BYTES_PER_USER"] = 2 * tour.DISK_BLOCK
    note_id, token = new_note(client)
    assert attach(client, note_id, PNG, "1.png", token).status_code == 302
    assert attach(client, note_id, PNG, "2.png", token).status_code == 302
    refused = attach(client, note_id, PNG, "3.png", token)
    assert refused.status_code == 403 and "Delete some to make room" in refused.text
    assert len(uploads_of(app)) == 2
    link = re.search(r'action="(/notes/\d+/attachments/\d+/delete)"', client.get(
        f"/notes/{note_id}/edit").text)[1]
    client.post(link, data={"csrf_token": token})  # deleting one makes room again
    assert len(uploads_of(app)) == 1
    assert attach(client, note_id, PNG, "3.png", token).status_code == 302


def test_an_attachment_id_past_sqlite_integers_is_a_404_not_a_500(app, client, logged_in):
    note_id, token = new_note(client)
    huge = 10 ** 23
    assert client.get(f"/notes/{note_id}/attachments/{huge}").status_code == 404
    assert client.post(f"/notes/{note_id}/attachments/{huge}/delete",
                       data={"csrf_token": token}).status_code == 404
    headers = api_headers(client, "bob")
    note = client.post("/api/notes", json={"title": "api"}, headers=headers).json
    response = client.get(f"/api/notes/{note['id']}/attachments/{huge}", headers=headers)
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_only_files_the_section_named_are_removed_from_uploads(app, client, logged_in, tmp_path):
    outside = Path(app.instance_path) / "keep.txt"
    outside.parent.mkdir(exist_ok=True)
    outside.write_text("not an upload")
    with app.app_context():  # a crafted or restored database names a file outside uploads/
        tour.get_db().execute("INSERT INTO attachment_files_to_remove VALUES ('../keep.txt')")
        tour.get_db().commit()
    new_note(client)  # any successful write removes the files waiting to be removed
    assert outside.read_text() == "not an upload"
    assert count_rows(app, "attachment_files_to_remove") == 0


def test_an_attachment_limit_over_the_request_limit_stops_the_app(tmp_path):
    settings = {"TESTING": True, "SECRET_KEY": TEST_SECRET, "DATABASE": str(tmp_path / "t.sqlite"),
                "MAX_CONTENT_LENGTH": 1024 * 1024, "MAX_ATTACHMENT_BYTES": 2 * 1024 * 1024}
    with pytest.raises(RuntimeError, match=r"MAX_ATTACHMENT_BYTES \(2097152\) must be under"):
        create_app(settings, instance_path=str(tmp_path / "i"))


def test_the_text_size_cookie_is_sent_in_a_course_pages_frame_too(tmp_path):
    client = framed_app(tmp_path, "https://course.example.org").test_client()
    form = client.get("/preferences", base_url="https://localhost")
    response = client.post("/preferences", base_url="https://localhost", headers={
        "Origin": "https://localhost"}, data={"large_text": "on", "csrf_token": csrf_from(form)})
    assert "SameSite=None" in response.headers["Set-Cookie"] and "Secure" in response.headers["Set-Cookie"]


def test_the_text_size_cookie_is_set_with_its_flags_and_read_on_the_first_byte(app, client):
    for unparsable in ("http://[::1", "http://["):  # urlsplit raises: no page to go back to
        page = client.get("/preferences", headers={"Referer": unparsable})
        assert page.status_code == 200 and 'name="next" value=""' in page.text
    form = client.get("/preferences", headers={"Referer": "http://localhost/topics/19?x=1"}).text
    assert 'name="next" value="/topics/19?x=1"' in form  # back to the page that linked here
    elsewhere = client.get("/preferences", headers={"Referer": "https://evil.example/topics/19"})
    assert 'name="next" value=""' in elsewhere.text  # another site's page: none
    token = csrf_from(client.get("/preferences"))
    response = client.post("/preferences", data={"large_text": "on", "next": "/topics/19",
                                                 "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/topics/19"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("large_text=on;") and "Max-Age=31536000" in cookie
    assert "Path=/;" in cookie and "SameSite=Lax" in cookie
    assert "HttpOnly" not in cookie and "Secure" not in cookie  # app.js sets it too; plain http
    page = client.get("/topics/19")
    assert page.text.split("<head>")[0].endswith('<html lang="en" class="large-text">\n')
    assert "Cookie" in page.headers["Vary"]
    for value, large in (("off", False), ("ON", False), ("on", True), ("<script>", False)):
        client.set_cookie("large_text", value)
        assert ('class="large-text"' in client.get("/").text.split("<head>")[0]) == large, value
    app.config["SESSION_COOKIE_SECURE"] = True
    elsewhere = client.post("/preferences", data={"large_text": "off", "csrf_token": token,
                                                  "next": "//evil.example/"})
    assert elsewhere.headers["Location"] == "/preferences"  # no open redirect
    assert "; Secure" in elsewhere.headers["Set-Cookie"]
    assert client.post("/preferences", data={"large_text": "on"}).status_code == 400  # no token


# ---------------------------------------------------------------------------
# Appendix: how this tour shows its own code
# ---------------------------------------------------------------------------


def test_every_section_is_found_in_order():
    sections = tour.source_sections()
    assert sorted(sections) == TOPIC_NUMBERS
    # In the file, a section comes after the sections it uses (see the module docstring).
    assert len({start for start, _ in sections.values()}) == len(TOPICS)

APP_LINES = (ROOT / "app.py").read_text(encoding="utf-8").splitlines()

SOURCE_HEADING = re.compile(r'id="source-heading">The hardened section: <code>([^<]+)</code>, '
                            r'lines (\d+)&ndash;(\d+)')

CODE_LINE = re.compile(r'<span class="line" data-line="(\d+)" id="L\d+">(.*?)\n</span>', re.S)


def code_lines(html):
    """(line number, text) of each numbered code line on a page, markup removed."""
    return [(int(number), unescape(re.sub(r"<[^>]+>", "", text)))
            for number, text in CODE_LINE.findall(html)]


CONSTRUCTS = {1: "def create_app(", 2: "@tour_bp.route(", 3: 'request.args.get("q"', 4: "render_template(",
              5: 'methods=["GET", "POST"]', 6: "class HelloAPI(MethodView)", 7: "return jsonify(",
              8: 'from_envvar("APP_SETTINGS")', 9: "def get_db(", 10: "class User:",
              11: "@auth_bp.before_app_request", 12: "@hooks_bp.before_app_request",
              13: "@errors_bp.app_errorhandler(", 14: '@deployment_bp.route("/healthz")',
              15: "create_app(testing_settings(",
              16: '@blueprints_bp.cli.command("export")',
              17: "with app.app_context():",
              18: "def add_migration(",
              19: "request.files"}


@pytest.mark.parametrize("number", TOPIC_NUMBERS)
def test_each_section_shows_its_cheat_sheet_construct_on_its_first_screen(number):
    # About 40 lines of code fit on a projected 1280×720 screen once the page is scrolled to it.
    first_screen = tour.source_sections()[number][1].splitlines()[:40]
    assert any(CONSTRUCTS[number] in line for line in first_screen), CONSTRUCTS[number]


@pytest.mark.parametrize("number", TOPIC_NUMBERS)
def test_topic_page_numbers_its_code_with_the_real_app_py_lines(reader, number):
    first_line, source = tour.source_sections()[number]
    html = reader.get(f"/topics/{number}").get_data(as_text=True)
    lines = code_lines(html)
    assert [line_number for line_number, _ in lines] == list(
        range(first_line, first_line + source.count("\n") + 1))
    assert all(text == APP_LINES[line_number - 1] for line_number, text in lines)
    assert APP_LINES[first_line].startswith(f"# {number}. ")
    assert SOURCE_HEADING.findall(html) == [("app.py", str(first_line), str(lines[-1][0]))]


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


def as_shown(text):
    """`text` with its `code` marked, as a page's body shows it: every character ASCII."""
    return str(tour.inline_code(text)).encode("ascii", "xmlcharrefreplace").decode("ascii")


def shown_code(html):
    """The text of each code block on a page, in order, line numbers and markup removed."""
    return [unescape(re.sub(r"<[^>]+>", "", block)).rstrip("\n")
            for block in re.findall(r'<pre class="code[^"]*"><code[^>]*>(.*?)</code></pre>', html, re.S)]


@pytest.mark.parametrize("topic", TOPICS, ids=lambda topic: str(topic["number"]))
def test_a_topic_page_shows_the_cheat_sheet_then_the_lesson_then_the_demos(reader, topic):
    html = reader.get(f"/topics/{topic['number']}").get_data(as_text=True)
    teaching = LESSON_BY_NUMBER[topic["number"]] / "teaching"
    blocks = shown_code(html)
    # (a) the cheat sheet's snippet and its flaw (beyond it, why the topic is here); (b) the
    # lesson's module, whole, next.
    if topic["cheat_sheet"]:
        sheet = (teaching / topic["cheat_sheet"]["file"]).read_text(encoding="utf-8").rstrip("\n")
        assert blocks.pop(0) == sheet
        assert as_shown(topic["cheat_sheet"]["flaw"]) in html
    else:
        assert as_shown(topic["beyond"]) in html
    module = LESSON_BY_NUMBER[topic["number"]] / topic["lesson"]["modules"][0]
    assert blocks[0] == module.read_text(encoding="utf-8").rstrip("\n")
    assert f'href="/topics/{topic["number"]}/lesson.zip"' in html
    # (c) the demos, then (d) what app.py adds, before (e) the section itself.
    for _, endpoint, arguments in topic["demos"]:
        with reader.application.test_request_context():
            assert 'href="%s"' % escape(tour.url_for(endpoint, **arguments)) in html
    assert html.index('id="lesson-heading"') < html.index('id="adds-heading"') < html.index(
        'id="source-heading"') < html.index('id="exercises-heading"')


@pytest.mark.parametrize("topic", TOPICS, ids=lambda topic: str(topic["number"]))
def test_what_app_py_adds_links_every_addition_to_its_line_of_the_section(reader, topic):
    first_line, source = tour.source_sections()[topic["number"]]
    html = reader.get(f"/topics/{topic['number']}").get_data(as_text=True)
    assert len(topic["adds"]) >= 3, "each hardened section adds several things to its lesson"
    for name, why in topic["adds"]:
        line = tour.name_line(source, first_line, name)
        assert line is not None, (topic["number"], name)
        assert name in APP_LINES[line - 1]
        if re.search(rf"^\s*(def|class) {name}\b", source, re.M):  # its definition, not a call
            assert re.match(rf"\s*(def|class) {name}\b", APP_LINES[line - 1]), (name, line)
        assert f'<a href="#L{line}"><code>{name}</code></a>: {as_shown(why)}' in html
    assert "our_version" not in topic  # the paragraph became the list


def test_pages_kept_once_per_url_prefix_are_bounded(app):
    client = app.test_client()
    for index in range(tour.ONCE_PER_APP_LIMIT + 20):  # a new prefix each time, as a proxy could send
        assert client.get("/", base_url=f"http://localhost/p{index}").status_code == 200
    assert len(app.extensions["flask_tour_pages"]) == tour.ONCE_PER_APP_LIMIT


def test_the_imports_a_page_shows_are_what_its_section_needs(reader):
    source = tour.source_sections()[9][1]
    imports = tour.import_lines(source, (ROOT / "app.py").read_text(encoding="utf-8"))
    assert "import sqlite3" in imports.splitlines() and "from flask import" in imports
    assert "jwt" not in imports and "zipfile" not in imports and "Blueprint" in imports
    blocks = shown_code(reader.get("/topics/9").get_data(as_text=True))
    assert blocks[blocks.index(imports) + 1] == source  # just above the section


def test_inline_code_escapes_then_marks_backticks():
    assert tour.inline_code("`<b>` & `x`") == "<code>&lt;b&gt;</code> &amp; <code>x</code>"


@pytest.mark.parametrize("number", TOPIC_NUMBERS)
def test_api_console_only_on_the_rest_and_jwt_topics(reader, number):
    html = reader.get(f"/topics/{number}").get_data(as_text=True)
    if number in (6, 11):
        assert ('data-users-url="/api/users"' in html and 'data-token-url="/api/token"' in html
                and 'data-notes-url="/api/notes"' in html)
        assert re.search(r'<section class="api-console"[^>]* hidden', html)  # shown by app.js
    else:  # topic 2 shows the console's template among its files, but runs none
        assert not re.search(r'<section class="api-console"', html)


def test_api_console_urls_keep_the_mount_prefix(client):
    html = client.get("/topics/6", base_url="http://localhost/demo").get_data(as_text=True)
    assert 'data-token-url="/demo/api/token"' in html and 'data-notes-url="/demo/api/notes"' in html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_a_real_browser_runs_the_tour_scripts(app, tmp_path):
    with serve_in_thread(app) as base:
        tour_dom = dump_dom(base + "/", tmp_path)
        topic_dom = dump_dom(base + "/topics/11", tmp_path)
    assert 'class="copy-button"' in tour_dom and 'class="toggle"' in tour_dom
    # One Copy button per code block: the section, the library snippets, the files, the tests.
    code_blocks = app.test_client().get("/topics/11").get_data(as_text=True).count('<pre class="code')
    assert topic_dom.count('class="copy-button"') == code_blocks > 1
    assert 'aria-pressed="false"' in topic_dom
    assert '<span class="tok-keyword">def</span> <span class="tok-definition">jwt_encode</span>' in topic_dom
    for shown_by_script in (r'<section class="api-console"[^>]*>', r'<p class="hint"[^>]*>'):
        assert "hidden" not in re.search(shown_by_script, topic_dom).group(0)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_large_text_fits_a_phone_and_shows_code_on_the_first_screen(app, tmp_path):
    with serve_in_thread(app) as base, headless_chromium(tmp_path) as browser:
        for number in TOPIC_NUMBERS:  # normal text, projected at 1280×720
            browser.open(base + f"/topics/{number}", 1280, 720)
            lesson_top = browser.evaluate(  # the lesson's module: a few of its lines show
                "document.querySelector('.lesson pre').getBoundingClientRect().top")
            assert lesson_top < 720 - 100, (number, lesson_top)
        browser.open(base + "/", 390)
        browser.evaluate("document.cookie = 'large_text=on; Path=/'")  # as the toggle does
        for number in [0, *TOPIC_NUMBERS]:
            url = base + (f"/topics/{number}" if number else "/")
            assert_fits(browser, url, 390)  # the API console's fieldsets included
            if number in (1, 6, 11):  # the same layout; 11 has the most above its code
                browser.open(url, 1280, 720)
                assert browser.evaluate("document.documentElement.classList.contains('large-text')")
                code_top = browser.evaluate(  # large text: the cheat sheet's snippet, then the lesson
                    "document.querySelector('.cheat-sheet pre').getBoundingClientRect().top")
                assert code_top < 720 - 100, (number, code_top)


def test_every_library_snippet_is_python_and_every_line_link_is_a_line_of_the_section(reader):
    for topic, folder in zip(TOPICS, LESSONS):
        first_line, source = tour.source_sections()[topic["number"]]
        html = reader.get(f"/topics/{topic['number']}").get_data(as_text=True)
        for panel in topic["elsewhere"]:
            if "snippet_file" in panel:
                ast.parse((folder / "teaching" / panel["snippet_file"]).read_text(encoding="utf-8"))
            if panel.get("language") == "python" and "cheat_sheet_file" in panel:
                ast.parse((folder / "teaching" / panel["cheat_sheet_file"]).read_text(encoding="utf-8"))
            for name in panel["ours"]:
                line = tour.name_line(source, first_line, name)
                assert line is not None, (topic["number"], name)
                assert first_line <= line < first_line + source.count("\n") + 1
                assert name in APP_LINES[line - 1], (topic["number"], name, APP_LINES[line - 1])
                assert f'href="#L{line}"><code>{name}</code>' in html and f'id="L{line}"' in html
    panelled = {topic["number"] for topic in TOPICS if topic["elsewhere"]}
    assert panelled >= {5, 6, 8, 10, 11, 12, 13, 14}


def test_every_file_a_topic_lists_exists_and_is_shown_as_it_is_on_disk(reader):
    for topic in TOPICS:
        html = reader.get(f"/topics/{topic['number']}").get_data(as_text=True)
        listed = {*topic["files"], *(path for panel in topic["elsewhere"] for path in panel["files"])}
        for path in listed:
            assert (ROOT / path).is_file(), path
            anchor = tour.file_anchor(path)
            assert f'id="{anchor}"' in html
            lines = re.findall(rf'<span class="line" data-line="\d+" id="{anchor}-L\d+">(.*?)\n</span>',
                               html, re.S)
            shown = [unescape(re.sub(r"<[^>]+>", "", line)) for line in lines]
            assert shown == (ROOT / path).read_text(encoding="utf-8").rstrip("\n").split("\n"), path
    for number, path in [(4, "templates/welcome.html"), (13, "templates/error.html"),
                         (14, "Dockerfile"), (14, "deploy/nginx.conf"), (8, ".env.example")]:
        assert path in TOPIC_BY_NUMBER[number]["files"]


def test_a_topic_page_shows_nothing_for_a_file_this_copy_lacks(client, monkeypatch):
    lacking = [topic | {"folder": folder.name} | ({"files": ["templates/no-such-file.html",
                                                              "templates/welcome.html"]}
                                                   if topic["number"] == 4 else {})
               for topic, folder in zip(TOPICS, LESSONS)]
    monkeypatch.setattr(tour, "load_topics", lambda: lacking)
    html = client.get("/topics/4").get_data(as_text=True)
    assert "no-such-file" not in html and 'id="file-templates-welcome-html"' in html


def test_highlighting_tells_comments_and_strings_apart_in_other_languages():
    jinja = tour.highlight('{# a comment #}\n<a href="{{ url_for(\'x\') }}">it\'s</a>', "jinja")
    assert '<span class="tok-comment">{# a comment #}</span>' in jinja
    assert '<span class="tok-string">&#34;{{ url_for(&#39;x&#39;) }}&#34;</span>' in jinja
    conf = tour.highlight('listen 80;  # port\nadd_header X "a # b";', "hash")
    assert '<span class="tok-comment"># port</span>' in conf
    assert '<span class="tok-string">&#34;a # b&#34;</span>' in conf
    # A shown file's lines get ids of their own, so that #L… always means a line of app.py.
    assert code_lines(tour.highlight("a\nb", "hash", anchor="file-x-L")) == []


def collected_tests(*args):
    """The test node ids of test_app.py that pytest collects with `args` (such as -k …)."""
    # --assert=plain: collecting runs no assert, so test_app.py needs no rewriting (half the time)
    result = subprocess.run([sys.executable, "-m", "pytest", "test_app.py", "--collect-only", "-q",
                             "-p", "no:cacheprovider", "--assert=plain", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    return [line for line in result.stdout.splitlines() if line.startswith("test_app.py::")]


def test_every_topic_shows_its_tests_and_a_pytest_command_that_runs_exactly_them(reader):
    whole = (ROOT / "test_app.py").read_text(encoding="utf-8")
    biggest = tour.source_sections(ROOT / "test_app.py")[11][1]  # the section with the most tests
    command = tour.pytest_command(biggest, whole)
    with ThreadPoolExecutor(2) as pool:  # two collections at once: pytest itself, with and without -k
        real_selection = pool.submit(collected_tests, "-k", re.search(r'-k "(.*)"', command).group(1))
        node_ids = collected_tests()
    assert len(node_ids) > 300
    for number, (first_line, source) in tour.source_sections(ROOT / "test_app.py").items():
        html = reader.get(f"/topics/{number}").get_data(as_text=True)
        tests_html = reader.get(f"/topics/{number}/tests").get_data(as_text=True)
        command = tour.pytest_command(source, whole)
        assert escape(command) in html and f'href="/topics/{number}/tests"' in html
        assert escape(command) in tests_html and f'id="test-L{first_line}"' in tests_html
        # -k keeps a test when one of its words is part of the test's id (name and parameters).
        words = re.fullmatch(r'python -m pytest test_app.py -k "(.*)"', command).group(1).split(" or ")
        selected = {node.split("::")[1].split("[")[0] for node in node_ids
                    if any(word in node.lower() for word in words)}
        assert selected == set(tour.test_names(source)), number
        assert len(command) < 400
    # pytest itself agrees, for the section with the most tests.
    assert {node.split("::")[1].split("[")[0] for node in real_selection.result()} == set(
        tour.test_names(biggest))


def test_every_topic_ends_with_lesson_exercises_then_app_py_ones(reader):
    for topic in TOPICS:
        assert len(topic["exercises"]) >= 2 and 2 <= len(topic["going_further"]) <= 3, topic["number"]
        html = reader.get(f"/topics/{topic['number']}").get_data(as_text=True)
        for exercise in topic["exercises"] + topic["going_further"]:
            assert as_shown(exercise["task"]) in html
            assert as_shown(exercise["check"]) in html
        # A topic whose exercises are test runs says so; the others, to restart the lesson.
        intros = [topic.get("exercises_intro", "restart the lesson"),
                  topic.get("going_further_intro", "restarted after it")]
        assert all(as_shown(intro) in html for intro in intros), topic["number"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_a_real_browser_shows_panels_files_tests_exercises_and_the_classic_errors(app, tmp_path):
    pages = [f"/topics/{number}" for number in TOPIC_NUMBERS] + ["/errors/classic"]
    with serve_in_thread(app) as base:
        doms = dict(zip(pages, browse([base + page for page in pages], tmp_path / "profile")))
    for number in TOPIC_NUMBERS:
        dom = doms[f"/topics/{number}"]
        assert 'id="tests-heading"' in dom and "python -m pytest test_app.py -k" in dom
        exercises = re.search(r'<section class="exercises".*?</section>', dom, re.S).group(0)
        assert exercises.count("<li>") >= 2
        assert dom.count('class="copy-button"') == dom.count('<pre class="code')  # app.js ran
        if number in (5, 6, 8, 10, 11, 12, 13, 14):
            panel = re.search(r'<div class="elsewhere-parts">.*?</section>', dom, re.S).group(0)
            assert "In the cheat sheet" in panel and "In our section" in panel
            assert 'href="#L' in panel and panel.count('class="copy-button"') >= 1
    assert 'id="file-templates-welcome-html"' in doms["/topics/4"]
    assert '<h1>Hello <bdi>{{ user }}</bdi></h1>' in unescape(doms["/topics/4"])
    assert 'id="file-dockerfile"' in doms["/topics/14"] and 'id="file-deploy-nginx-conf"' in doms["/topics/14"]
    errors = unescape(doms["/errors/classic"])
    for message in ("Working outside of application context.", "CSRF token is missing",
                    "405 Method Not Allowed", "Could not build url for endpoint 'notes'",
                    "TemplateNotFound: 404.html", "BadRequestKeyError: 400 Bad Request"):
        assert message in errors


# --- The lessons: each one small, and running alone as the page offers it -----

PINS = (ROOT / "requirements.txt").read_text(encoding="utf-8").split()


def lesson_modules(topic, folder):
    return [folder / name for name in topic["lesson"]["modules"]]


@pytest.mark.parametrize("topic", TOPICS, ids=lambda topic: str(topic["number"]))
def test_each_lesson_is_a_small_folder_with_its_app_tests_requirements_and_readme(topic):
    folder = LESSON_BY_NUMBER[topic["number"]]
    for module in lesson_modules(topic, folder):
        assert len(module.read_text(encoding="utf-8").splitlines()) <= 100, module
        tests = (folder / f"test_{module.name}").read_text(encoding="utf-8")
        assert len(re.findall(r"^def test_", tests, re.M)) >= 2
        assert re.search(r"^def app\(", tests, re.M) and re.search(r"^def client\(", tests, re.M)
        readme = (folder / "README.txt").read_text(encoding="utf-8")
        assert f"flask --app {module.stem} run" in readme and "python -m pytest" in readme
    assert set((folder / "requirements.txt").read_text(encoding="utf-8").split()) <= set(PINS)
    assert not (folder / "conftest.py").exists()  # its fixtures are in its test file, to read


def test_app_py_holds_no_code_as_a_string():
    # The teaching text and the libraries' snippets live with the lessons: app.py is code that runs.
    tree = ast.parse((ROOT / "app.py").read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            with contextlib.suppress(SyntaxError):
                code = ast.parse(node.value)
                assert not any(isinstance(part, (ast.FunctionDef, ast.ClassDef, ast.Import,
                                                 ast.ImportFrom)) for part in ast.walk(code)), node.value


def test_lessons_are_short_most_under_fifty_lines():
    sizes = sorted(len(module.read_text(encoding="utf-8").splitlines())
                   for topic, folder in zip(TOPICS, LESSONS) for module in lesson_modules(topic, folder))
    assert sizes[len(sizes) // 2] < 50 and sizes[-1] <= 100, sizes


def test_readme_lists_every_lesson_with_its_size():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for topic, folder in zip(TOPICS, LESSONS):
        sizes = " + ".join(str(len(module.read_text(encoding="utf-8").splitlines()))
                           for module in lesson_modules(topic, folder))
        row = rf"^\| {topic['number']} \| .*\[`{folder.name}/`\]\(lessons/{folder.name}/\).* \| {re.escape(sizes)} \| "
        assert re.search(row, readme, re.M), (folder.name, sizes)


class FormCollector(HTMLParser):
    """The forms of a page: (method, action, {field: value}), hidden values kept."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append((attrs.get("method", "get").upper(), attrs.get("action") or "", {}))
        elif tag in ("input", "textarea", "select") and self.forms and attrs.get("name"):
            value = attrs.get("value", "") if attrs.get("type") == "hidden" else "lesson-check"
            self.forms[-1][2][attrs["name"]] = value


def browse_lesson(base):
    """Follow every link of a served lesson from / and post every form it finds: {what: status}."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    statuses, queue, collector = {}, ["/"], FormCollector()

    def fetch(url, data=None):
        try:
            with opener.open(urljoin(base, url), data=data, timeout=10) as response:
                return response.status, response.read().decode(errors="replace"), response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace"), error.headers
    while queue and len(statuses) < 40:
        url = queue.pop()
        if url in statuses:
            continue
        statuses[url], body, headers = fetch(url)
        if headers.get_content_type() == "text/html":
            queue += [link for link in internal_links(body, urljoin("http://localhost/", url))
                      if link not in statuses]
            collector.feed(body)
    for method, action, fields in collector.forms:
        target = urljoin("/", action or "/")
        for values in (fields, {name: value for name, value in fields.items()
                                if name == "csrf_token"}):  # filled in, then left empty
            if method == "POST":
                statuses[f"POST {target} {sorted(values)}"] = fetch(target, urlencode(values).encode())[0]
            else:
                statuses[f"GET {target}?{urlencode(values)}"] = fetch(f"{target}?{urlencode(values)}")[0]
    return statuses


def run_downloaded_lesson(folder, modules):
    """In fresh interpreters that see only `folder`: its tests, then `flask --app M run` per module."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("FLASK_", "PYTHON")) and name != "APP_SETTINGS"}
    environment["PYTHONDONTWRITEBYTECODE"] = "1"
    tests = subprocess.run([sys.executable, "-I", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=folder, env=environment, capture_output=True, text=True, timeout=120)
    served = {}
    for module in modules:
        port, log = free_port(), folder.parent / f"{folder.name}-{module}.log"
        with open(log, "wb") as output:
            server = subprocess.Popen([sys.executable, "-I", "-m", "flask", "--app", module, "run",
                                       "--port", str(port)], cwd=folder, env=environment,
                                      stdout=output, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: server.poll() is not None or port_open(port), f"flask run of {module}", 30)
            served[module] = (browse_lesson(f"http://127.0.0.1:{port}") if server.poll() is None
                              else {"flask run exited": log.read_text(errors="replace")})
        finally:
            server.terminate()
            server.wait(timeout=10)
    return tests, served


def port_open(port):
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def test_every_lesson_downloads_and_runs_alone_in_an_empty_folder(reader, tmp_path):
    archives = {}
    for topic, folder in zip(TOPICS, LESSONS):
        response = reader.get(f"/topics/{topic['number']}/lesson.zip")
        assert response.status_code == 200 and response.mimetype == "application/zip"
        assert f"{folder.name}.zip" in response.headers["Content-Disposition"]
        with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
            names = archive.namelist()
            assert {name.split("/")[0] for name in names} == {folder.name}  # one folder
            assert not any("/teaching/" in name or "__pycache__" in name for name in names)
            assert f"{folder.name}/{topic['lesson']['modules'][0]}" in names
            assert {entry.external_attr >> 16 for entry in archive.infolist()} == {
                stat.S_IFREG | 0o644}  # each unzips as a plain file anyone can read
            archive.extractall(tmp_path / str(topic["number"]))
        archives[topic["number"]] = (tmp_path / str(topic["number"]) / folder.name,
                                     [Path(name).stem for name in topic["lesson"]["modules"]])
    with ThreadPoolExecutor(4) as pool:
        results = dict(zip(archives, pool.map(lambda job: run_downloaded_lesson(*job),
                                              archives.values())))
    for number, (tests, served) in results.items():
        assert tests.returncode == 0 and " passed" in tests.stdout, (number, tests.stdout[-2000:])
        for module, statuses in served.items():
            assert statuses.get("/") == 200, (number, module, statuses)
            assert all(status < 500 for status in statuses.values()), (number, module, statuses)
