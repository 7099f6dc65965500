"""Flask Tour: every topic of the Flask cheat sheet, working live, in one module.

Run it with ``flask run`` (no configuration needed), then open http://127.0.0.1:5000/.
Each numbered section below is one topic of the cheat sheet, hardened for production; each
topic page shows its beginner's lesson (lessons/NN_name/) first, then this section's
source beside its live demos, so the code you read is the code that runs. A section copies
alone: paste it, with the sections its "Uses" line names, into your own project and
register it as `create_app` does.

Sections with views are Blueprints (endpoints such as `forms.login`); the models and the
JSON Web Tokens, which have none, have an `init_*(app)` function, as flaskr's
`db.init_app` does. A Blueprint that needs settings or tables sets them up in a
`@bp.record_once` function, which Flask runs when the app registers it.

The file is in the order the sections build on each other (as minitwit reads, each section
after the ones it uses); the banners keep the cheat sheet's numbers, so "find `# 5.`" lands
on topic 5. Three places read ahead: `create_app` (topic 1) registers every later section;
the tour's views (topic 2) use the appendix at the end, which reads each lesson; and within a
section the cheat sheet's construct comes first, the helpers and constants it calls after it.
Python looks those names up when a request runs, so the order works.
"""

import ast
import base64
import contextlib
import contextvars
import functools
import hashlib
import hmac
import inspect
import io
import json
import keyword
import logging
import math
import os
import re
import secrets
import shutil
import sqlite3
import stat
import tempfile
import threading
import time
import tokenize
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import click
from flask import (
    Blueprint,
    Config,
    Flask,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    send_from_directory,
    session,
    url_for,
)
from flask.cli import load_dotenv, with_appcontext
from flask.views import MethodView
from itsdangerous import BadSignature, URLSafeSerializer
from markupsafe import Markup, escape
from werkzeug.exceptions import (BadHost, Forbidden, HTTPException, MethodNotAllowed,
                                 SecurityError, ServiceUnavailable, TooManyRequests)
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import BuildError
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.utils import secure_filename


# ---------------------------------------------------------------------------
# 1. Flask setup & project structure
# ---------------------------------------------------------------------------
# An application factory instead of a global app: each test or embedding builds its own
# app, with its own settings and database. The factory is the one place that knows every
# section: it loads the settings, then registers each section's Blueprint (or calls its
# `init_*`). `app` at the end of the file keeps `flask run` and `gunicorn app:app` working.
# Uses `configure` (section 8), `init_database` (section 9), `init_models` (section 10),
# `auth_bp` (section 11.1), `init_jwt` (section 11.2), `accounts_bp` (section 11.3), `hooks_bp`
# (section 12), `tour_bp` (section 2), `database_bp` (section 9), `migrations_bp` (section 18),
# `params_bp` (section 3), `templates_bp` (section 4), `forms_bp` (section 5), `api_bp`
# (section 6), `json_bp` (section 7), `config_bp` (section 8), `errors_bp` (section 13),
# `deployment_bp` (section 14), `testing_bp` (section 15), `blueprints_bp` (section 16),
# `contexts_bp` (section 17), `uploads_bp` (section 19).


def create_app(config=None, *, instance_path=None):
    """Build a Flask Tour app; `config` overrides every other setting source."""
    app = Flask(__name__, instance_path=instance_path)
    configure(app, config)
    init_database(app)
    init_models(app)
    init_jwt(app)
    app.register_blueprint(hooks_bp)  # first: ids and the body limit before any other hook
    app.register_blueprint(auth_bp)  # then g.user, so that even a refused form shows who you are
    app.register_blueprint(tour_bp)
    app.register_blueprint(database_bp)
    app.register_blueprint(migrations_bp)
    app.register_blueprint(params_bp)
    app.register_blueprint(templates_bp)
    app.register_blueprint(forms_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(json_bp)
    app.register_blueprint(config_bp)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(errors_bp)
    app.register_blueprint(deployment_bp)
    app.register_blueprint(testing_bp)
    app.register_blueprint(blueprints_bp)
    app.register_blueprint(contexts_bp)
    app.register_blueprint(uploads_bp)
    return app


# ---------------------------------------------------------------------------
# 2. Routing (@app.route)
# ---------------------------------------------------------------------------
# `@bp.route` maps a URL to a view function, as the cheat sheet's `@app.route` does; a
# Blueprint groups a section's routes, and `create_app` registers it on the app. Endpoints
# are named after the Blueprint: `url_for("tour.topic", number=2)`. The `int` converter
# makes `/topics/abc` a 404 before the view runs, so no view parses its own arguments.
# `/structure` and `/routes` show the app's Blueprints and URL map (topics 1 and 2).
# Uses `tour_page`, `get_topic`, `topic_page`, `tests_page`, `lesson_folder` and
# `lesson_zip` (appendix); its pages extend base.html (section 4).

tour_bp = Blueprint("tour", __name__, template_folder="templates")


@tour_bp.route("/")
def index():
    """The tour: every topic with its demos."""
    return tour_page()


@tour_bp.route("/topics/<int:number>")
def topic(number):
    """One topic: its lesson, its demos, then its section of this file."""
    return topic_page(get_topic(number))


@tour_bp.route("/topics/<int:number>/lesson.zip")
def lesson_download(number):
    """One topic's lesson folder as a zip file, to unpack and run on its own."""
    folder = lesson_folder(get_topic(number))
    return send_file(lesson_zip(folder), mimetype="application/zip", as_attachment=True,
                     download_name=f"{folder.name}.zip")


@tour_bp.route("/topics/<int:number>/tests")
def topic_tests(number):
    """The tests of one topic: its section of test_app.py."""
    return tests_page(get_topic(number))


@tour_bp.route("/structure")
def structure():
    """Topic 1's demo: the project's files and the Blueprints the factory registered."""
    root = Path(current_app.root_path)
    files = sorted({str(path.relative_to(root)) for pattern in PROJECT_FILES
                    for path in root.glob(pattern) if path.is_file()})
    blueprints = [(name, blueprint.url_prefix or "/",
                   sum(rule.endpoint.startswith(name + ".") for rule in current_app.url_map.iter_rules()))
                  for name, blueprint in current_app.blueprints.items()]
    return render_template("structure.html", files=files, blueprints=blueprints,
                           rules=url_rules())


# What /structure lists: the project's own files, never instance/ (the secret key) or .env.
PROJECT_FILES = ("*.py", "*.txt", "*.md", "*.yml", "Dockerfile", ".env.example",
                 "templates/*", "static/*", "deploy/*", "docs/*")


@tour_bp.route("/routes")
def routes():
    """Topic 2's demo: every URL rule; build a URL from one, then match it back."""
    tryable = [rule for rule in url_rules() if "GET" in rule["methods"] and len(rule["arguments"]) <= 1]
    endpoints = {rule["endpoint"]: rule for rule in tryable}
    chosen = endpoints.get(request.args.get("endpoint"), endpoints.get("params.user"))
    value = request.args.get("value", "Ada")[:200]
    return render_template("routes.html", rules=url_rules(), tryable=tryable, chosen=chosen,
                           value=value, tried=try_rule(chosen, value) if chosen else None)


def url_rules():
    """The app's URL rules as `flask routes` lists them, with each argument's converter."""
    return [{"rule": rule.rule, "endpoint": rule.endpoint,
             "methods": sorted(rule.methods - {"HEAD", "OPTIONS"}),
             "arguments": re.findall(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", rule.rule)}
            for rule in sorted(current_app.url_map.iter_rules(), key=lambda rule: rule.rule)]


def try_rule(rule, value):
    """Build a URL for `rule` with `value`, then match it back: (URL, view arguments, error)."""
    arguments = {name: value for _, name in rule["arguments"]}
    try:
        url = url_for(rule["endpoint"], **arguments)
    except (ValueError, BuildError) as error:  # the int converter refuses "abc"
        return None, None, f"url_for refused it: {error}"
    adapter = current_app.create_url_adapter(request)
    try:
        endpoint, view_arguments = adapter.match(unquote(urlsplit(url).path[len(request.script_root):]))
    except HTTPException as error:  # a value with a "/" matches another rule, or none
        return url, None, f"it does not match back: {error}"
    return url, f"{endpoint} with {view_arguments!r}", None


# ---------------------------------------------------------------------------
# 4. Templates (Jinja2)
# ---------------------------------------------------------------------------
# `render_template` fills in a file from templates/. Every page extends `base.html`, the
# one layout; `_macros.html` holds the form-field and pagination macros. Jinja2 escapes
# every `{{ value }}` in .html templates, and `url_for` builds every link, so pages keep
# working when the app is mounted under a prefix. (Each `url_for` costs about 25 µs; the
# tour's own pages build their many links once per app, see the appendix, and every other
# page builds its links on each request.) `has_endpoint` lets `base.html` link
# only to the sections an app has registered, so a copied section's pages still render.
# Each Blueprint with pages names templates/ as its `template_folder`, so it finds them in
# someone else's app too, where that app's own templates win a name clash: its base.html
# gives our pages its layout (with `title` and `content` blocks, which ours fill).
# Uses nothing from other sections: base.html shows who is logged in, and the log-out
# form, only when the app has the sections that provide them.

templates_bp = Blueprint("templates", __name__, template_folder="templates")


@templates_bp.route("/welcome/<user>")
def welcome(user):
    """Render templates/welcome.html with the user's name."""
    return render_template("welcome.html", user=user)


@templates_bp.route("/favicon.ico")
def favicon():
    """The icon, for browsers that ask for /favicon.ico before reading the page's <link>."""
    return redirect(url_for("static", filename="favicon.svg"), 301)


@templates_bp.app_template_global()
def has_endpoint(endpoint):
    """True when the app has a view for `endpoint`, so a template can link to it."""
    return endpoint in current_app.view_functions


# ---------------------------------------------------------------------------
# 7. JSON responses (jsonify)
# ---------------------------------------------------------------------------
# `jsonify` (or simply returning a dict) makes a JSON response. Errors get the standard
# shape of RFC 9457, `application/problem+json` with `type`, `title`, `status` and
# `detail`, so clients handle every failure the same way. Request bodies go through
# `json_body` and `validate`, the one validation helper that the HTML forms use too.
# Uses nothing from other sections.

json_bp = Blueprint("json", __name__)


@json_bp.route("/data")
def data():
    """A small JSON document."""
    return jsonify({"name": "Nutan", "role": "DevOps Engineer"})


HTTP_ERROR_TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 413: "Content Too Large",
    415: "Unsupported Media Type", 422: "Unprocessable Content", 429: "Too Many Requests",
    500: "Internal Server Error", 503: "Service Unavailable",
}


def problem(status, detail, headers=None, **extra):
    """An RFC 9457 problem+json response."""
    body = {"type": "about:blank", "title": HTTP_ERROR_TITLES.get(status, "Error"),
            "status": status, "detail": detail, **extra}
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    response.headers.extend(headers or {})
    return response


def invalid_fields(errors):
    """The 422 problem for a body whose fields failed validation."""
    return problem(422, "Some fields are invalid.", errors=errors)


def json_body():
    """The request's JSON body; 415 when it is not JSON, 400 when it is malformed."""
    if not request.is_json:
        abort(415, "Send a JSON body with Content-Type: application/json.")
    try:
        data = json.loads(request.get_data(), object_pairs_hook=unique_members)
    except ValueError:  # not JSON, or not UTF-8
        abort(400, "The body is not valid JSON.")
    except RecursionError:  # absurdly nested JSON exhausts the parser's stack
        abort(400, "The JSON body is nested too deeply.")
    if not isinstance(data, dict):
        abort(422, "The JSON body must be an object.")
    return data


def unique_members(pairs):
    """A JSON object's members as a dict; a name given twice is a 400."""
    # Parsers disagree on which duplicate wins (ours kept the last), so refuse both.
    if len({name for name, _ in pairs}) != len(pairs):
        abort(400, "The JSON body names a member twice.")
    return dict(pairs)


def is_api_request():
    """True for requests to /api/…, which answer in JSON and ignore cookies."""
    return request.path == "/api" or request.path.startswith("/api/")


@dataclass(frozen=True)
class Field:
    """The rules for one text field of a form or JSON body."""

    max_length: int
    min_length: int = 0
    pattern: str = None
    pattern_message: str = ""

    def check(self, value):
        """Return an error message for `value`, or None when it is fine."""
        if not isinstance(value, str):
            return "Must be a string."
        if not is_utf8_encodable(value):  # JSON's "\ud800" escapes decode to lone surrogates
            return "Must be valid Unicode text."
        if self.min_length and not value:
            return "This field is required."
        if len(value) < self.min_length:
            return f"Must be at least {self.min_length} characters."
        if len(value) > self.max_length:
            return f"Must be at most {self.max_length} characters."
        if self.pattern and not re.fullmatch(self.pattern, value):
            return self.pattern_message
        return None


def is_utf8_encodable(text):
    """False for strings SQLite and the password hasher cannot store, such as lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


USER_FIELDS = {
    "username": Field(32, 3, r"[A-Za-z0-9_.-]+", "Use letters, digits, '.', '_' or '-'."),
    "password": Field(256, 8),
}
NOTE_FIELDS = {"title": Field(200, 1), "body": Field(10_000)}
SEARCH_FIELD = Field(200)  # SQLite refuses LIKE patterns over 50,000 characters


def validate(data, fields, partial=False):
    """Check `data` against `fields`; return (clean values, {field: message})."""
    errors = {name: "Unknown field." for name in data if name not in fields}
    values = {}
    for name, rule in fields.items():
        if name not in data:
            if not partial and rule.min_length:
                errors[name] = "This field is required."
            continue
        # Checked as sent, never stripped: forms, API and OpenAPI schema judge the same string
        # (and str.strip() removes more than spaces: U+3000, U+0085, \x1c-\x1f).
        value = data[name]
        message = rule.check(value)
        if message:
            errors[name] = message
        values[name] = value
    return values, errors


def field_schemas(fields):
    """JSON Schema properties for `fields`, so the OpenAPI document matches `validate`."""
    return {name: {"type": "string", "minLength": rule.min_length, "maxLength": rule.max_length,
                   **({"pattern": f"^{rule.pattern}$"} if rule.pattern else {})}
            for name, rule in fields.items()}


# ---------------------------------------------------------------------------
# 8. Flask configurations & environment variables
# ---------------------------------------------------------------------------
# Settings are layered, later wins: `DEFAULTS` below, then the Python file named by
# APP_SETTINGS (`from_envvar`, as in the cheat sheet), then FLASK_* variables
# (`from_prefixed_env`, with `.env` loaded by python-dotenv without overriding real
# variables), then the mapping given to `create_app`. Each section then adds its own
# defaults with `app.config.setdefault`, which never overrides a value set here.
# `/config` shows where each setting came from; it hides secrets, and every setting that
# neither Flask nor .env.example (the list of the app's own) names. With no SECRET_KEY at
# all, one is generated once into the instance folder; a weak one is refused outside debug
# and testing.
# Uses nothing from other sections; its page extends base.html (section 4).

DEFAULTS = {  # Flask's own settings that this app changes
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "SESSION_COOKIE_SAMESITE": "Lax",
}


def configure(app, overrides):
    """Load settings from every source in order, remembering where each came from."""
    sources = {key: "Flask default" for key in app.config}

    def apply(values, source):
        for key, value in values.items():
            if key.isupper():
                app.config[key] = value
                sources[key] = source

    apply(DEFAULTS, "Flask Tour default")
    load_dotenv()  # fills os.environ from .env, never overriding real variables
    if os.environ.get("APP_SETTINGS"):
        settings_file = Config(app.root_path)
        settings_file.from_envvar("APP_SETTINGS")
        apply(settings_file, "APP_SETTINGS file")
    environment = Config(app.root_path)
    environment.from_prefixed_env()
    apply(environment, "FLASK_* environment variable")
    apply(overrides or {}, "create_app() argument")
    if app.config["SECRET_KEY"] is None:
        app.config["SECRET_KEY"] = instance_secret_key(app.instance_path)
        sources["SECRET_KEY"] = "generated into the instance folder"
    refuse_weak_secrets(app)
    app.extensions["config_sources"] = sources


config_bp = Blueprint("config", __name__, template_folder="templates")


@config_bp.route("/config")
def show_config():
    """The effective settings, where each came from, secrets masked."""
    # In an app that loads its settings itself, not with `configure`: each is its own, so
    # every one neither Flask nor .env.example names stays hidden.
    sources = current_app.extensions.get("config_sources") or dict.fromkeys(
        current_app.config, "set by the app")
    settings = [(key, shown_value(key, value, sources.get(key)),
                 sources.get(key, "default of the section that uses it"))
                for key, value in sorted(current_app.config.items())]
    return render_template("config.html", settings=settings)


EXAMPLE_SECRET = "change-me-to-a-long-random-string-of-64-hex-characters"
SECRET_NAME = re.compile(
    r"SECRET|PASS|PWD|CREDENTIAL|PRIVATE|AUTH|SIGNATURE|APIKEY|(^|_)PIN(_|$)|_KEY$|_TOKEN$")
SERVER_PATHS = {"DATABASE", "UPLOAD_FOLDER"}  # where files live on the server is no visitor's business


def shown_value(key, value, source):
    """The value as /config shows it: secrets, settings this app does not know, and server
    paths masked."""
    # A setting that neither Flask nor a section defines is someone else's, and may be a
    # secret of any type under any name: FLASK_DB_URL=postgres://user:pw@…, FLASK_DOOR=4821.
    known = (key in Flask.default_config or key in DEFAULTS or source is None
             or key in documented_settings(current_app.root_path))
    if SECRET_NAME.search(key) or not known:
        return "•••••• (hidden)"
    if key in SERVER_PATHS:
        return "•••••• (a path on the server)"
    return repr(value)


@functools.cache
def documented_settings(folder):
    """The settings .env.example names: every one a section defines (a test checks that)."""
    try:
        text = Path(folder, ".env.example").read_text(encoding="utf-8")
    except OSError:  # not shipped (the Docker image): settings set from outside stay hidden
        return frozenset()
    return frozenset(re.findall(r"^# FLASK_([A-Z0-9_]+)=", text, re.MULTILINE))


def instance_secret_key(instance_path):
    """Read the instance folder's secret key, creating it atomically on first use."""
    os.makedirs(instance_path, exist_ok=True)
    key_file = os.path.join(instance_path, "secret_key")
    if not os.path.exists(key_file):
        descriptor, temporary = tempfile.mkstemp(dir=instance_path)  # created with mode 0600
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
        try:
            os.link(temporary, key_file)  # atomic: of workers racing, exactly one key wins
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    with open(key_file, encoding="utf-8") as file:
        return file.read().strip()


def refuse_weak_secrets(app):
    """Stop with a helpful message when a configured key is guessable."""
    if app.debug or app.testing:
        return
    for name in ("SECRET_KEY", "JWT_SECRET_KEY"):
        if app.config.get(name) is not None and is_weak_key(app.config[name]):
            raise RuntimeError(
                f"{name} is too weak (empty, shorter than 32 bytes, or the example value). "
                f"Set FLASK_{name} to the output of "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`, "
                "or unset it to use the key generated in the instance folder.")


def is_weak_key(key):
    """True for a key under 32 bytes, the example value, or not text at all."""
    if not isinstance(key, (str, bytes)):  # FLASK_SECRET_KEY=123… arrives as a number
        return True
    secret = key_bytes(key)
    return len(secret) < 32 or secret == EXAMPLE_SECRET.encode()


def key_bytes(key):
    """A configured key as bytes, as HMAC needs it."""
    return key if isinstance(key, bytes) else str(key).encode()


# ---------------------------------------------------------------------------
# 9. Database integration (sqlite3)
# ---------------------------------------------------------------------------
# flaskr's pattern: `get_db()` opens one connection per request, on first use, and keeps
# it on `g`; `close_db()` closes it at teardown. Every section that has tables hands its
# `CREATE TABLE IF NOT EXISTS` script to `add_schema`; the app's first connection creates
# them all, and `flask init-db` drops and recreates them. A section that changes a table
# it already had adds a numbered migration (section 18), which sets two things here: the
# `migrate` function the first connection runs before creating tables, and the
# `schema_version` that `flask init-db` writes into SQLite's `PRAGMA user_version`.
# The app creates the database file only where none was ever made: not when a record of
# it (`.NAME.created`, written beside it), or its -wal or -shm, is there, nor in a process
# that has opened it already. A lost database is a 503 that says so, never an empty one.
# `database_problem` says, in a sentence naming the file, why the database takes no write;
# `database_errors_explained` says it for a `flask` command, in one line, not a traceback.
# `/database` shows the rows of your notes and the SQL that read them, when the app also
# has the models and the login.
# Uses nothing from other sections; its page extends base.html (section 4).


def get_db():
    """The request's database connection, opened on first use."""
    if "db" not in g:
        path = current_app.config["DATABASE"]
        if not current_app.extensions.get("database_ready"):
            if os.path.dirname(path) == current_app.instance_path:  # the default place
                os.makedirs(current_app.instance_path, exist_ok=True)
            create_schema(path, current_app.extensions["schemas"],
                          current_app.extensions.get("migrate"))
            current_app.extensions["database_ready"] = True
        g.db = connect(path)
    return g.db


def close_db(exception=None):
    """Close the request's connection, if it opened one."""
    db = g.pop("db", None)
    if db is not None:
        db.close()  # a request that failed halfway: closing rolls back what it left open


BUSY_TIMEOUT = 5  # seconds a statement waits for another process's write lock, then 503


def connect(path, create=False):
    """Open a connection with the pragmas every connection needs."""
    # mode=rw: a database file deleted while the app runs is an error (503), not a new
    # empty file that would take writes while the old data is gone.
    mode = "rwc" if create else "rw"
    make_side_files_writable(path)
    try:
        db = sqlite3.connect(f"file:{quote(path)}?mode={mode}", uri=True, timeout=BUSY_TIMEOUT)
    except sqlite3.OperationalError as error:  # "unable to open database file" names no file
        raise sqlite3.OperationalError(database_problem(path) or f"{error}: {path}") from error
    db.row_factory = sqlite3.Row  # rows behave like dicts: row["title"]
    db.execute("PRAGMA foreign_keys = ON")  # SQLite leaves them off unless asked, per connection
    return db


def make_side_files_writable(path):
    """Give SQLite's -wal and -shm files the database's mode again if they lost write access."""
    # SQLite creates them with the database file's mode: a request made while the database was
    # read-only (chmod 444) leaves a read-only -shm, and every write fails after the chmod back.
    try:
        database = os.stat(path)
    except OSError:
        return
    mode = stat.S_IMODE(database.st_mode)
    for side in (path + "-wal", path + "-shm"):
        try:
            found = os.stat(side)
        except OSError:
            continue
        if (stat.S_IMODE(found.st_mode) != mode and not os.access(side, os.W_OK)
                and os.access(path, os.W_OK)):
            with contextlib.suppress(OSError):  # not its owner: database_problem says what to do
                os.chmod(side, mode)
                current_app.logger.warning("Made %s writable again (mode %o, as %s): a read-only "
                                           "period of the database had left it read-only",
                                           side, mode, path)


def database_problem(path, min_free=64 * 1024):
    """Why the database at `path` cannot take a write, in a sentence naming the file; or None."""
    folder = os.path.dirname(os.path.abspath(path))
    user = f"uid {os.geteuid()}" if hasattr(os, "geteuid") else "its user"  # Windows has none
    if not os.path.isdir(folder):
        return f"the database's folder {folder} does not exist"
    missing = not os.path.exists(path)
    if missing and (traces := traces_of_a_database(path)):
        names = ", ".join(os.path.basename(name) for name in traces)
        return (f"the database {path} is missing, but one was made there ({names} still there):"
                " the app will not create an empty one in its place. Restore it from a backup,"
                " or run `flask init-db` to start with an empty database")
    if hasattr(os, "statvfs") and os.statvfs(folder).f_flag & os.ST_RDONLY:
        return f"the filesystem holding {folder} is mounted read-only"
    for name in (path, path + "-wal", path + "-shm"):
        if os.path.exists(name) and not os.access(name, os.W_OK):
            found = os.stat(name)
            fix = ("make it writable, or delete it while no process has the database open"
                   if name.endswith("-shm") else "make it writable")
            return (f"{name} is read-only for this process ({user}): its mode is "
                    f"{stat.S_IMODE(found.st_mode):o}, its owner uid {found.st_uid}; {fix}")
    if not os.access(folder, os.W_OK):
        return (f"the folder {folder} is read-only for this process ({user}): "
                f"SQLite must create {os.path.basename(path)}, its -wal and -shm in it")
    if missing:
        return f"the database {path} does not exist"
    return disk_full(path, min_free)


def disk_full(path, min_free):
    """A sentence naming the file when its disk has under `min_free` bytes free, else None."""
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    if free < min_free:
        return f"the disk holding {path} is full: {free} bytes free, {min_free} wanted"
    return None


def traces_of_a_database(path):
    """The files that show a database was made at `path`: its record, its -wal and -shm."""
    return [name for name in (creation_record(path), path + "-wal", path + "-shm")
            if os.path.exists(name)]


def creation_record(path):
    """The file that records that a database was made at `path` (hidden, so `rm *` spares it)."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.created")


def record_creation(path):
    """Write the record that a database exists at `path`, once; False if it was there already."""
    try:
        with open(creation_record(path), "x", encoding="utf-8") as record:
            record.write(f"A database was made at {path}. While this file is here, the app will "
                         "not create an empty one in its place if it disappears.\n")
    except FileExistsError:
        return False
    except OSError:  # a read-only folder: its database takes no write either, and says so
        return False
    return True


def create_schema(path, schemas, migrate=None):
    """Open the database (create it only where none was ever made); add every section's tables."""
    create = not os.path.exists(path) and not traces_of_a_database(path)  # never made here
    db = connect(path, create=create)
    try:
        use_wal(db)  # readers never block the writer (kept in the file)
        if migrate:  # first: a table made by an older version gets its new columns
            migrate(db)
        db.executescript("".join(schemas))
    finally:
        db.close()
    if record_creation(path):
        current_app.logger.warning("%s the database %s: %s records it", "Created" if create else
                                   "Opened", path, creation_record(path))


def use_wal(db):
    """Switch the database to WAL mode, waiting for other connections as a write does."""
    # The one statement busy_timeout does not cover: it fails at once ("database is locked")
    # while another connection holds a lock, as when workers open a database together.
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            return db.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as error:
            if str(error) != "database is locked" or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def init_db(path, schemas, version=0):
    """Drop every table and create the schema afresh, marked as `version` (nothing to migrate)."""
    db = connect(path, create=True)
    try:
        tables = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        drops = "".join(f"DROP TABLE IF EXISTS {quoted_name(name)};" for name in tables)
        # Foreign keys off while dropping, and one transaction: no request sees half the tables.
        db.executescript(f"PRAGMA foreign_keys = OFF; BEGIN IMMEDIATE; {drops} "
                         f"{''.join(schemas)} PRAGMA user_version = {int(version)}; COMMIT;")
    finally:
        db.close()
    record_creation(path)  # the one deliberate way to a new, empty database


def quoted_name(name):
    """An SQL name in double quotes, its own doubled: a table named `x"; ATTACH …` stays a name."""
    return '"' + name.replace('"', '""') + '"'


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Delete all data and recreate the tables."""
    init_db(current_app.config["DATABASE"], current_app.extensions["schemas"],
            current_app.extensions.get("schema_version", 0))
    click.echo(f"Initialized the database at {current_app.config['DATABASE']}.")


def database_errors_explained(command):
    """A command's database failure as one line saying why and exit status 1, not a traceback."""
    @functools.wraps(command)
    def wrapped(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except sqlite3.Error as error:  # missing, read-only, locked, a failing migration …
            problem = database_problem(current_app.config["DATABASE"])  # as the 503 page
            raise click.ClickException(problem[:1].upper() + problem[1:] if problem
                                       else str(error)) from None
    return wrapped


def init_database(app):
    """Set the database's path, close connections at teardown, add `flask init-db`."""
    configured = app.config.get("DATABASE")
    if configured and not os.path.isdir(os.path.dirname(os.path.abspath(configured))):
        raise RuntimeError(f"DATABASE is {configured!r}, but its folder does not exist. "
                           "Create the folder, or unset DATABASE to use the instance folder.")
    if not configured:
        app.config["DATABASE"] = os.path.join(app.instance_path, "flask_tour.sqlite")
    app.extensions["schemas"] = []
    app.teardown_appcontext(close_db)
    app.cli.add_command(init_db_command)


def add_schema(app, schema):
    """Have the app create `schema`'s tables along with everyone else's."""
    app.extensions["schemas"].append(schema)


database_bp = Blueprint("database", __name__, template_folder="templates")


@database_bp.route("/database")
def show_rows():
    """Topic 9's demo: the rows of your notes, and the SQL that read them."""
    db = get_db()
    tables = [row["name"] for row in db.execute(TABLES_SQL)]
    user = g.get("user")  # set by the login (section 11) when it is registered
    rows = db.execute(NOTES_SQL, (user.id,)).fetchall() if user else None
    return render_template("database.html", tables=tables, tables_sql=TABLES_SQL,
                           notes_sql=NOTES_SQL, user=user, rows=rows)


TABLES_SQL = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
NOTES_SQL = "SELECT * FROM notes WHERE user_id = ? ORDER BY id DESC LIMIT 10"


# ---------------------------------------------------------------------------
# 18. Schema migrations
# ---------------------------------------------------------------------------
# `CREATE TABLE IF NOT EXISTS` makes a table once and never changes it again: a database
# made by an older version keeps its old columns. A migration is the change that brings it
# up to date: a number, a name, and its SQL (or a function given the connection). Sections
# call `add_migration` in order; SQLite's `PRAGMA user_version` keeps, in the file, the
# number of the last one applied. The app's first connection applies the pending ones, each
# in one transaction together with its new number: all of it or none of it. A new database
# gets today's tables from `add_schema` and is marked as migrated, so a change is written
# twice: in the table's `CREATE TABLE` (for new databases) and as a migration (for old ones).
# Migrations run before the `CREATE TABLE` scripts: one that changes a table a section added
# later (attachments, say) first creates it as it was then, with `CREATE TABLE IF NOT EXISTS`.
# `flask db-status` shows the versions and what is pending, `flask db-upgrade` applies it;
# `/migrations` lists them.
# Uses `get_db`, `connect`, `database_errors_explained` and the `DATABASE` setting (section
# 9); its page extends base.html (section 4).

# cli_group=None: its commands are `flask db-upgrade`, not `flask migrations db-upgrade`.
migrations_bp = Blueprint("migrations", __name__, template_folder="templates", cli_group=None)


def add_migration(app, number, name, change):
    """Have the app apply `change` (SQL text, or a function given the connection) once."""
    migrations = app.extensions.setdefault("migrations", [])
    # Numbers are 1, 2, 3 … in order: two branches that both took the next one fail here, at
    # startup, not halfway through someone's database.
    if number != len(migrations) + 1:
        raise ValueError(f"migration {number} ({name}) is out of order: "
                         f"the next number is {len(migrations) + 1}")
    migrations.append(Migration(number, name, change))
    app.extensions["migrate"] = apply_pending  # section 9's first connection calls it
    app.extensions["schema_version"] = number  # what `flask init-db` marks its new tables as


def apply_pending(db):
    """Apply the app's pending migrations to `db`, each in one transaction; return them."""
    migrations = current_app.extensions.get("migrations", [])
    applied = []
    while True:
        with write_transaction(db):
            version = checked_version(db, migrations)
            if version == len(migrations):
                return applied
            if not db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                set_version(db, len(migrations))  # a new, empty file: it gets today's tables
                return applied
            migration = migrations[version]
            run(db, migration)
            set_version(db, migration.number)
        current_app.logger.warning("Applied migration %d (%s) to %s", migration.number,
                                   migration.name, current_app.config.get("DATABASE"))
        applied.append(migration)


@migrations_bp.cli.command("db-upgrade")
@database_errors_explained  # a database newer than the code, a failing migration …
def db_upgrade_command():
    """Apply the pending migrations, each in one transaction."""
    path = current_app.config["DATABASE"]
    with contextlib.closing(connect(path)) as db:
        applied = apply_pending(db)
    get_db()  # and the tables added since, as the app's first connection would
    for migration in applied:
        click.echo(f"Applied {migration.number}: {migration.name}")
    click.echo(f"The database {path} is at version {len(current_app.extensions.get('migrations', []))}"
               f", the latest{'' if applied else '; nothing to do'}.")


@migrations_bp.cli.command("db-status")
@database_errors_explained
def db_status_command():
    """Show the database's version, the code's latest, and the pending migrations."""
    path = current_app.config["DATABASE"]
    migrations = current_app.extensions.get("migrations", [])
    with contextlib.closing(connect(path)) as db:
        version = stored_version(db)
        click.echo(f"Database: {path}\nCurrent version: {version}\nLatest version: {len(migrations)}")
        checked_version(db, migrations)  # newer than the code, or no version of ours: why, not a list
    for migration in migrations[version:]:
        click.echo(f"Pending {migration.number}: {migration.name}")


@migrations_bp.route("/migrations")
def show_migrations():
    """Topic 18's demo: the database's version and every migration, applied or pending."""
    version = stored_version(get_db())  # get_db has applied the pending ones at the first connection
    migrations = current_app.extensions.get("migrations", [])
    # Not the file's path: like /config, the page keeps where the data lives to itself.
    return render_template("migrations.html", version=version, migrations=migrations)


@dataclass(frozen=True)
class Migration:
    """One change to the schema: applied once, in order, in one transaction."""

    number: int
    name: str
    change: object  # SQL text (one statement or several), or a function given the connection

    @property
    def code(self):
        """What the migration runs, to show: its SQL, or its function's source."""
        return self.change if isinstance(self.change, str) else inspect.getsource(self.change)


def run(db, migration):
    """Run one migration's SQL, statement by statement, or call its function."""
    if callable(migration.change):
        migration.change(db)  # it must not commit: the caller's transaction holds it
        return
    # executescript would COMMIT first and run the rest outside the transaction.
    for statement in split_statements(migration.change):
        db.execute(statement)


def split_statements(sql):
    """SQL text as its statements (a `;` inside quotes or a trigger body does not end one)."""
    statements, current = [], ""
    for piece in sql.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \t\r\n;"):
                statements.append(current)
            current = ""
    return statements


@contextlib.contextmanager
def write_transaction(db):
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error, in autocommit mode meanwhile."""
    previous, db.isolation_level = db.isolation_level, None  # no implicit transaction
    # IMMEDIATE takes the write lock at once: workers starting together queue here, and the
    # next one in sees the number the first one wrote.
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        # The version number with the rest: the next start tries again. (After a full disk or
        # an I/O error SQLite may have rolled back already: then the error itself is raised.)
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    finally:
        db.isolation_level = previous


def checked_version(db, migrations):
    """The database's version; an error that says what to do when it is past the code's last."""
    version = stored_version(db)
    # Older code writing to it would break what the newer migrations made. An
    # OperationalError, as for a missing file: a page says 503 (section 13), not 500.
    if version > len(migrations):
        raise sqlite3.OperationalError(
            f"the database {current_app.config.get('DATABASE')} is at migration {version}, newer "
            f"than this code's last ({len(migrations)}): run the newer code, or restore a backup "
            "made by this version")
    if version < 0:  # no version this app writes: a file edited by hand, or another program's
        raise sqlite3.OperationalError(
            f"the database {current_app.config.get('DATABASE')} has user_version {version}, "
            "which no version of this app writes: restore a backup")
    return version


def stored_version(db):
    """The number of the last migration applied to this database."""
    return db.execute("PRAGMA user_version").fetchone()[0]


def set_version(db, number):
    """Record in the file that migrations up to `number` are applied."""
    db.execute(f"PRAGMA user_version = {int(number)}")  # a PRAGMA takes no `?` parameter


# ---------------------------------------------------------------------------
# 10. Models (an ORM-style layer over sqlite3)
# ---------------------------------------------------------------------------
# Instead of SQLAlchemy, small dataclasses with class methods: `User.create(...)`,
# `Note.get_for_user(...)`. This layer is the only code that writes SQL for users and
# notes, and it always passes values as `?` parameters, so input such as `' OR 1=1 --`
# is stored as text, never run. `init_models` hands the two tables to the database.
# Uses `get_db` and `add_schema` (section 9), `add_migration` (section 18).


@dataclass
class User:
    """An account."""

    id: int
    username: str
    password_hash: str = field(repr=False)  # never in a log line, a traceback or `flask shell`
    created_at: str
    session_id: str = field(repr=False)  # random, new for every account and at every logout
    table = "users"

    @classmethod
    def get(cls, user_id):
        """The user with this id, or None."""
        if not isinstance(user_id, int) or not 0 < user_id <= SQLITE_MAX_INTEGER:
            return None
        row = get_db().execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
        return cls(**row) if row else None

    @classmethod
    def find(cls, username):
        """The user with this username (any case), or None."""
        row = get_db().execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        return cls(**row) if row else None

    @classmethod
    def create(cls, username, password):
        """Store a new user with a hashed password; UsernameTaken if the name exists."""
        db = get_db()
        try:
            row = db.execute(
                "INSERT INTO users (username, password_hash, session_id) VALUES (?, ?, ?)"
                " RETURNING *", (username, generate_password_hash(password), new_session_id())
            ).fetchone()
        except sqlite3.IntegrityError:
            raise UsernameTaken(username) from None
        user = cls(**row)  # built before the commit: if this fails, nothing is saved
        db.commit()
        return user

    def check_password(self, password):
        """True when `password` matches the stored hash."""
        return check_password_hash(self.password_hash, password)

    def has_session(self, session_id):
        """True when `session_id` is the account's current one (compared in constant time)."""
        return (isinstance(session_id, str) and session_id.isascii() and bool(self.session_id)
                and hmac.compare_digest(session_id, self.session_id))

    def end_sessions(self):
        """A new session id for the account: every cookie and token it had stops working."""
        db = get_db()
        self.session_id = new_session_id()
        db.execute("UPDATE users SET session_id = ? WHERE id = ?", (self.session_id, self.id))
        db.commit()

    def delete(self):
        """Delete the user and, by cascade, their notes."""
        db = get_db()
        db.execute("DELETE FROM users WHERE id = ?", (self.id,))
        db.commit()

    def to_json(self):
        return {"id": self.id, "username": self.username, "created_at": self.created_at}


@dataclass
class Note:
    """A note that belongs to one user."""

    id: int
    user_id: int
    title: str
    body: str
    created_at: str
    updated_at: str
    table = "notes"

    @classmethod
    def get_for_user(cls, note_id, user_id):
        """The note with this id if it belongs to the user, else None."""
        if not 0 < note_id <= SQLITE_MAX_INTEGER:
            return None
        row = get_db().execute("SELECT * FROM notes WHERE id = ? AND user_id = ?",
                               (note_id, user_id)).fetchone()
        return cls(**row) if row else None

    @classmethod
    def create(cls, user_id, title, body=""):
        """Store a new note."""
        db = get_db()
        row = db.execute("INSERT INTO notes (user_id, title, body) VALUES (?, ?, ?) RETURNING *",
                         (user_id, title, body)).fetchone()
        note = cls(**row)  # built before the commit: if this fails, nothing is saved
        db.commit()
        return note

    @classmethod
    def page_for_user(cls, user_id, number, size):
        """One page of the user's notes, newest first."""
        return paginate(cls, BY_USER, (user_id,), number, size)

    @classmethod
    def search(cls, user_id, text, number, size):
        """One page of the user's notes whose title or body contains `text` (any case)."""
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"  # % and _ match themselves
        return paginate(cls, BY_USER_CONTAINING, (user_id, pattern, pattern), number, size)

    @classmethod
    def count_for_user(cls, user_id):
        """How many notes the user has."""
        return get_db().execute("SELECT count(*) FROM notes WHERE user_id = ?",
                                (user_id,)).fetchone()[0]

    def update(self, title=None, body=None):
        """Change the given fields and the modification time; given nothing, change nothing."""
        if title is None and body is None:
            return
        db = get_db()
        row = db.execute(
            "UPDATE notes SET title = coalesce(?, title), body = coalesce(?, body),"
            " updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = ? RETURNING *",
            (title, body, self.id)).fetchone()
        db.commit()
        self.title, self.body, self.updated_at = row["title"], row["body"], row["updated_at"]

    def delete(self):
        """Delete the note."""
        db = get_db()
        db.execute("DELETE FROM notes WHERE id = ?", (self.id,))
        db.commit()

    def to_json(self):
        return {"id": self.id, "title": self.title, "body": self.body,
                "created_at": self.created_at, "updated_at": self.updated_at}


def new_session_id():
    """A random account session id: never reused, so never shared with a later account."""
    return secrets.token_hex(16)


class UsernameTaken(Exception):
    """Raised when a username exists already (compared case-insensitively)."""


SQLITE_MAX_INTEGER = 2**63 - 1  # a larger id cannot exist; SQLite would raise OverflowError


@dataclass
class Page:
    """One page of results."""

    items: list
    number: int
    size: int
    total: int

    @property
    def pages(self):
        return max(1, math.ceil(self.total / self.size))

    @property
    def has_previous(self):
        return self.number > 1

    @property
    def has_next(self):
        return self.number < self.pages


# What paginate may put into its SQL text: these tables and conditions, nothing else.
PAGE_TABLES = {"notes"}
BY_USER = "user_id = ?"
BY_USER_CONTAINING = "user_id = ? AND (title LIKE ? ESCAPE '\\' OR body LIKE ? ESCAPE '\\')"
PAGE_FILTERS = {BY_USER, BY_USER_CONTAINING}


def paginate(model, where, args, number, size):
    """One page of `model` rows matching `where`, the page number clamped to the last page."""
    # A `?` stands for a value, never a table's name or a condition: those must be written into
    # the SQL text, so they come only from the fixed sets above, never from a request.
    if model.table not in PAGE_TABLES or where not in PAGE_FILTERS:
        raise ValueError(f"paginate reads only {PAGE_TABLES} with {PAGE_FILTERS}")
    db = get_db()
    total = db.execute(f"SELECT count(*) FROM {model.table} WHERE {where}", args).fetchone()[0]
    number = min(number, max(1, math.ceil(total / size)))
    rows = db.execute(f"SELECT * FROM {model.table} WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                      (*args, size, (number - 1) * size)).fetchall()
    return Page([model(**row) for row in rows], number, size, total)


MODELS_SCHEMA = """
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
"""


def give_every_user_a_session_id(db):
    """Migration 2: a random session id for each user of a database made before them."""
    for (user_id,) in db.execute("SELECT id FROM users WHERE session_id = ''").fetchall():
        db.execute("UPDATE users SET session_id = ? WHERE id = ?", (new_session_id(), user_id))


def init_models(app):
    """Have the database create the users and notes tables, and migrate older ones."""
    add_schema(app, MODELS_SCHEMA)
    # Before issue 19, `user_version` counted the upgrade statements run, and there were two:
    # adding session_id, then filling it. They are migrations 1 and 2, so a database at 2 (made
    # by main before issue 19) has both, and one at 0 that has tables (made before session
    # ids) gets both; 1 alone never existed, as the two statements ran in one transaction.
    add_migration(app, 1, "users get a session_id column",
                  "ALTER TABLE users ADD COLUMN session_id TEXT NOT NULL DEFAULT ''")
    add_migration(app, 2, "every user gets a random session id", give_every_user_a_session_id)


# ---------------------------------------------------------------------------
# 11. Authentication & JWT
# ---------------------------------------------------------------------------
# Three parts, each copyable alone: 11.1 a signed session cookie for pages, 11.2 Bearer
# JSON Web Tokens for the API, 11.3 the API's account endpoints that hand out tokens.

# --- 11.1 Sessions and login ------------------------------------------------
# After login the session cookie carries the user's id, signed with SECRET_KEY so it
# cannot be forged. A hook loads `g.user` from it before every request, and
# `login_required` sends visitors without one to the login page, then back. Repeated
# failed logins are throttled in `authenticate`, registrations per address in
# `create_account`, and note writes per account in `check_note_write`, across every worker
# process. A signed cookie alone cannot be logged out: the server keeps nothing, so a copy
# stays valid until it expires. So the session also carries the account's random
# `session_id`, checked on every request; `log_out` replaces it, and every copy of the old
# cookie (and every token, whose `sid` claim holds it) turns anonymous, on every device.
# Being random, it never matches a later account given the same id after a deletion or
# `flask init-db`. The LOGIN_VIEW setting names your login page's endpoint, as
# Flask-Login's `login_view` does.
# Uses `is_api_request` (section 7), `add_schema` and `get_db` (section 9), `User`,
# `UsernameTaken` and `Note` (section 10), and the login page `forms.login` (section 5).

auth_bp = Blueprint("auth", __name__)


@auth_bp.before_app_request
def load_logged_in_user():
    """Put the session's user, or None, on `g.user`."""
    user_id = None if is_api_request() else session.get("user_id")  # the API ignores cookies
    user = User.get(user_id) if user_id is not None else None
    # A cookie from before a logout, or of an earlier account with this id, is anonymous.
    g.user = user if user and user.has_session(session.get("session_id")) else None


@auth_bp.after_app_request
def no_store_for_signed_in_users(response):
    """Pages seen by a signed-in user carry their data: no cache may keep them."""
    # A shared computer's back button or a proxy would show them to the next person.
    if g.get("user") is not None and request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response


def login_required(view):
    """Send anonymous visitors to the login page, then back here."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.user is None:
            login_page = current_app.config["LOGIN_VIEW"]
            return redirect(url_for(login_page, next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)
    return wrapped


def log_in(user):
    """Start a fresh session for `user`, and remember this browser as one of theirs."""
    session.clear()  # a new session on login: no session fixation
    session["user_id"], session["session_id"] = user.id, user.session_id
    g.known_device_for = user


# A browser that has logged in to an account before keeps a signed cookie that says so (not
# in the session, which logout clears), with a random id of its own. The login throttle
# counts its failures apart from everyone else's: a guesser cannot keep an account's owner
# out, only new browsers, which is what OWASP's device cookies do.
KNOWN_DEVICE_COOKIE = "known_device"
KNOWN_DEVICE_DAYS = 90


@auth_bp.after_app_request
def remember_device(response):
    """Give a browser that just logged in its known-device cookie."""
    user = g.pop("known_device_for", None)
    if user is not None:
        response.set_cookie(
            KNOWN_DEVICE_COOKIE, device_signer(user).dumps(secrets.token_hex(8)),
            max_age=KNOWN_DEVICE_DAYS * 86400, httponly=True, samesite="Lax",
            secure=current_app.config["SESSION_COOKIE_SECURE"],
            path=current_app.config["SESSION_COOKIE_PATH"] or request.script_root or "/")
    return response


def known_device(user):
    """This browser's device id when it has logged in to `user`'s account before, else None."""
    try:
        return device_signer(user).loads(request.cookies.get(KNOWN_DEVICE_COOKIE, ""))
    except BadSignature:
        return None


def device_signer(user):
    """Signs `user`'s known-device cookies, and no other account's."""
    # The password hash's random salt makes the key the account's own, as Django ties
    # sessions to it: a later account with the same id and name (after `flask init-db`, or
    # on another app with the same SECRET_KEY) cannot verify an earlier account's cookie.
    return URLSafeSerializer(current_app.secret_key,
                             salt=f"flask-tour known device {user.password_hash}")


def log_out():
    """End the account's sessions on every device, then forget this one."""
    if g.user is not None:
        g.user.end_sessions()  # copies of the cookie stop working, not just this browser's
    session.clear()


def safe_next_path(target, default):
    """`target` if it is a path on this site, else `default`."""
    # Only a local path: `?next=//evil.example` would otherwise send the user to another site.
    if (target and target.startswith("/") and not target.startswith("//")
            and not re.search(r"[\\\x00-\x20\x7f]", target) and not urlsplit(target).netloc):
        return request.script_root + target
    return default


def authenticate(username, password):
    """The user these credentials belong to, or None; throttles repeated failures."""
    config = current_app.config
    user = User.find(username) if username else None
    device = known_device(user) if user else None
    # A known device is counted as a place of its own, not as the address it may share with
    # a class: the guessers there, locked out, cannot lock it out; its own failures can.
    place = f"known device {device}" if device else request.remote_addr or "unknown"
    # Record the attempt before the slow password check, so that parallel guesses
    # count each other and cannot all slip under the limit.
    attempt = LoginThrottle.record_attempt(username, place, config["LOGIN_FAILURE_WINDOW"])
    wait = LoginThrottle.retry_after(attempt, username, place, config, known_device=bool(device))
    if wait:
        LoginThrottle.forget_attempt(attempt)  # waiting out a delay must not lengthen it
        raise TooManyRequests(f"Too many failed logins. Try again in {in_words(wait)}.",
                              retry_after=wait)
    if user is None:
        check_password_hash(dummy_password_hash(), password)  # as slow as a real check
    elif user.check_password(password):
        LoginThrottle.reset(username, place)
        return user
    return None


def create_account(username, password):
    """A new user; UsernameTaken if the name exists, a 429 past REGISTRATIONS_PER_HOUR."""
    if User.find(username):  # first: a taken name costs no allowance and no password hash
        raise UsernameTaken(username)
    address = request.remote_addr or "unknown"
    limit = current_app.config["REGISTRATIONS_PER_HOUR"]
    registration, wait = RateLimit.take(f"accounts from {address}", limit, 3600)
    get_db().commit()  # counted now, before the slow hash, so that parallel requests see it
    if wait:  # one address creating accounts in bulk: spam, or names taken before their owners
        raise TooManyRequests(f"Too many new accounts from your address. Try again in "
                              f"{in_words(wait)}.", retry_after=wait)
    try:
        return User.create(username, password)
    except UsernameTaken:  # taken meanwhile by a parallel request: only created accounts count
        RateLimit.forget(registration)
        raise


def check_note_write(user, new_note=False):
    """Before a note write: a 429 past NOTE_WRITES_PER_MINUTE, and for a new note a 403 past
    NOTES_PER_USER; allowed, the write that follows commits its count with it."""
    config, db = current_app.config, get_db()
    # One transaction with the write (Note.create or update commits it): parallel requests
    # count one at a time, and a refusal leaves nothing written.
    db.execute("BEGIN IMMEDIATE")
    _, wait = RateLimit.take(f"note writes by user {user.id}",
                             config["NOTE_WRITES_PER_MINUTE"], 60)
    if wait:  # a script filling the disk: a person never writes this fast
        db.rollback()
        raise TooManyRequests(f"You are saving notes too fast. Try again in {in_words(wait)}.",
                              retry_after=wait)
    if new_note and Note.count_for_user(user.id) >= config["NOTES_PER_USER"]:
        db.rollback()
        raise Forbidden(f"You have {config['NOTES_PER_USER']} notes, the most an account may "
                        "keep. Delete some to make room for new ones.")


def in_words(seconds):
    """A wait for people to read: '1 second', '40 seconds', '15 minutes'."""
    if seconds < 100:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{math.ceil(seconds / 60)} minutes"


# One hash per process: making a fresh one per attempt would make unknown names slower, and
# that difference would tell an attacker which usernames exist.
@functools.cache
def dummy_password_hash():
    """A hash to check against when the user does not exist, so timing reveals nothing."""
    return generate_password_hash(secrets.token_hex(16))


class LoginThrottle:
    """Failed logins, one row each, in SQLite so that every worker process sees the same counts.

    Three rules, each against its own attacker, none able to lock a class out:
    - per username and address, LOGIN_MAX_FAILURES (5) in LOGIN_FAILURE_WINDOW (15 min), then
      that pair waits out the window: an address guessing at one account is locked out of it,
      its owner elsewhere is not;
    - per username, from anywhere, a delay after each failure that grows with the failures of
      the window (LOGIN_DELAYS: none for the first five, then 30, then 60 s): guessers on many
      addresses get at most 6 tries in their first minute and 1 a minute after, and no delay
      outlives the last guess by more; a browser the owner has logged in from before skips it
      (`known_device`), so guessers cannot keep the owner out by keeping the delay going.
      Five, not fewer, because attempts still being checked count as failures (no race), and
      a script or a class may log in to one account several times at once;
    - per address, LOGIN_ADDRESS_MAX_FAILURES (200) in the window: spraying many accounts from
      one address stops, while a class of 40 behind one NAT may mistype five times each.
    A known device's attempts are counted with "known device <its id>" as their address, so
    the first and last rules lock it only for its own failures, never for the guessers'.
    """

    @staticmethod
    def record_attempt(username, address, window):
        """Count an attempt as failed until it succeeds; return its row id."""
        now = time.time()
        db = get_db()
        db.execute("DELETE FROM login_failures WHERE failed_at <= ?", (now - window,))
        attempt = db.execute(
            "INSERT INTO login_failures (username, address, failed_at) VALUES (?, ?, ?)"
            " RETURNING rowid", (username, address, now)).fetchone()[0]
        db.commit()
        return attempt

    @staticmethod
    def retry_after(attempt, username, address, config, known_device=False):
        """Seconds until the attempt just recorded would be allowed, or 0 when it is allowed.

        A browser known to have logged in to this account skips the per-username delay.
        """
        now, window = time.time(), config["LOGIN_FAILURE_WINDOW"]

        def failures(where, *args):  # times of this attempt and the earlier ones, newest first
            return [row[0] for row in get_db().execute(
                f"SELECT failed_at FROM login_failures WHERE {where} AND failed_at > ?"
                " AND rowid <= ? ORDER BY rowid DESC", (*args, now - window, attempt))]

        def lock(times, limit):  # until the oldest of `limit` earlier failures leaves the window
            return times[limit] + window - now if len(times) > limit else 0

        pair = failures("username = ? AND address = ?", username, address)
        earlier = failures("username = ?", username)[1:]  # parallel attempts count: no race
        delays = config["LOGIN_DELAYS"]
        delay = 0 if known_device or not earlier else (
            earlier[0] + delays[min(len(earlier), len(delays) - 1)] - now)
        wait = max(lock(pair, config["LOGIN_MAX_FAILURES"]), delay,
                   lock(failures("address = ?", address), config["LOGIN_ADDRESS_MAX_FAILURES"]))
        return math.ceil(wait) if wait > 0 else 0

    @staticmethod
    def forget_attempt(attempt):
        """Remove an attempt that was refused before its password was checked."""
        db = get_db()
        db.execute("DELETE FROM login_failures WHERE rowid = ?", (attempt,))
        db.commit()

    @staticmethod
    def reset(username, address):
        """After a successful login, forget this user's own failures from this address."""
        # Only this pair's rows: logging in to your own account between guesses at other
        # accounts must not reset the address's count, nor the owner the guessers' delay.
        db = get_db()
        db.execute("DELETE FROM login_failures WHERE username = ? AND address = ?",
                   (username, address))
        db.commit()


class RateLimit:
    """Events per key (accounts per address, writes per user) in a sliding window, in SQLite
    so that every worker process sees the same counts."""

    @staticmethod
    def take(key, limit, window):
        """Count one event, for the caller to commit: (its row id, 0), or (None, seconds to
        wait) when `limit` events are in the window."""
        now = time.time()
        db = get_db()
        # The DELETE takes the write lock: parallel requests count one at a time until commit.
        db.execute("DELETE FROM rate_limited WHERE expires_at <= ?", (now,))
        counted = db.execute("SELECT count(*) FROM rate_limited WHERE key = ?", (key,))
        if counted.fetchone()[0] >= limit:  # refused, and not counted: a refusal is free
            frees_a_place = db.execute(  # the event whose expiry brings the count under `limit`
                "SELECT expires_at FROM rate_limited WHERE key = ? ORDER BY at DESC"
                " LIMIT 1 OFFSET ?", (key, max(limit - 1, 0))).fetchone()
            return None, max(1, math.ceil((frees_a_place[0] if frees_a_place else now) - now))
        return db.execute("INSERT INTO rate_limited (key, at, expires_at) VALUES (?, ?, ?)"
                          " RETURNING rowid", (key, now, now + window)).fetchone()[0], 0

    @staticmethod
    def forget(event):
        """Remove an event that did not happen after all."""
        db = get_db()
        db.execute("DELETE FROM rate_limited WHERE rowid = ?", (event,))
        db.commit()


LOGIN_SCHEMA = """
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
"""


@auth_bp.record_once
def set_up_login(state):
    """The throttles' settings and tables, when the app registers this Blueprint."""
    config = state.app.config
    config.setdefault("LOGIN_VIEW", "forms.login")  # the login page's endpoint (section 5 here)
    config.setdefault("LOGIN_MAX_FAILURES", 5)  # per username and address, then locked
    config.setdefault("LOGIN_FAILURE_WINDOW", 900)  # seconds a failed login counts
    config.setdefault("LOGIN_ADDRESS_MAX_FAILURES", 200)  # per address: 40 students, 5 typos each
    config.setdefault("LOGIN_DELAYS", (0, 0, 0, 0, 0, 30, 60))  # per username: s after nth failure
    config.setdefault("REGISTRATIONS_PER_HOUR", 100)  # per address: a whole class at once, behind one NAT
    config.setdefault("NOTES_PER_USER", 1000)  # per account: 1000 full notes are 10-40 MB
    config.setdefault("NOTE_WRITES_PER_MINUTE", 60)  # per account: notes created or changed
    add_schema(state.app, LOGIN_SCHEMA)


# --- 11.2 JSON Web Tokens ---------------------------------------------------
# The API takes Bearer JWTs (RFC 7519), HS256 written with hmac, hashlib, base64 and json:
# `issue_token` signs the claims, `token_required` checks them and sets `g.api_user`;
# `sid` carries the account's session id (section 11.1), so a logout ends tokens too. The
# verifier accepts only HS256, compares signatures in constant time, requires `exp` and
# our own `iss` and `aud`, never crashes on hostile input, and answers failures as
# RFC 6750 says. `RevokedToken` lets 11.3's `/api/logout` revoke a token by its `jti`,
# which `token_required` therefore requires.
# Uses `problem` and `is_utf8_encodable` (section 7), `key_bytes` (section 8), `get_db`
# and `add_schema` (section 9), and `User` and `SQLITE_MAX_INTEGER` (section 10).


def token_required(view):
    """Let the request through only with a valid Bearer token; sets `g.api_user`."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return bearer_challenge("Send 'Authorization: Bearer <token>'.", error=None)
        try:
            claims = jwt_decode(token.strip(), jwt_key(), current_app.config["JWT_ISSUER"],
                                current_app.config["JWT_AUDIENCE"])
        except InvalidToken as reason:
            return bearer_challenge(f"The token is invalid: {reason}.")
        jti = claims.get("jti")
        # Ours always have one; a token without it could not be revoked by /api/logout.
        if not isinstance(jti, str) or not jti or not is_utf8_encodable(jti):  # SQLite: text
            return bearer_challenge("The token is invalid: 'jti' is required, as a string.")
        user = token_user(claims)
        if user is None or RevokedToken.is_revoked(jti):
            return bearer_challenge("The token is revoked or its user no longer exists.")
        g.api_user, g.token_claims = user, claims
        response = current_app.make_response(view(*args, **kwargs))
        response.headers["Cache-Control"] = "no-store"  # the caller's data: no cache keeps it
        return response
    return wrapped


def issue_token(user):
    """An access token for `user` and its lifetime in seconds."""
    lifetime = int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"])
    now = int(time.time())
    claims = {"iss": current_app.config["JWT_ISSUER"], "aud": current_app.config["JWT_AUDIENCE"],
              "sub": str(user.id), "sid": user.session_id, "iat": now, "exp": now + lifetime,
              "jti": uuid.uuid4().hex}
    return jwt_encode(claims, jwt_key()), lifetime


def jwt_encode(claims, key):
    """Sign `claims` as a compact HS256 JWT."""
    header = b64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}"
    return f"{signing_input}.{b64url_encode(hs256(key, signing_input))}"


def jwt_decode(token, key, issuer, audience, now=None):
    """Verify an HS256 JWT from `issuer` for `audience`: its claims, or InvalidToken."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("token too long")
    segments = token.split(".")
    if len(segments) != 3:
        raise InvalidToken("a JWT has three segments")
    if not all(BASE64URL.fullmatch(segment) for segment in segments):  # before any decoding
        raise InvalidToken("malformed base64url")
    header_segment, payload_segment, signature_segment = segments
    header = json_object(header_segment)
    if header.get("alg") != "HS256":  # never trust the token's own choice
        raise InvalidToken("only HS256 is accepted")
    if REFUSED_HEADERS & header.keys():
        raise InvalidToken("key selection and extension headers are not accepted")
    if header.get("typ", "JWT") != "JWT":  # another type (at+jwt, an ID token …) is not ours
        raise InvalidToken("only typ JWT is accepted")
    expected = hs256(key, f"{header_segment}.{payload_segment}")
    if not hmac.compare_digest(expected, b64url_decode(signature_segment)):
        raise InvalidToken("bad signature")
    claims = json_object(payload_segment)
    check_time_claims(claims, time.time() if now is None else now)
    check_issuer_and_audience(claims, issuer, audience)
    return claims


class InvalidToken(Exception):
    """A JWT that must not be accepted; the message says why."""


MAX_TOKEN_LENGTH = 4096
CLOCK_LEEWAY = 30  # seconds of clock difference tolerated on exp, nbf and iat
BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
# Header parameters that would pick the key or the rules from the token itself
# (RFC 8725, section 3.10): we have one key and know no extensions, so refuse them.
REFUSED_HEADERS = {"crit", "jku", "jwk", "kid", "x5c", "x5t", "x5t#S256", "x5u"}
MAX_NUMERIC_DATE = 2**53  # far beyond any real date; larger numbers lose precision as floats


def b64url_encode(data):
    """Base64url without padding (RFC 7515, section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    """Strict inverse of `b64url_encode`: no padding, no other characters."""
    if not BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise InvalidToken("malformed base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url_encode(data) != text:  # unused low bits set: a second spelling of the same bytes
        raise InvalidToken("malformed base64url")
    return data


def json_object(segment):
    """Decode one token segment that must hold a JSON object without duplicate keys."""
    try:  # RFC 7519: the JSON is UTF-8; NaN and Infinity become nan, which the checks refuse
        value = json.loads(b64url_decode(segment).decode("utf-8"),
                           object_pairs_hook=no_duplicate_members,
                           parse_constant=lambda name: float("nan"))
    except ValueError:  # invalid JSON or UTF-8 (JSONDecodeError, UnicodeDecodeError)
        raise InvalidToken("segment is not JSON") from None
    except RecursionError:  # [[[[…]]]]: nesting deep enough to exhaust the parser's stack
        raise InvalidToken("segment is nested too deeply") from None
    if not isinstance(value, dict):
        raise InvalidToken("segment is not a JSON object")
    return value


def no_duplicate_members(pairs):
    """A JSON object's members as a dict; a name given twice is an invalid token."""
    if len({name for name, _ in pairs}) != len(pairs):
        raise InvalidToken("duplicate JSON member")
    return dict(pairs)


def hs256(key, signing_input):
    return hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()


def is_numeric_date(value):
    """True for a JSON number usable as seconds since 1970: not a bool, NaN, infinite or huge."""
    # Compared, never converted: math.isfinite(10**400) raises OverflowError. NaN fails both tests.
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and -MAX_NUMERIC_DATE <= value <= MAX_NUMERIC_DATE)


def check_time_claims(claims, now):
    """Require a numeric `exp` in the future; `nbf` and `iat` must not be in the future."""
    for name in ("exp", "nbf", "iat"):
        if name in claims and not is_numeric_date(claims[name]):
            raise InvalidToken(f"'{name}' must be a number of seconds since 1970")
    if "exp" not in claims:
        raise InvalidToken("'exp' is required")
    if claims["exp"] <= now - CLOCK_LEEWAY:
        raise InvalidToken("token expired")
    if claims.get("nbf", now) > now + CLOCK_LEEWAY:
        raise InvalidToken("token not valid yet")
    if claims.get("iat", now) > now + CLOCK_LEEWAY:
        raise InvalidToken("token issued in the future")


def check_issuer_and_audience(claims, issuer, audience):
    """Require our `iss`, and our `aud` (a string, or an array that names us; RFC 7519 4.1.3)."""
    if claims.get("iss") != issuer:  # signed by someone else who shares the key, or no one
        raise InvalidToken("'iss' is not this app")
    aud = claims.get("aud")  # a token meant for another API must not work on this one
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise InvalidToken("'aud' is not this API")


def jwt_key():
    """The HMAC key for tokens: JWT_SECRET_KEY, or one derived from SECRET_KEY."""
    key = current_app.config["JWT_SECRET_KEY"]
    if key:
        return key_bytes(key)
    # Derived, so the session key and the token key are never the same key.
    secret = key_bytes(current_app.config["SECRET_KEY"])
    return hmac.new(secret, b"flask-tour jwt key", hashlib.sha256).digest()


def bearer_challenge(detail, error="invalid_token"):
    """A 401 problem with the RFC 6750 `WWW-Authenticate` header."""
    challenge = f'Bearer realm="api", error="{error}"' if error else 'Bearer realm="api"'
    return problem(401, detail, headers={"WWW-Authenticate": challenge})


def token_user(claims):
    """The user whose id is the token's `sub` and whose current session is its `sid`, or None."""
    subject, session_id = claims.get("sub"), claims.get("sid")
    # Canonical digits only: "0001" would be a second spelling of user 1's subject.
    if not isinstance(subject, str) or not re.fullmatch(r"[1-9][0-9]{0,18}", subject):
        return None
    user = User.get(int(subject))
    # `sid` binds the token to this account and its session: after a logout, or when the id
    # belongs to a later account (deletion, `flask init-db`), the token is refused.
    return user if user and user.has_session(session_id) else None


class RevokedToken:
    """JWT ids revoked by /api/logout, kept until the token would have expired anyway."""

    @staticmethod
    def revoke(jti, expires_at):
        db = get_db()
        # Kept until no clock leeway could make the token valid again.
        db.execute("DELETE FROM revoked_tokens WHERE expires_at < ?",
                   (int(time.time()) - CLOCK_LEEWAY,))
        db.execute("INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?, ?)",
                   (jti, min(int(expires_at), SQLITE_MAX_INTEGER)))
        db.commit()

    @staticmethod
    def is_revoked(jti):
        return get_db().execute("SELECT 1 FROM revoked_tokens WHERE jti = ?",
                                (jti,)).fetchone() is not None


JWT_SCHEMA = """
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
"""


def init_jwt(app):
    """The token settings and the revocation table."""
    app.config.setdefault("JWT_SECRET_KEY", None)  # None: derived from SECRET_KEY
    app.config.setdefault("JWT_ACCESS_TOKEN_EXPIRES", 900)  # seconds
    app.config.setdefault("JWT_ISSUER", "flask-tour")  # our `iss`: other issuers' tokens refused
    app.config.setdefault("JWT_AUDIENCE", "flask-tour-api")  # our `aud`: other APIs' refused
    add_schema(app, JWT_SCHEMA)


# --- 11.3 The API's account endpoints ---------------------------------------
# Register with `POST /api/users`, exchange a username and password for a token with
# `POST /api/token`, then send `Authorization: Bearer <token>`; `POST /api/logout`
# revokes it.
# Uses `problem`, `json_body`, `validate`, `invalid_fields` and `USER_FIELDS` (section 7),
# `UsernameTaken` (section 10), `authenticate` and `create_account` (section 11.1), and
# `issue_token`, `token_required`, `bearer_challenge` and `RevokedToken` (section 11.2).

accounts_bp = Blueprint("accounts", __name__, url_prefix="/api")


class UserAPI(MethodView):
    """POST /api/users: register."""

    def post(self):
        values, errors = validate(json_body(), USER_FIELDS)
        if errors:
            return invalid_fields(errors)
        try:
            user = create_account(values["username"], values["password"])
        except UsernameTaken:
            return problem(409, "That username is already taken.")
        return user.to_json(), 201


class TokenAPI(MethodView):
    """POST /api/token: exchange a username and password for a Bearer token."""

    def post(self):
        values, errors = validate(json_body(), USER_FIELDS)
        if errors:
            return invalid_fields(errors)
        user = authenticate(values["username"], values["password"])
        if user is None:
            return bearer_challenge("Unknown username or wrong password.", error=None)
        token, lifetime = issue_token(user)
        return ({"access_token": token, "token_type": "Bearer", "expires_in": lifetime},
                200, {"Cache-Control": "no-store"})


@accounts_bp.post("/logout")
@token_required
def logout_api():
    """Revoke the token used for this request."""
    RevokedToken.revoke(g.token_claims["jti"], g.token_claims["exp"])
    return "", 204


@accounts_bp.get("/me")
@token_required
def me_api():
    """The caller."""
    return g.api_user.to_json()


accounts_bp.add_url_rule("/users", view_func=UserAPI.as_view("users"))
accounts_bp.add_url_rule("/token", view_func=TokenAPI.as_view("token"))


# ---------------------------------------------------------------------------
# 3. URL parameters & query strings
# ---------------------------------------------------------------------------
# `<name>` arrives as a view argument, `?q=` through `request.args`. The cheat sheet's
# f-string greeting would run any `<script>` in the name; rendering it in a template
# escapes it. `parse_page` turns `?page=abc` into page 1 and the model clamps `?page=999`
# to the last page, so a page number never errors; a `q` longer than `SEARCH_FIELD`
# allows is a message, not a query.
# Uses `SEARCH_FIELD` (section 7), `Note` (section 10) and `login_required` (section 11.1),
# which sends visitors to a login page (section 5); its pages extend base.html (section 4).

SEARCH_PAGE_SIZE = 10

params_bp = Blueprint("params", __name__, template_folder="templates")


@params_bp.route("/user/<name>")
def user(name):
    """Greet `name`; the template escapes it."""
    return render_template("user.html", name=name)


@params_bp.route("/search")
@login_required
def search():
    """Search the current user's notes, ten a page."""
    query = request.args.get("q", "")
    error = SEARCH_FIELD.check(query)
    results = None
    if query and not error:
        results = Note.search(g.user.id, query, parse_page(request.args.get("page")),
                              SEARCH_PAGE_SIZE)
    return render_template("search.html", query=query, results=results, error=error)


def parse_page(value):
    """Turn a `page` query value into a page number of at least 1."""
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1


# ---------------------------------------------------------------------------
# 5. Handling forms & requests (GET, POST)
# ---------------------------------------------------------------------------
# One view answers both methods: GET shows the form, POST handles it. Fields are read with
# `request.form.get`, so a missing field is a message, not the bare 400 of
# `request.form['x']`; the form re-renders with the input kept and a message per field,
# and success redirects, so a reload never posts twice. Every unsafe request to a page
# must carry the session's CSRF token, from the form or the `X-CSRFToken` header, and
# must not come from another site's page, as the browser's `Origin` header tells.
# Uses `parse_page` (section 3), `validate`, `is_api_request`, `USER_FIELDS` and
# `NOTE_FIELDS` (section 7), `UsernameTaken` and `Note` (section 10), and
# `login_required`, `log_in`, `log_out`, `safe_next_path`, `authenticate`, `create_account`
# and `check_note_write` (section 11.1); its pages extend base.html and use its macros
# (section 4).

forms_bp = Blueprint("forms", __name__, template_folder="templates")


@forms_bp.route("/login", methods=["GET", "POST"])
def login():
    """Log in with a username and password."""
    values, error = {}, None
    if request.method == "POST":
        values, errors = validate(form_values(USER_FIELDS), USER_FIELDS)  # as the API does
        user = None if errors else authenticate(values["username"], values["password"])
        if user:
            log_in(user)
            flash(f"Logged in as {user.username}.")
            return redirect(safe_next_path(request.args.get("next"), url_for("forms.notes")))
        error = "Unknown username or wrong password."
    return render_template("auth.html", mode="login", values=values, error=error)


@forms_bp.route("/register", methods=["GET", "POST"])
def register():
    """Create an account, then log in."""
    values, errors = {}, {}
    if request.method == "POST":
        values, errors = validate(form_values(USER_FIELDS), USER_FIELDS)
        if not errors:
            try:
                user = create_account(values["username"], values["password"])
            except UsernameTaken:
                errors["username"] = "That username is already taken."
            else:
                log_in(user)
                flash(f"Welcome, {user.username}! Your account is ready.")
                return redirect(url_for("forms.notes"))
    return render_template("auth.html", mode="register", values=values, errors=errors)


@forms_bp.post("/logout")
def logout():
    """End the session: this cookie and every copy of it."""
    log_out()
    flash("You are logged out.")
    return redirect(url_for("forms.login"))


NOTES_PAGE_SIZE = 10


@forms_bp.route("/notes", methods=["GET", "POST"])
@login_required
def notes():
    """List the user's notes and create new ones."""
    values, errors, status = {}, {}, 200
    if request.method == "POST":
        values, errors = validate(form_values(NOTE_FIELDS), NOTE_FIELDS)
        if not errors:
            try:
                check_note_write(g.user, new_note=True)
            except Forbidden as full:  # the account's quota: said in the form, the text kept
                errors["title"], status = full.description, 403
            else:
                Note.create(g.user.id, values["title"], values["body"])
                flash("Note created.")
                return redirect(url_for("forms.notes"))
    page = Note.page_for_user(g.user.id, parse_page(request.args.get("page")), NOTES_PAGE_SIZE)
    return render_template("notes.html", page=page, values=values, errors=errors), status


@forms_bp.route("/notes/<int:note_id>/edit", methods=["GET", "POST"])
@login_required
def edit_note(note_id):
    """Edit one of the user's notes."""
    note = Note.get_for_user(note_id, g.user.id) or abort(404)
    values, errors = {"title": note.title, "body": note.body}, {}
    if request.method == "POST":
        values, errors = validate(form_values(NOTE_FIELDS), NOTE_FIELDS)
        if not errors:
            check_note_write(g.user)
            note.update(**values)
            flash("Note saved.")
            return redirect(url_for("forms.notes"))
    return render_template("note_edit.html", note=note, values=values, errors=errors)


@forms_bp.route("/notes/<int:note_id>/delete", methods=["GET", "POST"])
@login_required
def delete_note(note_id):
    """Ask to confirm (GET), then delete one of the user's notes (POST)."""
    note = Note.get_for_user(note_id, g.user.id) or abort(404)
    if request.method == "GET":  # a confirmation page: no JavaScript needed to ask first
        return render_template("note_delete.html", note=note)
    note.delete()
    flash("Note deleted.")
    return redirect(url_for("forms.notes"))


def form_values(field_names):
    """The submitted values of the named fields, missing ones as empty strings."""
    return {name: request.form.get(name, "") for name in field_names}


UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@forms_bp.app_template_global()
def csrf_token():
    """The session's CSRF token, created on first use."""
    if "csrf_token" not in session:
        session["csrf_token"] = secrets.token_urlsafe(32)
    return session["csrf_token"]


@forms_bp.before_app_request
def check_csrf():
    """Reject unsafe page requests whose CSRF token is not this session's."""
    # Without it, any site could make your browser post a form here with your cookie.
    if request.method not in UNSAFE_METHODS or is_api_request():
        return
    if request.url_rule is None:  # no such page (or method): its 404 or 405, not a CSRF 400
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRFToken", "")
    expected = session.get("csrf_token")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(400, "The form's CSRF token is missing or out of date. Reload the page and try again.")
    if is_cross_site():  # defence in depth, should a token ever leak
        abort(400, "This form was sent from another site, so it was not accepted.")


def is_cross_site():
    """True unless the browser says this site sent the request (Origin; Referer over HTTPS)."""
    source = request.headers.get("Origin")
    if source is None and request.is_secure:  # Flask-WTF's WTF_CSRF_SSL_STRICT: Referer required
        source = request.referrer or ""
    if source is None:  # plain HTTP and no Origin: an old browser or a script; the token decides
        return False
    try:
        parts = urlsplit(source)  # "null" (a sandboxed or privacy-minded page) matches nothing
    except ValueError:  # such as "http://[::1": no site we know
        return True
    return (parts.scheme, parts.netloc) != (request.scheme, request.host)


# ---------------------------------------------------------------------------
# 6. REST APIs with Flask (MethodView)
# ---------------------------------------------------------------------------
# Flask's own `MethodView` does what Flask-RESTful's `Resource` does, with no extra
# package: one method per HTTP verb, registered with `add_url_rule`, and Flask answers
# other verbs with 405 and an `Allow` header. Everything under /api answers in JSON and
# never reads the session cookie: a Bearer token is the only way in, so the API needs no
# CSRF token.
# Uses `json_body`, `validate`, `invalid_fields`,
# `NOTE_FIELDS`, `USER_FIELDS`, `SEARCH_FIELD`, `field_schemas` and `HTTP_ERROR_TITLES`
# (section 7), `Note` (section 10), `check_note_write` (section 11.1), whose settings the
# OpenAPI document states, and `token_required` (section 11.2).

api_bp = Blueprint("api", __name__, url_prefix="/api")


class HelloAPI(MethodView):
    """The cheat sheet's Hello resource."""

    def get(self):
        return {"message": "Hello, World"}


api_bp.add_url_rule("/hello", view_func=HelloAPI.as_view("hello"))


class NoteListAPI(MethodView):
    """The caller's notes: list (paginated, searchable) and create."""

    decorators = [token_required]

    def get(self):
        errors = {}
        number = whole_number_argument("page", 1, API_MAX_PAGE, errors)
        page_size = whole_number_argument("per_page", min(20, API_MAX_PAGE_SIZE), API_MAX_PAGE_SIZE,
                                          errors)
        query = request.args.get("q", "")
        if message := SEARCH_FIELD.check(query):
            errors["q"] = message
        if errors:  # the OpenAPI document's limits, exactly: no silent clamping
            return invalid_fields(errors)
        page = (Note.search(g.api_user.id, query, number, page_size) if query
                else Note.page_for_user(g.api_user.id, number, page_size))
        return {"items": [note.to_json() for note in page.items], "page": page.number,
                "per_page": page.size, "total": page.total, "pages": page.pages}

    def post(self):
        values, errors = validate(json_body(), NOTE_FIELDS)
        if errors:
            return invalid_fields(errors)
        check_note_write(g.api_user, new_note=True)
        note = Note.create(g.api_user.id, values["title"], values.get("body", ""))
        return note.to_json(), 201, {"Location": url_for("api.note", note_id=note.id)}


class NoteAPI(MethodView):
    """One of the caller's notes; anyone else's is a 404, never a 403."""

    decorators = [token_required]

    def get(self, note_id):
        return self.own_note(note_id).to_json()

    def put(self, note_id):
        return self.change(note_id, partial=False)

    def patch(self, note_id):
        return self.change(note_id, partial=True)

    def delete(self, note_id):
        self.own_note(note_id).delete()
        return "", 204

    def change(self, note_id, partial):
        note = self.own_note(note_id)
        values, errors = validate(json_body(), NOTE_FIELDS, partial=partial)
        if errors:
            return invalid_fields(errors)
        if not partial:
            values = {"body": "", **values}  # PUT replaces: an omitted body becomes empty
        check_note_write(g.api_user)
        note.update(**values)
        return note.to_json()

    @staticmethod
    def own_note(note_id):
        return Note.get_for_user(note_id, g.api_user.id) or abort(404, "No such note.")


api_bp.add_url_rule("/notes", view_func=NoteListAPI.as_view("notes"))
api_bp.add_url_rule("/notes/<int:note_id>", view_func=NoteAPI.as_view("note"))

API_MAX_PAGE_SIZE = 100
API_MAX_PAGE = 1_000_000  # more pages than anyone has; a later page than the last shows the last


def whole_number_argument(name, default, maximum, errors):
    """The query argument `name` as a number from 1 to `maximum`; else a message in `errors`."""
    text = request.args.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,7}", text) or not 1 <= int(text) <= maximum:
        errors[name] = f"Must be a whole number from 1 to {maximum}."
        return default
    return int(text)


BODY_ERRORS = (400, 413, 415, 422)  # what a JSON body can get wrong
# Answers from gunicorn itself, before the app runs, as HTML: documented, not problem+json.
SERVER_ERRORS = {414: "URI Too Long: gunicorn refuses a request line over 4094 bytes"}
SEARCH_LIMIT = (f"At most {SEARCH_FIELD.max_length} characters, so that even percent-encoded "
                "4-byte characters keep the request line under gunicorn's 4094 bytes (414).")


@api_bp.route("/openapi.json")
def openapi():
    """An OpenAPI 3.1 description of every /api route."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Flask Tour API", "version": "1.0.0"},
        "servers": [{"url": request.script_root or "/"}],
        "paths": openapi_paths(),
        "components": {"schemas": openapi_schemas(), "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }


def openapi_paths():
    """The operations of every /api route."""
    note_id = [{"name": "note_id", "in": "path", "required": True,
                "schema": {"type": "integer", "minimum": 1}}]
    paging = [{"name": name, "in": "query",
               "schema": {"type": "integer", "minimum": 1, "maximum": maximum}}
              for name, maximum in (("page", API_MAX_PAGE), ("per_page", API_MAX_PAGE_SIZE))] + [
              {"name": "q", "in": "query", "description": SEARCH_LIMIT,
               "schema": {"type": "string", "maxLength": SEARCH_FIELD.max_length}}]
    message = {"type": "object", "properties": {"message": {"type": "string"}}}
    config = current_app.config  # the account's limits (section 11.1), as configured here
    rate = (f"An account creates or changes at most {config['NOTE_WRITES_PER_MINUTE']} notes "
            "a minute: past that, 429 with Retry-After.")
    quota = {"description": f"An account keeps at most {config['NOTES_PER_USER']} notes: one "
                            f"more is a 403 until some are deleted. {rate}"}
    return {
        "/api/hello": {"get": operation("The cheat sheet's Hello resource", 200, message,
                                        secured=False)},
        "/api/users": {"post": operation("Register", 201, ref("User"), (*BODY_ERRORS, 409, 429),
                                         body="Credentials", secured=False)},
        "/api/token": {"post": operation("Log in and get a Bearer token", 200, ref("Token"),
                                         (*BODY_ERRORS, 401, 429), body="Credentials",
                                         secured=False)},
        "/api/logout": {"post": operation("Revoke the token used for this request", 204)},
        "/api/me": {"get": operation("The caller", 200, ref("User"))},
        "/api/notes": {
            "get": operation("List your notes", 200, ref("NotePage"), (414, 422),
                             parameters=paging),
            "post": {**operation("Create a note", 201, ref("Note"), (*BODY_ERRORS, 403, 429),
                                 body="NoteInput"), **quota}},
        "/api/notes/{note_id}": {
            "get": operation("Read a note", 200, ref("Note"), (404,), parameters=note_id),
            "put": {**operation("Replace a note", 200, ref("Note"), (*BODY_ERRORS, 404, 429),
                                body="NoteInput", parameters=note_id), "description": rate},
            "patch": {**operation("Change some fields of a note", 200, ref("Note"),
                                  (*BODY_ERRORS, 404, 429), body="NotePatch",
                                  parameters=note_id), "description": rate},
            "delete": operation("Delete a note", 204, errors=(404,), parameters=note_id)},
        "/api/openapi.json": {"get": operation("This document", 200, {"type": "object"},
                                               secured=False)},
        **{path: operations for more in current_app.extensions.get("openapi_paths", ())
           for path, operations in more().items()},  # later sections' routes, such as 19's
    }


def openapi_schemas():
    """JSON Schemas of the bodies, the note fields taken from the validation rules."""
    def strings(*names):
        return {name: {"type": "string"} for name in names}

    def integers(*names):
        return {name: {"type": "integer"} for name in names}

    note_input = {"type": "object", "additionalProperties": False,
                  "properties": field_schemas(NOTE_FIELDS)}
    return {
        "Note": {"type": "object", "properties": {
            **integers("id"), **field_schemas(NOTE_FIELDS), **strings("created_at", "updated_at")}},
        "NoteInput": {**note_input, "required": ["title"]},
        "NotePatch": note_input,
        "Credentials": {"type": "object", "required": list(USER_FIELDS),
                        "additionalProperties": False, "properties": field_schemas(USER_FIELDS)},
        "User": {"type": "object", "properties": {
            **integers("id"), **strings("username", "created_at")}},
        "Token": {"type": "object", "properties": {
            **strings("access_token"), "token_type": {"const": "Bearer"},
            **integers("expires_in")}},
        "NotePage": {"type": "object", "properties": {
            "items": {"type": "array", "items": ref("Note")},
            **integers("page", "per_page", "total", "pages")}},
        "Problem": {"type": "object", "properties": {
            **strings("type", "title", "detail"), **integers("status"),
            "errors": {"type": "object", "additionalProperties": {"type": "string"}}}},
    }


def ref(name):
    """A JSON Schema reference to one of the document's schemas."""
    return {"$ref": f"#/components/schemas/{name}"}


def operation(summary, status, schema=None, errors=(), body=None, parameters=(), secured=True):
    """One OpenAPI operation; secured ones need a Bearer token and may answer 401."""
    success = {"description": "Success"}
    if schema:
        success["content"] = {"application/json": {"schema": schema}}
    problems = sorted({*errors, 401} if secured else set(errors))
    problem_json = {"application/problem+json": {"schema": ref("Problem")}}
    result = {"summary": summary, "responses": {str(status): success, **{
        str(code): {"description": HTTP_ERROR_TITLES.get(code, SERVER_ERRORS.get(code)),
                    **({"content": problem_json} if code in HTTP_ERROR_TITLES else {})}
        for code in problems}}, "security": [{"bearerAuth": []}] if secured else []}
    if body:
        result["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": ref(body)}}}
    if parameters:
        result["parameters"] = list(parameters)
    return result


# ---------------------------------------------------------------------------
# 12. Middleware / request hooks
# ---------------------------------------------------------------------------
# `before_request` runs before every view, `after_request` after it, on the response; in a
# Blueprint, `before_app_request` and `after_app_request` hook every request of the app.
# Here they give each request an id (the caller's `X-Request-ID` when it is well formed,
# so ids can be followed across services), time it, write one access-log line through
# `app.logger` (not print, so it can be filtered and routed), add the security headers to
# every response, and refuse a chunked body over MAX_CONTENT_LENGTH. Teardown, which runs
# even after an error, closes the database connection in section 9. No site may frame the
# pages unless FRAME_ANCESTORS lists its origin (a course page that embeds the tour).
# Uses nothing from other sections; its page extends base.html (section 4).

hooks_bp = Blueprint("hooks", __name__, template_folder="templates")


@hooks_bp.before_app_request
def start_request():
    """Give the request an id and a start time."""
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if REQUEST_ID.fullmatch(incoming) else secrets.token_hex(16)
    g.started = time.perf_counter()


@hooks_bp.after_app_request
def finish_request(response):
    """Stamp the response with the request's id and timing, and log it."""
    elapsed_ms = (time.perf_counter() - g.started) * 1000
    response.headers["X-Request-ID"] = g.request_id
    response.headers["Server-Timing"] = f"app;dur={elapsed_ms:.1f}"
    if current_app.config["ACCESS_LOG"]:
        current_app.logger.info("%s %s %s %s %.1fms %s", loggable(request.remote_addr or "-"),
                                loggable(request.method), loggable(request.path),
                                response.status_code, elapsed_ms, g.request_id)
    return response


def loggable(text):
    """`text` as sent, or quoted with its control characters escaped when it has any."""
    # A request chooses its method and its (percent-decoded) path: a line break (%0A) would
    # forge a log line, ESC or backspace would rewrite the terminal that shows the log.
    # (`flask run`'s own line escapes them too, as Werkzeug does; gunicorn answers 400.)
    return text if text.isprintable() else repr(text)


@hooks_bp.after_app_request
def add_security_headers(response):
    """The headers every response carries, unless the view set its own."""
    for name, value in security_headers(request.scheme):
        response.headers.setdefault(name, value)
    return response


@hooks_bp.route("/hooks")
def show_hooks():
    """What the hooks did to this very request."""
    incoming = request.headers.get("X-Request-ID")
    return render_template(
        "hooks.html",
        request_id=g.request_id,
        id_was_kept=incoming == g.request_id,
        started=g.started,
        client=request.remote_addr,
        scheme=request.scheme,
        headers=security_headers(request.scheme),
    )


REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),  # no inline or foreign scripts: XSS
    ("X-Content-Type-Options", "nosniff"),  # no guessing a text file is a script
    ("X-Frame-Options", "DENY"),  # no framing by another site: clickjacking
    ("Referrer-Policy", "strict-origin-when-cross-origin"),  # no paths leaked to other sites
)
HTTPS_SECURITY_HEADERS = (  # browsers remember HSTS: send it only over HTTPS
    *SECURITY_HEADERS, ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
)


def security_headers(scheme):
    """The headers every response carries; HSTS only when the request came over HTTPS."""
    headers = HTTPS_SECURITY_HEADERS if scheme == "https" else SECURITY_HEADERS
    return allow_framing(headers, current_app.config["FRAME_ANCESTORS"])


def allow_framing(headers, setting):
    """`headers`, but framing allowed to the origins of a FRAME_ANCESTORS setting, if any."""
    # Checked again here, not only at registration: an app that sets it afterwards (someone
    # else's app, with our hooks registered) must not put "*" or "; script-src …" in the CSP.
    origins = " ".join(frame_ancestors(setting))
    if not origins:
        return headers
    # X-Frame-Options cannot name several sites: CSP's frame-ancestors alone says who may.
    return tuple((name, value.replace("frame-ancestors 'none'", f"frame-ancestors {origins}"))
                 for name, value in headers if name != "X-Frame-Options")


@hooks_bp.before_app_request
def refuse_oversized_stream():
    """413 for a body without Content-Length (chunked) that is over MAX_CONTENT_LENGTH."""
    # Only chunked bodies: gunicorn marks every input terminated, so a GET would be read too.
    if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if not (limit and request.content_length is None
            and request.environ.get("wsgi.input_terminated")):
        return
    request.get_data(cache=True)  # forms and JSON parse this cached copy later
    # Werkzeug stops such a stream at the limit without an error: is there more?
    if request.environ["wsgi.input"].read(1):
        abort(413)


@hooks_bp.record_once
def set_up_logging(state):
    """The access-log setting, checked, and a logger that shows it."""
    app = state.app
    # One log line per request; false behind nginx, which logs every request itself.
    app.config.setdefault("ACCESS_LOG", True)
    if not isinstance(app.config["ACCESS_LOG"], bool):  # FLASK_ACCESS_LOG=no would be truthy text
        raise RuntimeError(f"ACCESS_LOG is {app.config['ACCESS_LOG']!r}; it must be true or "
                           "false, in lowercase: FLASK_ACCESS_LOG=false.")
    if app.logger.level == logging.NOTSET:
        app.logger.setLevel(logging.INFO)  # show the access log, not only warnings


@hooks_bp.record_once
def set_up_framing(state):
    """FRAME_ANCESTORS checked, and a session cookie that a framed page is sent."""
    config = state.app.config
    config.setdefault("FRAME_ANCESTORS", "")  # origins that may frame the pages: none
    config["FRAME_ANCESTORS"] = " ".join(frame_ancestors(config["FRAME_ANCESTORS"]))
    if config["FRAME_ANCESTORS"]:
        # In another site's frame the browser sends only SameSite=None cookies, and only with
        # Secure (over HTTPS). The forms' CSRF tokens then guard them: SameSite no longer does.
        config["SESSION_COOKIE_SAMESITE"] = "None"
        config["SESSION_COOKIE_SECURE"] = True


# An origin only: a character more could widen the policy ("*", "'unsafe-inline'", a path)
# or end it and start another (";", quotes, spaces). http only for this machine's names.
FRAME_ANCESTOR = re.compile(r"(https://[a-z0-9]([a-z0-9.-]*[a-z0-9])?"
                            r"|http://(localhost|127\.0\.0\.1|\[::1\]))"
                            r"(:(?P<port>[1-9][0-9]{0,4}))?")


def frame_ancestors(setting):
    """The origins a FRAME_ANCESTORS setting lists (spaces or commas between), each checked."""
    if not isinstance(setting, (str, list, tuple)):  # FLASK_FRAME_ANCESTORS=1 arrives as a number
        setting = repr(setting)
    text = setting if isinstance(setting, str) else " ".join(map(str, setting))
    origins = [origin for origin in re.split(r"[\s,]+", text.lower()) if origin]
    for origin in origins:
        if not is_origin(origin):
            raise RuntimeError(
                f"FRAME_ANCESTORS has {origin!r}, which is not an origin. List the sites that "
                "may frame this app as https://host or https://host:port, separated by spaces "
                "or commas, such as FLASK_FRAME_ANCESTORS=\"https://course.example.org\": no "
                "path, no wildcard, no quotes (http only for localhost).")
    return origins


def is_origin(text):
    """True for `https://host` or `https://host:port` (http for localhost), nothing more."""
    match = FRAME_ANCESTOR.fullmatch(text)
    return bool(match) and int(match["port"] or 1) <= 65535


# ---------------------------------------------------------------------------
# 13. Error handling & custom error pages
# ---------------------------------------------------------------------------
# `@app_errorhandler` (in a Blueprint; `@app.errorhandler` on the app) picks the response
# for an error. One handler for every HTTP error renders `error.html` for pages, or
# problem+json for /api and for clients that prefer JSON. Any `sqlite3.OperationalError`
# (a locked, read-only or missing database) is a 503 with `Retry-After`. Any other
# exception is a 500 whose traceback goes to the log, never to the client: it would tell
# an attacker how the app works inside. `/errors/classic` reproduces the errors learners
# meet most (application context, CSRF, 405, BuildError, TemplateNotFound, the bare 400)
# and shows each one's real message.
# Uses `problem`, `is_api_request` and `HTTP_ERROR_TITLES` (section 7), the `DATABASE`
# setting (section 9); its pages extend base.html (section 4). The CSRF demo shows section
# 5's check when the app has it.

errors_bp = Blueprint("errors", __name__, template_folder="templates")


@errors_bp.app_errorhandler(HTTPException)
def handle_http_error(error):
    """Any HTTPException (abort, 404, 405 …), keeping headers such as Allow and Retry-After."""
    headers = {key: value for key, value in error.get_headers() if key.lower() != "content-type"}
    # Werkzeug's stock sentences speak to developers ("your browser doesn't understand how
    # to supply the credentials"); a reason given to abort() is kept.
    stock = error.description == type(error).description
    detail = ERROR_SENTENCES.get(error.code, error.description) if stock else error.description
    return render_error(error.code, detail, headers)


ERROR_SENTENCES = {
    400: "The request could not be understood. Check what you sent and try again.",
    401: "You need to log in to see this.",
    403: "You are not allowed to see this.",
    404: "There is no page at this address. Check the link, or start again from the tour.",
    405: "This address does not accept that kind of request.",
    413: "What you sent is too large.",
    415: "This address does not accept that kind of content.",
    429: "Too many requests. Please wait a moment and try again.",
}


@errors_bp.app_errorhandler(sqlite3.OperationalError)
def handle_database_error(error):
    """A locked, read-only or missing database: 503, logged, nothing leaked."""
    current_app.logger.error("Database unavailable: %s: %s (request %s)", error,  # which file
                             current_app.config.get("DATABASE"), g.get("request_id"))
    g.user = None  # the error page must not ask the failing database who is logged in
    return render_error(503, "The database is busy or unavailable. Please try again shortly; if "
                        "it lasts, the server's log says why.",
                        {"Retry-After": "2"})


@errors_bp.app_errorhandler(Exception)
def handle_unexpected_error(error):
    """A crash: log the traceback, show a plain apology."""
    current_app.logger.error("Unhandled exception (request %s)", g.get("request_id"),
                             exc_info=error)
    return render_error(500, "Something went wrong on our side. It has been logged.")


def render_error(status, detail, headers=None):
    """The error response: problem+json or the custom error page."""
    # A malformed Host header, or one TRUSTED_HOSTS does not list, leaves Flask no URL to
    # build the page's links with.
    if wants_json() or isinstance(request.routing_exception, (BadHost, SecurityError)):
        return problem(status, detail, headers)
    page = render_template("error.html", status=status, detail=detail,
                           title=HTTP_ERROR_TITLES.get(status, "Error"))
    return page, status, headers or {}


def wants_json():
    """True for the API and for clients that prefer JSON to HTML."""
    return is_api_request() or request.accept_mimetypes.best_match(
        ["text/html", "application/json"]) == "application/json"


DEMO_ERRORS = {400, 401, 403, 404, 405, 413, 429, 500}


@errors_bp.route("/errors/<int:code>")
def error_demo(code):
    """Trigger the error page for `code`."""
    if code == 500:
        raise RuntimeError("A deliberate crash: its traceback is in the server log only.")
    if code == 405:
        raise MethodNotAllowed(valid_methods=["POST"])
    if code == 429:
        raise TooManyRequests("A demonstration of the rate-limit page.", retry_after=60)
    abort(code if code in DEMO_ERRORS else 404)


@errors_bp.route("/errors/classic")
def classic_errors():
    """The errors learners meet most, each reproduced now and caught, with its real message."""
    return render_template("classic_errors.html", errors={
        "app_context": caught(lambda: contextvars.Context().run(lambda: current_app.name)),
        "csrf": csrf_refusal(),
        "method": caught(lambda: current_app.create_url_adapter(request).match(
            request.path, method="POST")),
        "build": caught(lambda: url_for("notes")),  # deliberately wrong: "forms.notes" is right
        "template": caught(lambda: render_template("404.html")),
        "form_key": caught(missing_field_in_a_request),
    })


@errors_bp.post("/errors/classic/form-key")
def missing_field():
    """The cheat sheet's `request.form['title']`, posted without a title: a bare 400."""
    return {"title": request.form["title"]}


def caught(reproduce):
    """Run `reproduce`, which must fail; its exception's type and message."""
    try:
        reproduce()
    except Exception as error:  # each is a demonstration, caught and shown on the page
        return type(error).__name__, str(error)
    return None, "It did not fail this time."


def missing_field_in_a_request():
    """Call the real `missing_field` view in a POST request that has no form fields."""
    with current_app.test_request_context(method="POST", data={}):
        return missing_field()


def csrf_refusal():
    """What our CSRF check (section 5) answers a form posted without its token: (status, detail)."""
    if "forms.logout" not in current_app.view_functions:
        return None, "The forms section (5), which checks the token, is not registered here."
    path = url_for("errors.missing_field").removeprefix(request.script_root)  # the app's own view
    client = current_app.test_client()
    # A real request, in a context of its own, so that it does not share this request's `g`.
    response = contextvars.Context().run(client.post, path, headers={"Accept": "application/json"})
    return response.status, (response.get_json(silent=True) or {}).get("detail")


# ---------------------------------------------------------------------------
# 14. Deployment (Gunicorn + Nginx, Docker)
# ---------------------------------------------------------------------------
# Production runs `gunicorn -c deploy/gunicorn.conf.py app:app` (workers from
# WEB_CONCURRENCY) behind nginx, which balances two instances and serves static/ itself;
# see Dockerfile, docker-compose.yml and deploy/nginx.conf. `/healthz` tells whether the app
# can write to its database; the Dockerfile's HEALTHCHECK calls it (compose starts nginx once
# both instances pass), and so does deploy/local.sh after each start (nginx never does: it
# notices a dead instance only by failed requests). Behind a proxy, ProxyFix makes
# `remote_addr`, the scheme, host and prefix those of the client, but only for the number
# of proxies you configure in TRUSTED_PROXIES: trusting X-Forwarded-* from anyone would
# let clients spoof their address. That is also why the gunicorn settings file turns off
# gunicorn's own trust of X-Forwarded-Proto, which by default believes any local program.
# Under a prefix (DispatcherMiddleware, or nginx's X-Forwarded-Prefix) `url_for` puts it in
# every URL; set SESSION_COOKIE_PATH to it so the cookie stays there too. `/proxy` shows
# what the app sees of the client, beside what reached the server.
# Uses `get_db`, `add_schema`, `database_problem`, `disk_full` and the `DATABASE` setting
# (section 9); its
# page extends base.html (section 4).

deployment_bp = Blueprint("deployment", __name__, template_folder="templates")


# /healthz answers 200 when, in the last HEALTH_CHECK_INTERVAL seconds, this process wrote to
# the database file at DATABASE and the disk held HEALTH_MIN_FREE_BYTES: a note write would
# have worked then. Otherwise 503 and why, naming the file (missing, read-only, disk full).
@deployment_bp.route("/healthz")
def healthz():
    """Liveness, and proof that a note write would work: 503 with the reason if not."""
    checked_at, problem = current_app.extensions.get("health", (None, None))
    # A write per request would cost every monitor's poll a disk write: one per interval.
    if checked_at is None or time.monotonic() - checked_at >= current_app.config[
            "HEALTH_CHECK_INTERVAL"]:
        problem = check_database_write()
        current_app.extensions["health"] = (time.monotonic(), problem)
        if problem:
            current_app.logger.error("Health check failed: %s (request %s)", problem,
                                     g.get("request_id"))
    if problem:
        return {"status": "error", "database": "unavailable", "reason": problem}, 503
    return {"status": "ok", "database": "ok"}


def check_database_write():
    """None if the database takes a write and its disk has room for notes; else why not."""
    path = current_app.config["DATABASE"]
    min_free = current_app.config["HEALTH_MIN_FREE_BYTES"]
    try:
        db = get_db()
        # A write that leaves nothing behind: a read-only or missing file fails here.
        db.execute("INSERT INTO health_checks VALUES (?)", (time.time(),))
        db.execute("DELETE FROM health_checks")
        db.commit()
    except sqlite3.Error as error:
        return database_problem(path, min_free) or f"{error}: {path}"
    # That write may fit in pages SQLite already has; a note's needs new ones on a full disk.
    return disk_full(path, min_free)


@deployment_bp.route("/proxy")
def proxy_view():
    """Topic 14's demo: what the app sees of the client, next to what reached the server."""
    raw = {**request.environ, **request.environ.get("werkzeug.proxy_fix.orig", {})}  # before ProxyFix
    seen = [("Client address", request.remote_addr, raw.get("REMOTE_ADDR")),
            ("Scheme", request.scheme, raw.get("wsgi.url_scheme")),
            ("Host", request.host, raw.get("HTTP_HOST")),
            ("Prefix (script root)", request.script_root, raw.get("SCRIPT_NAME", ""))]
    forwarded = [(name, value) for name, value in request.headers if name.startswith("X-Forwarded-")]
    return render_template("proxy.html", seen=seen, forwarded=forwarded,
                           proxies=current_app.config["TRUSTED_PROXIES"])


HEALTH_SCHEMA = "CREATE TABLE IF NOT EXISTS health_checks (checked_at REAL NOT NULL);"


@deployment_bp.record_once
def set_up_deployment(state):
    """The health check's table, and ProxyFix when TRUSTED_PROXIES counts the proxies in front."""
    add_schema(state.app, HEALTH_SCHEMA)
    refuse_gunicorn_script_name()
    state.app.config.setdefault("HEALTH_CHECK_INTERVAL", 5)  # seconds between two test writes
    state.app.config.setdefault("HEALTH_MIN_FREE_BYTES", 1024 * 1024)  # less: "disk full"
    state.app.config.setdefault("TRUSTED_PROXIES", 0)
    proxies = int(state.app.config["TRUSTED_PROXIES"])
    if proxies:
        state.app.wsgi_app = ProxyFix(state.app.wsgi_app, x_for=proxies, x_proto=proxies,
                                      x_host=proxies, x_port=proxies, x_prefix=proxies)


def refuse_gunicorn_script_name():
    """Stop at start when gunicorn was given SCRIPT_NAME, saying what to do instead."""
    # gunicorn takes SCRIPT_NAME from its environment off every path and answers 500 to a
    # path outside it, while the session cookie would still cover "/": a half-mounted app.
    prefix = os.environ.get("SCRIPT_NAME")
    if prefix and os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/"):
        raise RuntimeError(
            f"SCRIPT_NAME={prefix} is set in gunicorn's environment; Flask Tour does not take "
            "its prefix from there. Unset it, and serve the app under a prefix as "
            "docs/deployment.md says (\"Under a URL prefix\"): nginx sends X-Forwarded-Prefix "
            f"with FLASK_TRUSTED_PROXIES=1, and FLASK_SESSION_COOKIE_PATH={prefix} keeps the "
            "session cookie there.")


# ---------------------------------------------------------------------------
# 15. Testing
# ---------------------------------------------------------------------------
# A test builds its own app with the factory: `create_app({"TESTING": True, "DATABASE": …})`
# turns testing on (an exception reaches the test instead of becoming the 500 page) and puts
# the database in a temporary folder; `app.test_client()` then sends requests straight to
# the app, with no server, and keeps cookies as a browser does; `app.test_cli_runner()`
# runs its `flask` commands. test_app.py's `app`, `client` and `runner` fixtures do that for
# every test of the suite: the topic page shows them, read from that file, so this module
# never imports pytest (production runs without it). `/testing` does it live: a throwaway
# app with the testing settings, a few requests as a test would send them, each one shown
# with its response, then the app's folder deleted.
# Uses `create_app` (section 1); its page extends base.html (section 4).

testing_bp = Blueprint("testing", __name__, template_folder="templates")


@testing_bp.route("/testing")
def show_testing():
    """Topic 15's demo: a throwaway app's answers to a few test-client requests."""
    demo = throwaway_demo()
    return render_template("testing.html", exchanges=demo.exchanges, settings=TESTING_SETTINGS,
                           elapsed_ms=demo.seconds * 1000,
                           age=round(time.monotonic() - demo.built_at), reuse=THROWAWAY_REUSE)


def in_a_throwaway_app(send):
    """`send(client)` for a test client of a new app in a temporary folder, then deleted."""
    with tempfile.TemporaryDirectory(prefix="flask-tour-testing-") as folder:
        app = create_app(testing_settings(folder), instance_path=os.path.join(folder, "instance"))
        return send(app.test_client())


def testing_settings(folder):
    """The settings of a test's app, with its database and instance folder in `folder`."""
    return TESTING_SETTINGS | {  # its own keys: nothing it signs works anywhere else
        "SECRET_KEY": secrets.token_hex(32), "JWT_SECRET_KEY": secrets.token_hex(32),
        "DATABASE": os.path.join(folder, "test.sqlite")}


TESTING_SETTINGS = {
    "TESTING": True,
    "ACCESS_LOG": False,  # its requests are not a visitor's: none in the server's access log
    # create_app also reads the server's FLASK_* variables; the test client calls
    # http://localhost/ and must get its cookies back, whatever address the server has.
    "SERVER_NAME": None,
    "APPLICATION_ROOT": "/",
    "PREFERRED_URL_SCHEME": "http",  # https: its forms refused as sent from another site
    "TRUSTED_HOSTS": None,  # a list without localhost: every request refused
    "SESSION_COOKIE_DOMAIN": None,  # another domain: the session cookie never comes back
    "SESSION_COOKIE_PATH": None,
}


def throwaway_demo():
    """The app's ThrowawayDemo: built anew at most every THROWAWAY_REUSE seconds."""
    # Each build costs about 0.3 s of CPU (measured, most of it the password hash of its
    # sign-up), so a page anyone can reload must not build one per request: a class, or a
    # script, reloading it would take the server's time from every other page.
    with one_build_at_a_time():
        kept = current_app.extensions.get("testing_demo")
        if kept is None or time.monotonic() - kept.built_at > THROWAWAY_REUSE:
            started = time.perf_counter()
            exchanges = in_a_throwaway_app(demo_requests)
            kept = ThrowawayDemo(exchanges, built_at=time.monotonic(),
                                 seconds=time.perf_counter() - started)
            current_app.extensions["testing_demo"] = kept
        return kept


THROWAWAY_REUSE = 30  # seconds a built demo is shown again before the next build


@dataclass
class ThrowawayDemo:
    """What one throwaway app answered, when (time.monotonic()) and how long it took."""
    exchanges: list
    built_at: float
    seconds: float


@testing_bp.record_once
def set_up_throwaway_lock(state):
    """The app's lock: one throwaway app built at a time, a class reloading together waits."""
    state.app.extensions["testing_demo_lock"] = threading.Lock()


@contextlib.contextmanager
def one_build_at_a_time():
    """Wait for any other throwaway app of this app to be done; a 503 past THROWAWAY_WAIT."""
    lock = current_app.extensions["testing_demo_lock"]
    if not lock.acquire(timeout=THROWAWAY_WAIT):
        raise ServiceUnavailable("The testing demo is busy. Please try again in a moment.",
                                 retry_after=2)
    try:
        yield
    finally:
        lock.release()


THROWAWAY_WAIT = 5  # seconds a visitor waits for a build under way, then a 503


def demo_requests(client):
    """What tests send: a page, the JSON API, a form without its CSRF token, then with it."""
    account = {"username": "ada", "password": "correct horse battery"}
    shown = [exchange("A page", client.get("/welcome/Ada")),
             exchange("The JSON API", client.get("/api/hello")),
             exchange("The JSON API, without a token", client.get("/api/notes"))]
    form = client.get("/register")
    shown.append(exchange("A form, for its CSRF token", form))
    shown.append(exchange("The form posted without its token: refused",
                          client.post("/register", data=account), account))
    with_token = account | {"csrf_token": csrf_token_in(form)}
    shown.append(exchange("The form posted with the token read from the page",
                          client.post("/register", data=with_token), account | {"csrf_token": "…"}))
    shown.append(exchange("The client kept the session cookie: signed in", client.get("/notes")))
    return shown


def exchange(label, response, sent=None):
    """What the page shows of one request and its response."""
    request_sent = response.request
    return {
        "label": label,
        "request": f"{request_sent.method} {request_sent.full_path.rstrip('?')}",
        "sent": sent,
        "status": response.status,
        "ok": response.status_code < 400,
        "headers": [(name, shown_header(name, value)) for name, value in response.headers
                    if name in SHOWN_HEADERS],
        "body": body_excerpt(response),
    }


SHOWN_HEADERS = {"Content-Type", "Location", "Set-Cookie", "WWW-Authenticate"}


def shown_header(name, value):
    """A response header as the page shows it: a cookie's value left out, its flags kept."""
    if name == "Set-Cookie":
        cookie, _, flags = value.partition(";")
        return f"{cookie.partition('=')[0]}=…;{flags}"
    return value


def body_excerpt(response, limit=200):
    """The start of a response's text: a JSON body, or the words of a page's <main>."""
    if response.is_json:
        text = response.get_data(as_text=True).strip()
    else:
        page = response.get_data(as_text=True)
        main = re.search(r"<main\b.*?</main>", page, re.S)
        text = Markup(main.group() if main else page).striptags()
    return text if len(text) <= limit else text[:limit] + "…"


def csrf_token_in(response):
    """The CSRF token in a page's form, read from its HTML as a test does."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
    return found.group(1) if found else ""


# ---------------------------------------------------------------------------
# 17. Contexts, g and the command line
# ---------------------------------------------------------------------------
# Flask has two contexts. The application context makes `current_app` and `g` point at one
# app; the request context adds `request` and `session`. Flask opens both for a request and
# closes them after it; a `flask` command gets an application context only. Anywhere else
# (at import time, in a script, in a thread you start) those names raise "Working outside
# of application context", and `with app.app_context():` opens one. `/contexts` shows what
# this very request can reach, that error made and fixed live, and the order of the hooks
# around the view. The Blueprint's commands join `flask` itself: `flask create-user NAME`
# asks for the password without showing it and checks both by the register form's rules;
# `flask delete-user NAME`. `flask shell` gets `User`, `Note` and `get_db` (`shell_names`).
# Uses `validate` and `USER_FIELDS` (section 7), `get_db` and `database_errors_explained`
# (section 9), `User`, `Note` and `UsernameTaken` (section 10); its page extends base.html
# (section 4).

# cli_group=None: its commands are `flask create-user`, not `flask contexts create-user`.
contexts_bp = Blueprint("contexts", __name__, template_folder="templates", cli_group=None)


@contexts_bp.route("/contexts")
def show_contexts():
    """Topic 17's demo: what this request can reach, and `get_db` called as a script would."""
    app = current_app._get_current_object()  # the app itself, not the proxy that finds it
    return render_template(
        "contexts.html", app_name=app.name,
        # Names only: g.user holds a password hash, the session a CSRF token.
        g_names=sorted(g), session_names=sorted(session),
        request_facts=[("method", request.method), ("path", request.path),
                       ("endpoint", request.endpoint), ("blueprint", request.blueprint)],
        # An empty contextvars.Context has none of this request's contexts: a new process.
        script=contextvars.Context().run(run_like_a_script, app),
        hooks=hook_order())


def run_like_a_script(app):
    """Call `get_db()` with no context, then inside `with app.app_context():`."""
    outside = error_of(get_db)  # RuntimeError: Working outside of application context.
    with app.app_context():
        g_before = sorted(g)  # a new application context has a new, empty g
        db = get_db()
        g_after = sorted(g)
    # Leaving the block ran the teardown functions, close_db among them.
    return {"outside": outside, "g_before": g_before, "g_after": g_after,
            "closed": error_of(db.execute, "SELECT 1")}


def error_of(call, *args):
    """The error `call(*args)` raises, as Python prints it; None if it raises none."""
    try:
        call(*args)
    except (RuntimeError, sqlite3.ProgrammingError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def hook_order():
    """The functions Flask calls around this request's view, stage by stage, in its order."""
    app, blueprints = current_app, request.blueprints
    return [
        ("before_request", hook_names(app.before_request_funcs, [None, *reversed(blueprints)])),
        ("the view", [request.endpoint]),
        ("after_request", hook_names(app.after_request_funcs, [*blueprints, None], True)),
        ("teardown_request", hook_names(app.teardown_request_funcs, [*blueprints, None], True)),
        ("teardown_appcontext", hook_names({None: app.teardown_appcontext_funcs}, [None], True)),
    ]


def hook_names(hooks, scopes, last_first=False):
    """The names of `hooks` registered for `scopes` (None: the whole app), in calling order."""
    names = []
    for scope in scopes:
        functions = hooks.get(scope, [])
        names += [function.__name__ for function in (functions[::-1] if last_first else functions)]
    return names


@contexts_bp.cli.command("create-user")  # a Blueprint's cli commands run in an app context
@click.argument("username")
@database_errors_explained
def create_user(username):
    """Create an account (asks for its password)."""
    # Not `create_account` (section 11): its per-address limit reads `request.remote_addr`,
    # and a command has an application context but no request.
    checked("username", username)
    if User.find(username):  # before the password is typed, not after
        raise click.ClickException(f"The username {username!r} is taken.")
    # Asked, never an option: a password typed in the command stays in the shell's history
    # and shows in `ps` to every user of the machine.
    password = checked("password", click.prompt("Password", hide_input=True,
                                                confirmation_prompt=True))
    try:
        user = User.create(username, password)
    except UsernameTaken:  # taken meanwhile, through the running app's register form
        raise click.ClickException(f"The username {username!r} is taken.") from None
    click.echo(f"Created the user {user.username} (id {user.id}): they can log in now.")


def checked(name, value):
    """`value` if the register form's rule for the field `name` accepts it, else a click error
    saying why."""
    _, errors = validate({name: value}, USER_FIELDS, partial=True)
    if errors:
        raise click.BadParameter(errors[name], param_hint=name)
    return value


@contexts_bp.cli.command("delete-user")
@click.argument("username")
@click.option("--yes", is_flag=True, help="Delete without asking first.")
@database_errors_explained
def delete_user(username, yes):
    """Delete an account and its notes; asks first, unless --yes."""
    user = User.find(username)
    if user is None:
        raise click.ClickException(f"There is no user called {username!r}.")
    count = Note.count_for_user(user.id)
    notes = f"{count} note" if count == 1 else f"{count} notes"
    if not yes:
        click.confirm(f"Delete {user.username} and their {notes}?", abort=True)
    user.delete()
    click.echo(f"Deleted {user.username} and their {notes}.")


@contexts_bp.record_once
def set_up_shell(state):
    """Give `flask shell` the models and `get_db` when the app registers this Blueprint."""
    state.app.shell_context_processor(shell_names)


def shell_names():
    """The names `flask shell` has ready, with no import."""
    return {"User": User, "Note": Note, "get_db": get_db}


# ---------------------------------------------------------------------------
# 19. File uploads and cookies
# ---------------------------------------------------------------------------
# A file posted with `enctype="multipart/form-data"` arrives in `request.files`, as a
# FileStorage: its `filename` is whatever the sender chose (`../../app.py`), so it is only
# ever shown, cleaned by `secure_filename`; the file is stored under instance/uploads with a
# random name. A type is allowed by its extension AND by its first bytes (an HTML page named
# `.png` is refused), a file over MAX_ATTACHMENT_BYTES is a 413, and an account keeps at most
# ATTACHMENT_BYTES_PER_USER. `send_from_directory` serves a file back to its note's owner
# only; anything but an image as a download. The API takes the same files at
# `POST /api/notes/<id>/attachments`. Cookies: `response.set_cookie` stores the "Large text"
# preference in the browser and `request.cookies` reads it back, so base.html draws the
# page large from its first byte, with no JavaScript.
# Uses `get_db` and `add_schema` (section 9), `Note` and `SQLITE_MAX_INTEGER` (section 10),
# `login_required`, `check_note_write` and `safe_next_path` (section 11.1), `token_required`
# (section 11.2), `operation` and `NoteAPI` (section 6), the edit page `forms.edit_note`
# (section 5), whose template includes ours; its pages extend base.html (section 4).

uploads_bp = Blueprint("uploads", __name__, template_folder="templates")


@uploads_bp.post("/notes/<int:note_id>/attachments")
@login_required
def upload_attachment(note_id):
    """Attach the posted file to one of the user's notes (the form on its edit page)."""
    note = Note.get_for_user(note_id, g.user.id) or abort(404)
    attachment = save_attachment(note, g.user, request.files.get("file"))
    flash(f"Attached {attachment.filename}.")
    return redirect(url_for("forms.edit_note", note_id=note.id))


@uploads_bp.get("/notes/<int:note_id>/attachments/<int:attachment_id>")
@login_required
def attachment(note_id, attachment_id):
    """One attachment of the user's note; anyone else's is a 404, never a 403."""
    return send_attachment(own_attachment(note_id, attachment_id, g.user.id))


@uploads_bp.post("/notes/<int:note_id>/attachments/<int:attachment_id>/delete")
@login_required
def delete_attachment(note_id, attachment_id):
    """Delete one attachment of the user's note (its file goes after the commit)."""
    found = own_attachment(note_id, attachment_id, g.user.id)
    found.delete()
    flash(f"Deleted {found.filename}.")
    return redirect(url_for("forms.edit_note", note_id=note_id))


@uploads_bp.route("/preferences", methods=["GET", "POST"])
def preferences():
    """Show the text size preference (GET); set its cookie, then go back (POST)."""
    if request.method == "GET":
        return render_template("preferences.html", sent=request.cookies.get(LARGE_TEXT_COOKIE),
                               back=request.args.get("next") or page_before())
    choice = "on" if request.form.get("large_text") == "on" else "off"
    response = redirect(safe_next_path(request.form.get("next"), url_for("uploads.preferences")))
    response.set_cookie(
        LARGE_TEXT_COOKIE, choice,
        max_age=365 * 86400,  # Max-Age: kept a year; without it, gone when the browser closes
        path=request.script_root or "/",  # Path: sent with every page of this app, no other
        secure=current_app.config["SESSION_COOKIE_SECURE"],  # Secure: https only, when served so
        httponly=False,  # HttpOnly off: no secret in it, and app.js's button sets it too
        # SameSite: as the session's (Lax: not sent with another site's posts; None in a
        # course page's frame, see FRAME_ANCESTORS, where Lax would never be sent).
        samesite=current_app.config["SESSION_COOKIE_SAMESITE"])
    return response


LARGE_TEXT_COOKIE = "large_text"


def page_before():
    """The path of the page of this app that linked here (its Referer), else ""."""
    # One link for every page: a `?next=` per page would give crawlers a new URL on each.
    try:
        parts = urlsplit(request.referrer or "")
    except ValueError:  # such as "http://[::1": no page of ours
        return ""
    if parts.netloc != request.host or not parts.path.startswith(request.script_root + "/"):
        return ""
    return parts.path[len(request.script_root):] + (f"?{parts.query}" if parts.query else "")


@uploads_bp.app_context_processor
def text_size():
    """Every template knows the preference: base.html sets <html class="large-text">."""
    return {"large_text": large_text()}


def large_text():
    """True when the request's cookie says "on"; any other value is the default size."""
    return request.cookies.get(LARGE_TEXT_COOKIE) == "on"  # the browser sends what anyone set


@uploads_bp.after_app_request
def vary_on_cookies(response):
    """Pages differ by the cookie: a shared cache must not give one visitor's size to another."""
    if response.mimetype == "text/html":
        response.vary.add("Cookie")
    return response


class AttachmentListAPI(MethodView):
    """The attachments of one of the caller's notes: list and upload (multipart/form-data)."""

    decorators = [token_required]

    def get(self, note_id):
        note = NoteAPI.own_note(note_id)  # the caller's, or the API's 404
        return {"items": [found.to_json() for found in Attachment.for_note(note.id)]}

    def post(self, note_id):
        note = NoteAPI.own_note(note_id)  # the caller's, or the API's 404
        saved = save_attachment(note, g.api_user, request.files.get("file"))
        return saved.to_json(), 201, {"Location": url_for(
            "uploads.attachment_api", note_id=note.id, attachment_id=saved.id)}


class AttachmentAPI(MethodView):
    """Download one attachment of one of the caller's notes."""

    decorators = [token_required]

    def get(self, note_id, attachment_id):
        return send_attachment(own_attachment(note_id, attachment_id, g.api_user.id))


uploads_bp.add_url_rule("/api/notes/<int:note_id>/attachments",
                        view_func=AttachmentListAPI.as_view("attachments_api"))
uploads_bp.add_url_rule("/api/notes/<int:note_id>/attachments/<int:attachment_id>",
                        view_func=AttachmentAPI.as_view("attachment_api"))


def save_attachment(note, user, file):
    """Check the file, then store it under a random name and its row in one transaction."""
    if file is None or not file.filename:
        abort(400, "Choose a file to attach (a form field named 'file', multipart/form-data).")
    limit = current_app.config["MAX_ATTACHMENT_BYTES"]
    content = file.stream.read(limit + 1)  # enough to know it is over the limit, no more
    if len(content) > limit:
        abort(413, f"An attachment may be at most {limit // 1024} KB.")
    extension = os.path.splitext(file.filename)[1].lower()  # only looked up, never a path
    content_type = checked_type(extension, content)
    # The shown name: `secure_filename` keeps letters, digits, '.', '_' and '-' ("../../x" → "x").
    stem = secure_filename(os.path.splitext(file.filename)[0])[:100] or "attachment"
    filename = stem + extension
    check_note_write(user)  # a rate limit per account; it begins the transaction below
    check_attachment_quota(user, len(content))
    stored_name = secrets.token_hex(16)  # the sender's name never becomes a path (STORED_NAME)
    path = os.path.join(uploads_folder(), stored_name)
    try:
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as stored:
            stored.write(content)
        return Attachment.create(note.id, stored_name, filename, content_type, len(content))
    except BaseException:  # the row was not written: no file (or part of one) may stay
        get_db().rollback()
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        raise


# What may be attached: extension, content type, and how its content begins. A file must
# match both, so a page of HTML renamed `.png` (which a browser might run) is refused.
ATTACHMENT_TYPES = {
    ".png": ("image/png", (b"\x89PNG\r\n\x1a\n",)),
    ".jpg": ("image/jpeg", (b"\xff\xd8\xff",)),
    ".jpeg": ("image/jpeg", (b"\xff\xd8\xff",)),
    ".gif": ("image/gif", (b"GIF87a", b"GIF89a")),
    ".pdf": ("application/pdf", (b"%PDF-",)),
    ".txt": ("text/plain", None),  # no signature: UTF-8 text without NUL bytes
}


def checked_type(extension, content):
    """The content type of an allowed extension whose content matches it; else a 415."""
    allowed = ", ".join(sorted(ATTACHMENT_TYPES))
    if extension not in ATTACHMENT_TYPES:
        abort(415, f"Only these files can be attached: {allowed}.")
    content_type, signatures = ATTACHMENT_TYPES[extension]
    matches = is_plain_text(content) if signatures is None else content.startswith(signatures)
    if not matches:
        abort(415, f"The file's content is not what its name says ({extension}).")
    return content_type


def is_plain_text(content):
    """True for UTF-8 text without NUL bytes: what a .txt attachment must hold."""
    try:
        return b"\x00" not in content and bool(content.decode("utf-8"))
    except UnicodeDecodeError:
        return False


def check_attachment_quota(user, size):
    """A 403 when this file would take the user's attachments past ATTACHMENT_BYTES_PER_USER."""
    quota = current_app.config["ATTACHMENT_BYTES_PER_USER"]
    # Each file counts as at least one disk block: a million 1-byte files fill a disk too.
    used = get_db().execute(
        "SELECT coalesce(sum(max(size, ?)), 0) FROM attachments JOIN notes ON notes.id = note_id"
        " WHERE notes.user_id = ?", (DISK_BLOCK, user.id)).fetchone()[0]
    if used + max(size, DISK_BLOCK) > quota:  # one account filling the disk
        get_db().rollback()
        abort(403, f"Your attachments may take {quota // 1024} KB in all; this one does not "
                   "fit. Delete some to make room.")


DISK_BLOCK = 4096  # bytes: the least a file takes on disk


def own_attachment(note_id, attachment_id, user_id):
    """The attachment if it belongs to a note of the user's; else a 404 that reveals nothing."""
    note = Note.get_for_user(note_id, user_id)
    found = note and Attachment.get(attachment_id, note.id)
    return found or abort(404, "No such attachment.")


def send_attachment(found):
    """The file, with headers that stop a browser from running it as a page or a script."""
    image = found.content_type.startswith("image/")
    response = send_from_directory(uploads_folder(), found.stored_name,
                                   mimetype=found.content_type, download_name=found.filename,
                                   as_attachment=not image)  # a download, never opened here
    response.headers["X-Content-Type-Options"] = "nosniff"  # the type we chose, no guessing
    # No scripts, and no framing by any site, even one FRAME_ANCESTORS lets frame the pages.
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox; frame-ancestors 'none'"
    return response


STORED_NAME = re.compile(r"[0-9a-f]{32}")  # what `secrets.token_hex(16)` gives a stored file


def uploads_folder():
    """UPLOAD_FOLDER (instance/uploads), made on first use: outside static/, so nothing serves it
    unchecked."""
    folder = current_app.config["UPLOAD_FOLDER"]
    os.makedirs(folder, exist_ok=True)
    return folder


@dataclass
class Attachment:
    """A file attached to a note."""

    id: int
    note_id: int
    stored_name: str
    filename: str
    content_type: str
    size: int
    created_at: str

    @classmethod
    def for_note(cls, note_id):
        rows = get_db().execute("SELECT * FROM attachments WHERE note_id = ? ORDER BY id",
                                (note_id,)).fetchall()
        return [cls(**row) for row in rows]

    @classmethod
    def get(cls, attachment_id, note_id):
        if not 0 < attachment_id <= SQLITE_MAX_INTEGER:  # /attachments/99999999999999999999
            return None
        row = get_db().execute("SELECT * FROM attachments WHERE id = ? AND note_id = ?",
                               (attachment_id, note_id)).fetchone()
        return cls(**row) if row else None

    @classmethod
    def create(cls, note_id, stored_name, filename, content_type, size):
        db = get_db()
        row = db.execute(
            "INSERT INTO attachments (note_id, stored_name, filename, content_type, size)"
            " VALUES (?, ?, ?, ?, ?) RETURNING *",
            (note_id, stored_name, filename, content_type, size)).fetchone()
        attachment = cls(**row)
        db.commit()
        return attachment

    def delete(self):
        db = get_db()
        db.execute("DELETE FROM attachments WHERE id = ?", (self.id,))
        db.commit()

    def to_json(self):
        return {"id": self.id, "filename": self.filename, "content_type": self.content_type,
                "size": self.size, "created_at": self.created_at}


@uploads_bp.app_template_global()
def attachments_of(note):
    """The note's attachments, for the list on its edit page."""
    return Attachment.for_note(note.id)


# How this section learns that a note is gone, without sections 5, 6 or 10 knowing about
# it: ON DELETE CASCADE deletes the rows with their note (or user), in the same transaction,
# and the trigger writes each file's name into `attachment_files_to_remove`; after the
# request, `remove_deleted_files` deletes those files. A rolled-back deletion leaves both
# row and file; a crash between commit and removal leaves the name for the next request.
ATTACHMENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS attachments (
    id INTEGER PRIMARY KEY,
    note_id INTEGER NOT NULL REFERENCES notes (id) ON DELETE CASCADE,
    stored_name TEXT NOT NULL UNIQUE,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX IF NOT EXISTS attachments_by_note ON attachments (note_id, id);
CREATE TABLE IF NOT EXISTS attachment_files_to_remove (stored_name TEXT PRIMARY KEY);
CREATE TRIGGER IF NOT EXISTS attachment_deleted AFTER DELETE ON attachments BEGIN
    INSERT OR IGNORE INTO attachment_files_to_remove (stored_name) VALUES (old.stored_name);
END;
"""


def remove_deleted_files(exception=None):
    """At the end of a request or command that wrote, delete the files of deleted attachments."""
    db = g.get("db")
    # Only after committed work: a failure, or a transaction left open, is rolled back, rows
    # and all. `total_changes` is 0 on a connection that wrote nothing: no query then.
    if exception is not None or db is None or db.in_transaction or not db.total_changes:
        return
    try:
        for (name,) in db.execute("SELECT stored_name FROM attachment_files_to_remove").fetchall():
            # Only a name this section made: one from a crafted or restored database ("../x")
            # must not delete a file outside the uploads folder.
            with contextlib.suppress(FileNotFoundError):  # another worker removed it first
                if STORED_NAME.fullmatch(name):
                    os.remove(os.path.join(uploads_folder(), name))
            db.execute("DELETE FROM attachment_files_to_remove WHERE stored_name = ?", (name,))
        db.commit()
    except (sqlite3.Error, OSError) as error:  # the deletion itself succeeded: retried next time
        current_app.logger.warning("Attachment files not removed yet: %s", error)


def attachment_openapi_paths():
    """The attachment operations, for section 6's OpenAPI document."""
    ids = [{"name": name, "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 1}} for name in ("note_id", "attachment_id")]
    item = {"type": "object", "properties": {
        "id": {"type": "integer"}, "filename": {"type": "string"},
        "content_type": {"enum": sorted({kind for kind, _ in ATTACHMENT_TYPES.values()})},
        "size": {"type": "integer"}, "created_at": {"type": "string"}}}
    limits = (f"One file, field `file`: {', '.join(sorted(ATTACHMENT_TYPES))}, its content "
              f"matching its extension (else 415), at most "
              f"{current_app.config['MAX_ATTACHMENT_BYTES']} bytes (else 413); an account's "
              f"files take at most {current_app.config['ATTACHMENT_BYTES_PER_USER']} bytes "
              "(else 403).")
    upload = {**operation("Attach a file to a note", 201, item, (400, 403, 404, 413, 415, 429),
                          parameters=ids[:1]), "description": limits, "requestBody": {
        "required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary"}}}}}}}
    listing = {"type": "object", "properties": {"items": {"type": "array", "items": item}}}
    download = operation("Download an attachment", 200, errors=(404,), parameters=ids)
    download["responses"]["200"]["content"] = {"*/*": {"schema": {"type": "string",
                                                                   "format": "binary"}}}
    return {
        "/api/notes/{note_id}/attachments": {
            "get": operation("List a note's attachments", 200, listing, (404,),
                             parameters=ids[:1]),
            "post": upload},
        "/api/notes/{note_id}/attachments/{attachment_id}": {"get": download},
    }


@uploads_bp.record_once
def set_up_uploads(state):
    """The upload limits and the attachments table, when the app registers this Blueprint."""
    config = state.app.config
    # A file must fit in the whole request's limit, with the rest of the form: else Flask's
    # MAX_CONTENT_LENGTH refuses a file under ours, with no word why.
    request_limit = config.get("MAX_CONTENT_LENGTH") or math.inf
    if config.get("MAX_ATTACHMENT_BYTES", 0) >= request_limit:
        raise RuntimeError(f"MAX_ATTACHMENT_BYTES ({config['MAX_ATTACHMENT_BYTES']}) must be under "
                           f"MAX_CONTENT_LENGTH ({request_limit}), the whole request's limit.")
    config.setdefault("MAX_ATTACHMENT_BYTES", min(512 * 1024, request_limit // 2))  # per file
    config.setdefault("ATTACHMENT_BYTES_PER_USER", 20 * 1024 * 1024)  # per account, all notes
    config.setdefault("UPLOAD_FOLDER", os.path.join(state.app.instance_path, "uploads"))
    add_schema(state.app, ATTACHMENTS_SCHEMA)
    # After each request and each `flask` command (delete-user too), once its writes are in.
    state.app.teardown_appcontext(remove_deleted_files)
    state.app.extensions.setdefault("openapi_paths", []).append(attachment_openapi_paths)


# ---------------------------------------------------------------------------
# Appendix: how this tour shows its own code
# ---------------------------------------------------------------------------
# Not a topic: the machinery behind `/` and `/topics/<n>` (section 2). Each topic's
# teaching text (summary, the cheat sheet's snippet, what app.py adds, exercises, Elsewhere
# panels) lives beside its lesson, in lessons/NN_name/teaching/; `source_sections` finds
# each numbered section of this very file by its banner (`section_file` also finds it in
# the package section 16 exports), so the code on screen is the code that runs;
# `highlight_python` colours it with the standard library's tokenizer, so the page needs no
# JavaScript. A copy of the tour brings lessons/ along: it is what the pages show.
# Uses `tour_bp` (section 2); page.html extends base.html (section 4).


# A topic page shows a dozen files, highlighted: 25 to 180 ms of work (measured), which a
# class of 300 opening topics would queue behind. So, as Jinja compiles a template once,
# each app works out what a page shows once, and again on every request only while its
# templates auto-reload (`flask run --debug`), so that an edited lesson shows on reload.
ONCE_PER_APP_LIMIT = 200  # 30 pages (the tour, 14 topics, their tests) under a few URL prefixes


def once_per_app(build, *arguments):
    """`build(*arguments)`, kept for the app's life unless its templates auto-reload."""
    if current_app.jinja_env.auto_reload:  # TEMPLATES_AUTO_RELOAD, on with --debug
        return build(*arguments)
    kept = current_app.extensions.setdefault("flask_tour_pages", {})
    key = (build, *arguments)
    if key not in kept:
        result = build(*arguments)
        if len(kept) >= ONCE_PER_APP_LIMIT:  # a new URL prefix per request cannot fill memory
            return result
        kept[key] = result
    return kept[key]


def load_topics():
    """Every topic's teaching text, from lessons/NN_name/teaching/topic.json, in order."""
    return once_per_app(read_topics)


def read_topics():
    """Read every lesson's teaching/topic.json (`load_topics` keeps the result)."""
    lessons = Path(current_app.root_path) / "lessons"
    return [json.loads(read_text(folder / "teaching" / "topic.json")) | {"folder": folder.name}
            for folder in sorted(lessons.glob("[0-9][0-9]_*"))
            if (folder / "teaching" / "topic.json").is_file()]


def read_text(path):
    """A text file's contents, as the pages show it (read when `once_per_app` builds a page)."""
    return Path(path).read_text(encoding="utf-8")


def get_topic(number):
    """The topic with this number, or a 404 (as flaskr's `get_post`)."""
    for topic in load_topics():
        if topic["number"] == number:
            return topic
    abort(404)


def lesson_folder(topic):
    """The folder of a topic's lesson: lessons/NN_name."""
    return Path(current_app.root_path) / "lessons" / topic["folder"]


# What a lesson's download leaves out: the tour's teaching text, and what running it makes.
LESSON_LEFT_OUT = {"teaching", "instance", "__pycache__", ".pytest_cache", ".venv", ".env"}


def lesson_files(folder, modules=()):
    """The files of a lesson as its download holds them: `modules` first, tests and notes last."""
    files = [path for path in folder.rglob("*") if path.is_file()
             and not LESSON_LEFT_OUT & set(path.relative_to(folder).parts)
             and path.suffix not in (".pyc", ".sqlite", ".db")]

    def order(path):
        name = path.relative_to(folder).as_posix()
        rank = (0 if name in modules else 1 if name.startswith("templates/")
                else 3 if name.startswith("test_") else 4 if name in ("README.txt", "requirements.txt")
                else 2)
        return rank, modules.index(name) if name in modules else 0, name  # modules as listed
    return sorted(files, key=order)


def lesson_zip(folder):
    """The lesson as a zip file, its files inside one folder named like the lesson's."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in lesson_files(folder):
            entry = zipfile.ZipInfo(f"{folder.name}/{path.relative_to(folder).as_posix()}",
                                    time.localtime(path.stat().st_mtime)[:6])
            entry.external_attr = (stat.S_IFREG | 0o644) << 16  # unzips as a file anyone can read
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, path.read_bytes())
    buffer.seek(0)
    return buffer


# The tour, a topic and its tests show only files, never who asks: the body of each page is
# rendered once per app and URL prefix (links carry the prefix), and page.html puts it in
# the layout, which shows who is logged in. Measured: a topic page in a third of the time.
def rendered_body(template, **context):
    """`template` rendered as the HTML of a page's body, every character ASCII."""
    html = render_template(template, **context)
    # "…" as "&#8230;": the same page, but an all-ASCII one is copied and encoded for each
    # request several times faster (measured: 0.13 ms against 0.005 ms for a topic page).
    return Markup(html.encode("ascii", "xmlcharrefreplace").decode("ascii"))


def tour_page():
    """The tour: every topic with its demos."""
    return render_template("page.html", title="The tour",
                           body=once_per_app(tour_body, request.script_root))


def tour_body(script_root):
    """The HTML of the tour's body under one URL prefix (`script_root` keys it: `url_for`
    reads the prefix from the request itself)."""
    return rendered_body("_tour.html", topics=load_topics(), run_command=run_command())


def run_command():
    """The command that serves this app: `flask run` alone finds only an app.py (or wsgi.py)."""
    name = current_app.import_name  # "app", or "flask_tour" in the package of section 16
    return "flask run" if name in ("app", "wsgi", "__main__") else f"flask --app {name} run"


def topic_page(topic):
    """The page of one topic: the cheat sheet, the lesson, the demos, then app.py's section."""
    body = once_per_app(topic_body, topic["number"], request.script_root) or abort(404)
    return render_template("page.html", title=f"{topic['number']}. {topic['title']}", body=body)


def topic_body(number, script_root):
    """The HTML of a topic page's body under one URL prefix; None when this file lacks its section."""
    view = topic_view(number)
    if view is None:  # a copy of a few sections: the rest are not in it
        return None
    topics = load_topics()
    position = topics.index(view["topic"])
    return rendered_body("_topic.html", **view, previous=topics[position - 1] if position else None,
                         next=topics[position + 1] if position + 1 < len(topics) else None)


def tests_page(topic):
    """The page of one topic's tests: its section of test_app.py, highlighted."""
    body = once_per_app(tests_body, topic["number"], request.script_root) or abort(404)
    return render_template("page.html", title=f"Tests of {topic['number']}. {topic['title']}",
                           body=body)


def tests_body(number, script_root):
    """The HTML of a tests page's body under one URL prefix; None in a copy without test_app.py."""
    tests = tests_view(number)
    if tests is None:
        return None
    code = highlight_python(tests["source"], tests["first_line"], anchor="test-L")
    return rendered_body("_topic_tests.html", topic=get_topic(number), tests=tests, code=code)


def topic_view(number):
    """What _topic.html shows of one topic, highlighted; None when no module has its section."""
    found = section_file(number)
    if found is None:  # a copy of a few sections: the rest are not in it
        return None
    path, module, first_line, source = found
    topic = get_topic(number)
    folder = lesson_folder(topic)
    teaching = folder / "teaching"
    return dict(
        topic=topic,
        source_file=f"{__package__}/{path.name}" if __package__ else path.name,  # from where it runs
        cheat_sheet=topic["cheat_sheet"] and shown_file(  # None beyond the cheat sheet (15-19)
            teaching / topic["cheat_sheet"]["file"], teaching, topic["cheat_sheet"]["language"],
            anchor="sheet"),
        lesson=[shown_file(path, folder.parent)
                for path in lesson_files(folder, topic["lesson"]["modules"])],
        lesson_modules=[Path(name).stem for name in topic["lesson"]["modules"]],
        adds=[(name, why, name_line(source, first_line, name)) for name, why in topic["adds"]],
        imports=highlight_python(import_lines(source, module), anchor="imports-L"),
        source=source,
        first_line=first_line,
        code=highlight_python(source, first_line),
        parts=section_parts(source, first_line),
        panels=[panel_view(index, panel, teaching, source, first_line)
                for index, panel in enumerate(topic["elsewhere"], start=1)],
        files=[shown for path in topic["files"]
               if (shown := shown_file(Path(current_app.root_path) / path))],
        excerpts=[shown for excerpt in topic.get("excerpts", [])
                  if (shown := shown_region(excerpt))],
        tests=tests_view(number),
    )


def section_file(number):
    """(path, text, first line, section) of the module that holds section `number`, or None.

    That is this very module, or, in the package `flask tour export` writes (section 16),
    whichever of its modules the section went to.
    """
    here = Path(__file__)
    for path in sorted(here.parent.glob("*.py")) if __package__ else [here]:
        text = read_text(path)  # its sections, and the imports they need
        if number in sections_of(text):
            return path, text, *sections_of(text)[number]
    return None


@tour_bp.app_template_global()
def topic_of_this_demo():
    """The first topic whose demos include this page, for base.html's link back; else None."""
    if request.blueprint == "tour":  # the tour's own pages have their own navigation
        return None
    return next((topic for topic in load_topics()
                 if any(endpoint == request.endpoint for _, endpoint, _ in topic["demos"])), None)


@tour_bp.app_template_global()
def demo_links(topic):
    """(label, URL) for each of the topic's demos that this app has registered."""
    return [(label, url_for(endpoint, **arguments))
            for label, endpoint, arguments in topic["demos"]
            if endpoint in current_app.view_functions]


def panel_view(index, panel, teaching, source, first_line):
    """What _topic.html needs to show one Elsewhere panel: its code highlighted, its links."""
    def code(key, language, anchor):
        return highlight(read_text(teaching / panel[key]).rstrip("\n"), language,
                         anchor=anchor) if key in panel else ""
    return {
        "panel": panel,
        "cheat_sheet": code("cheat_sheet_file", panel.get("language", "python"), f"p{index}c-L"),
        "snippet": code("snippet_file", "python", f"p{index}s-L"),
        "links": [(name, line) for name in panel["ours"]
                  if (line := name_line(source, first_line, name))],
        "files": [(path, file_anchor(path)) for path in panel["files"]],
    }


@functools.cache  # pure: see pytest_command
def import_lines(section, module):
    """The import statements of `module`'s opening block that `section` needs, one per line."""
    used = {node.id for node in ast.walk(ast.parse(section)) if isinstance(node, ast.Name)}
    opening = ast.parse(module[:module.index(BANNER_RULE)])
    lines = []
    for statement in opening.body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            names = [alias for alias in statement.names
                     if (alias.asname or alias.name).partition(".")[0] in used]
            if names:
                statement.names = names
                lines.append(ast.unparse(statement))
    return "\n".join(lines)


@functools.cache  # pure: see pytest_command
def name_line(source, first_line, name):
    """The line number where `source` defines `name` (else first uses it), or None."""
    code = [(first_line + index, line) for index, line in enumerate(source.splitlines())
            if not line.lstrip().startswith("#")]
    defines = re.compile(rf"\s*(?:def|class) {re.escape(name)}\b")
    assigns = re.compile(rf"\s*{re.escape(name)}\b\s*[:=,]")  # not a call at a line's start
    uses = re.compile(rf"(?<!\w){re.escape(name)}\b")
    for pattern in (defines.match, assigns.match, uses.search):
        for number, line in code:
            if pattern(line):
                return number
    return None


def file_anchor(path):
    """The id of a shown file's block on the page: `templates/base.html` → file-templates-base-html."""
    return "file-" + re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def shown_file(path, base=None, language=None, anchor=None):
    """A file as the page shows it, named from `base` (the project); None when it is missing."""
    name = Path(path).relative_to(base or current_app.root_path).as_posix()
    try:
        text = read_text(path).rstrip("\n")
    except (OSError, UnicodeDecodeError):  # a copied section or the Docker image lacks it, or an image
        return None
    language = language or ("python" if name.endswith(".py") else
                            "jinja" if name.endswith(".html") else "hash")
    anchor = anchor or file_anchor(name)
    return {"path": name, "anchor": anchor, "code": highlight(text, language, anchor=anchor + "-L"),
            "lines": text.count("\n") + 1, "language": language}


# A topic can show part of a file: the lines between `# region NAME` and `# endregion NAME`
# (the markers editors fold on), such as test_app.py's fixtures on topic 15's page.
def shown_region(excerpt):
    """An "excerpts" entry of topic.json as the page shows it; None if its file or region is gone."""
    name = excerpt["region"]
    try:
        lines = read_text(Path(current_app.root_path) / excerpt["file"]).splitlines()
        start = next(index for index, line in enumerate(lines)
                     if re.fullmatch(rf"# region {re.escape(name)}\b.*", line))
        end = lines.index(f"# endregion {name}", start)
    except (OSError, StopIteration, ValueError):  # a copied section or the Docker image lacks it
        return None
    anchor = file_anchor(f"{excerpt['file']} {name}")
    return excerpt | {"anchor": anchor, "first_line": start + 1, "last_line": end + 1,
                      "code": highlight("\n".join(lines[start:end + 1]), "python", start + 1,
                                        anchor=anchor + "-L")}


def tests_view(number):
    """The topic's section of test_app.py (same banners), highlighted, and the command to run it."""
    try:
        text = read_text(Path(__file__).with_name("test_app.py"))
    except OSError:  # not in a copied section or the Docker image
        return None
    return tests_of(text, number)


def tests_of(text, number):
    """What `tests_view` shows of test_app.py's `text`: None when it has no such section."""
    if number not in sections_of(text):
        return None
    first_line, source = sections_of(text)[number]
    return {"first_line": first_line, "lines": source.count("\n") + 1, "source": source,
            "count": len(test_names(source)), "command": pytest_command(source, text)}


def test_names(source):
    """The names of the test functions defined in `source`."""
    return re.findall(r"^def (test_\w+)", source, re.M)


# Words `pytest -k` would also match: the file's name, marker names and operators.
PYTEST_K_RESERVED = "test_app.py parametrize skipif usefixtures pytestmark and or not"


# Pure functions of their text, so each version of a file is highlighted once per process,
# also where `once_per_app` works a page out again: with `flask run --debug`, and in the
# tests, which build hundreds of apps.
@functools.cache
def pytest_command(section, whole_file):
    """A `pytest -k` command that runs exactly the tests of `section`.

    -k matches substrings of test names, so each word is a piece of a test name found nowhere
    else in the file; a few such words cover all of a section's tests.
    """
    others = whole_file.replace(section, "")
    # What -k compares words with: test names, and the parameters in their ids.
    elsewhere = "\n".join([*re.findall(r"^def (test_\w+)", others, re.M),
                           *re.findall(r"^@pytest\.mark\.parametrize\(.*?^def ", others, re.M | re.S),
                           PYTEST_K_RESERVED]).lower()
    names = test_names(section)
    pieces = {word for name in names for word in name_pieces(name) if word not in elsewhere}
    covers = {word: {name for name in names if word in name} for word in pieces}
    words, left = [], set(names)
    while left:
        best = max(sorted(covers), key=lambda word: (len(covers[word] & left), -len(word)),
                   default=None)
        if best is None or not covers[best] & left:  # no piece is unique: name the tests in full
            words += sorted(left)
            break
        words.append(best)
        left -= covers[best]
    return f'python -m pytest test_app.py -k "{" or ".join(words)}"'


def name_pieces(name):
    """Runs of one to three words in a test name, such as `jwt_alg` in `test_jwt_alg_none`."""
    parts = name.lower().removeprefix("test_").split("_")
    return {"_".join(parts[start:end]) for start in range(len(parts))
            for end in range(start + 1, min(start + 4, len(parts) + 1))
            if len("_".join(parts[start:end])) > 3}


BANNER_RULE = "# " + "-" * 75
PART_BANNER = re.compile(r"# --- (\d+\.\d+ .*?) -*$")


def source_sections(path=None):
    """Map each topic number to (first line number, its section of the file, banner included).

    The file is this very module unless `path` names another with the same banners, read
    on each call (the pages call it when `once_per_app` builds them).
    """
    return sections_of(read_text(path or __file__))


@functools.cache  # pure: see pytest_command
def sections_of(text):
    """The numbered sections of a file's text, as `source_sections` returns them."""
    lines = text.splitlines()
    starts = [i - 1 for i, line in enumerate(lines)
              if lines[i - 1] == BANNER_RULE and lines[i + 1:i + 2] == [BANNER_RULE]]
    sections = {}
    for start, end in zip(starts, starts[1:] + [len(lines)]):
        number = re.match(r"# (\d+)\.", lines[start + 1])
        if number:
            sections[int(number.group(1))] = (start + 1, "\n".join(lines[start:end]).rstrip())
    return sections


def section_parts(source, first_line):
    """(title, line number) of each part of a section that has parts, such as 11.1."""
    return [(match.group(1), first_line + index)
            for index, line in enumerate(source.splitlines())
            if (match := PART_BANNER.match(line))]


def token_class(token, previous):
    """The CSS class that colours one token (`previous`: the text of the one before), or None."""
    kind = tokenize.tok_name[token.type]
    if kind in ("COMMENT", "NUMBER"):
        return kind.lower()
    if kind == "STRING" or kind.startswith("FSTRING"):
        return "string"
    decorator = re.match(r"\s*@[\w.]+", token.line)
    if decorator and token.start[0] == token.end[0] and token.end[1] <= decorator.end():
        return "decorator"
    if kind == "NAME" and keyword.iskeyword(token.string):
        return "keyword"
    if kind == "NAME" and previous in ("def", "class"):
        return "definition"
    return None


def coloured_pieces(source):
    """Split Python source into (text, CSS class or None) pieces that join back into it exactly."""
    offsets = [0]
    for line in source.split("\n"):
        offsets.append(offsets[-1] + len(line) + 1)
    pieces, position, previous = [], 0, None
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            kind = token_class(token, previous)
            start, end = (offsets[row - 1] + column for row, column in (token.start, token.end))
            if kind and start >= position:
                pieces += [(source[position:start], None), (source[start:end], kind)]
                position = end
            previous = token.string
    except (tokenize.TokenError, SyntaxError):  # an unfinished fragment: the rest stays plain
        pass
    return pieces + [(source[position:], None)]


@functools.cache  # pure: see pytest_command
def highlight_python(source, first_line=1, anchor="L"):
    """Python source as HTML: one `<span>` per line, numbered from `first_line`, tokens coloured."""
    return numbered_lines(coloured_pieces(source), first_line, anchor)


# Enough to tell comments and strings apart in templates and in Dockerfile, nginx, shell,
# YAML and .env files.
HASH_COMMENT = r"(?:^|(?<=\s))#[^\n]*"
JINJA_COMMENT = r"\{#.*?#\}|<!--.*?-->"
QUOTED = r"\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'"


def text_pieces(source, comment):
    """Split text into (text, CSS class or None) pieces, comments and quoted strings marked."""
    pieces, position = [], 0
    for match in re.finditer(rf"(?P<comment>{comment})|(?P<string>{QUOTED})", source, re.M | re.S):
        pieces += [(source[position:match.start()], None), (match.group(), match.lastgroup)]
        position = match.end()
    return pieces + [(source[position:], None)]


@functools.cache  # pure: see pytest_command
def highlight(source, language, first_line=1, anchor="L"):
    """Source in `language` ("python", "jinja", or anything with # comments) as numbered HTML."""
    if language == "python":
        return highlight_python(source, first_line, anchor)
    comment = JINJA_COMMENT if language == "jinja" else HASH_COMMENT
    return numbered_lines(text_pieces(source, comment), first_line, anchor)


def numbered_lines(pieces, first_line, anchor):
    """(text, CSS class) pieces as one `<span>` per line, with ids `anchor` + line number."""
    lines = [[]]
    for text, kind in pieces:
        for index, part in enumerate(text.split("\n")):
            if index:
                lines.append([])
            if part:  # every piece of text is escaped; `kind` and `anchor` are our own names
                lines[-1].append(f'<span class="tok-{kind}">{escape(part)}</span>' if kind
                                 else str(escape(part)))
    return Markup("".join(
        f'<span class="line" data-line="{first_line + number}" id="{anchor}{first_line + number}">'
        f'{"".join(parts)}\n</span>' for number, parts in enumerate(lines)))


@tour_bp.app_template_filter()
def inline_code(text):
    """Escape `text` and show its `backticked` parts as code."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


# ---------------------------------------------------------------------------
# 16. Blueprints, and growing into a package
# ---------------------------------------------------------------------------
# A Blueprint records views, hooks and commands until an app registers it: `create_app`
# calls `app.register_blueprint(forms_bp)`, and `url_for` names each endpoint after its
# Blueprint ("forms.login"). That is why each section with views is one: the same section
# registers on this app, on a copy, or on yours. Sections without views (the models, the
# tokens) have an `init_*(app)` function instead, as flaskr's `db.init_app`. This one's
# Blueprint also holds a command group, so `flask tour export DIR` writes this very module
# as the package it grows into: DIR/flask_tour/, `create_app` in `__init__.py` and one module
# per section, each importing what its Uses line names and what it needs of the import block.
# Uses `read_text`, `once_per_app`, `import_lines` and `BANNER_RULE` (appendix); its page
# extends base.html (section 4).

blueprints_bp = Blueprint("blueprints", __name__, template_folder="templates", cli_group="tour")


@blueprints_bp.cli.command("export")
@click.argument("folder", type=click.Path(file_okay=False))
def export_command(folder):
    """Write this app as a package, FOLDER/flask_tour/, with one module per section."""
    if not folder:  # "" would be the current folder: most likely an unset shell variable
        raise click.BadParameter("an empty name would write into the current folder: give "
                                 "the folder to write into, such as /tmp/tour.", param_hint="FOLDER")
    modules = package_modules(read_text(__file__))
    folder = Path(folder)
    target = folder / PACKAGE_NAME
    try:
        target.mkdir(parents=True)  # not exist_ok: an earlier export, or your edits, stay as they are
    except FileExistsError:
        raise click.ClickException(f"{target} already exists: nothing was written.") from None
    for module in modules:
        (target / f"{module['name']}.py").write_text(module["text"], encoding="utf-8")
    root = Path(current_app.root_path)
    for name in PACKAGE_DATA:
        if (root / name).is_dir():
            shutil.copytree(root / name, target / name, ignore=LEFT_BEHIND)
        elif (root / name).is_file():
            shutil.copyfile(root / name, target / name)
    requirements = folder / "requirements.txt"  # what the tour's "Run it yourself" installs
    if (root / "requirements.txt").is_file() and not requirements.exists():
        shutil.copyfile(root / "requirements.txt", requirements)
    click.echo(f"Wrote {len(modules)} modules to {target}. Run it from {folder}: "
               f"flask --app {PACKAGE_NAME} run")


@blueprints_bp.route("/blueprints")
def show_blueprints():
    """The Blueprints this app registered, and the package `flask tour export` writes."""
    registered = [(name, blueprint.import_name, blueprint.url_prefix or "/",
                   [" ".join(filter(None, [cli_group(name, blueprint), command]))
                    for command in sorted(blueprint.cli.commands)])
                  for name, blueprint in current_app.blueprints.items()]
    try:
        modules, refusal = once_per_app(package_layout), None
    except click.ClickException as error:  # a copy of a few sections, or an exported module
        modules, refusal = [], error.message
    return render_template("blueprints.html", blueprints=registered, modules=modules,
                           refusal=refusal, package=PACKAGE_NAME, data=PACKAGE_DATA)


def cli_group(name, blueprint):
    """The group of `flask` a Blueprint's commands sit in: its own name unless it gave
    `cli_group`, where None puts them on `flask` itself (`flask db-status`)."""
    group = blueprint.cli_group
    return group if group is None or isinstance(group, str) else name  # else Flask's "not given"


PACKAGE_NAME = "flask_tour"
# What the package's pages read besides its modules: templates, static files, the lessons
# the tour shows, and the settings /config may show.
PACKAGE_DATA = ("templates", "static", "lessons", ".env.example")
LEFT_BEHIND = shutil.ignore_patterns("__pycache__", ".pytest_cache", "instance", "*.pyc", "*.sqlite",
                                     ".env", ".venv")  # a learner's secrets and virtualenvs


def package_modules(text):
    """The modules of the package for a module with this `text`, `__init__` first.

    Each: its name, the titles of its sections, what it imports from the package at its top
    (`imports`) and inside its functions (`inside`), as {module: names}, and its `text`.
    """
    parts = banner_parts(text)
    owner = {name: title for title, source in parts for name in defined_names(source)}
    module_of = section_modules(parts, owner, taken=imported_names(text) | set(PACKAGE_DATA))
    modules = {}
    for title, source in parts:
        module = modules.setdefault(module_of[title], {"name": module_of[title], "titles": [],
                                                        "sources": [], "imports": {}, "inside": {}})
        module["titles"].append(title)
        module["sources"].append(source)
        loaded = loaded_names(source)
        for name in uses_names(source):
            if name in owner and module_of[owner[name]] != module["name"]:
                module["imports"].setdefault(module_of[owner[name]], set()).add(name)
            elif name not in owner and name in loaded:
                raise click.ClickException(f"`{name}`, which {title!r} uses, is not in this "
                                           "module: export from the whole app.py")
    for module in modules.values():
        module["text"] = module_text(module, text)
    check_no_import_cycle(modules)
    return sorted(modules.values(), key=lambda module: module["name"] != "__init__")


def section_modules(parts, owner, taken):
    """{title: module name} for each part; `taken`: names a module must not shadow."""
    module_of = {}
    for title, source in parts:
        if title[0].isdigit():
            module_of[title] = module_name(title, source, taken)
            taken.add(module_of[title])
    for title, source in parts:
        if not title[0].isdigit():
            # The appendix (not a topic) goes with the first section its Uses line names: the
            # tour's views (section 2) and the appendix use each other, so as two modules they
            # would import each other. (The last part, `app`, goes with `create_app`.)
            used = [owner[name] for name in uses_names(source) if name in owner]
            module_of[title] = module_of[used[0]] if used else module_name(title, source, taken)
            taken.add(module_of[title])
    return module_of


def package_layout():
    """The modules `flask tour export` writes for this very module (the page keeps it)."""
    return package_modules(read_text(__file__))


def banner_parts(text):
    """(title, source) of each banner-headed part of a module's text, in order."""
    pieces = re.split(rf"^(?={re.escape(BANNER_RULE)}\n# .*\n{re.escape(BANNER_RULE)}$)", text,
                      flags=re.M)
    return [(piece.splitlines()[1][2:], piece.rstrip() + "\n") for piece in pieces[1:]]


def defined_names(source):
    """The names a part defines at module level: functions, classes and assigned names."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(target.id for target in targets if isinstance(target, ast.Name))
    return names


def loaded_names(source):
    """Every name a part's code reads."""
    return {node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name)}


def uses_names(source):
    """The `names` of a part's Uses comments (one per part of section 11), in order: settings
    and endpoints among them."""
    return [name for uses in re.findall(r"^# Uses (.*(?:\n# .*)*)", source, re.M)
            for name in re.findall(r"`([^`]+)`", uses)]


def imported_names(text):
    """The names the import block at the top of `text` binds: `json`, `flask`, `Blueprint`…"""
    names = set()
    for node in ast.parse(text[:text.index(BANNER_RULE)]).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).partition(".")[0] for alias in node.names)
            names.add((node.module or "").partition(".")[0] if isinstance(node, ast.ImportFrom) else "")
    return names


def module_name(title, source, taken):
    """A section's module: `__init__` for the factory's, else named after its Blueprint or
    `init_*` function (`forms`, `models`), with a `_` when that would shadow a name."""
    if "create_app" in defined_names(source):
        return "__init__"
    found = re.search(r'Blueprint\(\s*"(\w+)"|^def init_(\w+)\(', source, re.M)
    name = next(filter(None, found.groups())) if found else re.findall(r"[a-z]+", title.lower())[0]
    while name in taken or keyword.iskeyword(name):
        name += "_"
    return name


def module_text(module, text):
    """The source of one exported module: a docstring, its imports, then its sections."""
    source = without_main_block("\n\n".join(module["sources"]))
    if module["name"] == "__init__":
        source = imports_inside_functions(source, module)
    also = "; ".join(title_in_package(title) for title in module["titles"][1:])
    docstring = (f'"""{module["titles"][0]}, exported from {Path(__file__).name} by `flask tour '
                 f'export`{"; also " + also if also else ""}."""')
    relative = [import_from(name, names) for name, names in module["imports"].items()]
    return "\n".join([docstring, import_lines(source, text), *relative, "", "", source])


def title_in_package(title):
    """A part's title as the package's docstring names it, after a semicolon: the commands
    that serve this module serve the package."""
    title = title[:1].lower() + title[1:]
    return (title.replace("`flask run`", f"`flask --app {PACKAGE_NAME} run`")
            .replace(f"`gunicorn {Path(__file__).stem}:app`", f"`gunicorn {PACKAGE_NAME}:app`"))


def without_main_block(source):
    """`source` without the block that runs it as a script (`python app.py`): in a package,
    whose modules import one another relatively, a module cannot run as a script."""
    lines = source.split("\n")
    for node in reversed(ast.parse(source).body):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'":
            del lines[node.lineno - 1:node.end_lineno]
    return "\n".join(lines).rstrip() + "\n"


def import_from(module, names):
    """`from .module import a, b`, written by the standard library's unparser."""
    return ast.unparse(ast.ImportFrom(module=None if module == "__init__" else module,
                                      names=[ast.alias(name) for name in sorted(names)], level=1))


def imports_inside_functions(source, module):
    """`source` with each function importing, first thing, the names it takes from other modules.

    The package's `__init__` imports its sections inside `create_app`, as flaskr's factory
    does: a section's module may then import `create_app` without a circular import. The
    names `module` still imports at its top are those its code uses outside a function.
    """
    lines, imports = source.split("\n"), module["imports"]
    tree = ast.parse(source)
    outside = {name for node in tree.body if not isinstance(node, ast.FunctionDef)
               for name in loaded_names(ast.unparse(node))}
    for node in reversed(tree.body):
        used = loaded_names(ast.unparse(node))
        wanted = [import_from(name, names & used) for name, names in imports.items() if names & used]
        if isinstance(node, ast.FunctionDef) and wanted:
            first = node.body[0]
            docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            at = first.end_lineno if docstring else first.lineno - 1
            lines[at:at] = [" " * first.col_offset + line for line in wanted]
    module["inside"] = {name: names - outside for name, names in imports.items() if names - outside}
    module["imports"] = {name: names & outside for name, names in imports.items() if names & outside}
    return "\n".join(lines)


def check_no_import_cycle(modules):
    """Refuse a package whose modules would import each other when Python loads them."""
    def visit(name, path):
        if name in path:
            raise click.ClickException("circular import: " + " -> ".join(path[path.index(name):] + [name]))
        for imported in modules[name]["imports"]:  # at its top: run while Python loads it
            visit(imported, path + [name])
    for name in modules:
        visit(name, [])


# ---------------------------------------------------------------------------
# The app that `flask run` and `gunicorn app:app` serve
# ---------------------------------------------------------------------------
# It is built when they look it up, not when the module is imported, so `import app` (as
# the tests do) writes nothing: the factory creates the instance folder's secret key. A
# module-level `__getattr__` (PEP 562) is what Python calls for a name the module lacks. In
# your own project, prefer the factory forms: `flask --app app:create_app run` and
# `gunicorn 'app:create_app()'`; `app.app` is kept because `gunicorn app:app` is how the
# cheat sheet runs it.
# Uses `create_app` (section 1).


def __getattr__(name):
    """Build `app` on first lookup; any other missing name is an AttributeError, as usual."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()["app"] = create_app()
    return globals()["app"]


if __name__ == "__main__":
    create_app().run()
