"""Lesson 9: one SQLite connection per request, kept on `g` and closed at teardown."""
import hmac
import os
import secrets
import sqlite3

import click
from flask import (Blueprint, Flask, abort, current_app, g, redirect, render_template,
                   request, session, url_for)
from flask.cli import with_appcontext

SCHEMA = "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"


def get_db():
    """The request's database connection, opened on first use and kept on `g`."""
    if "db" not in g:
        path = current_app.config["DATABASE"]
        os.makedirs(os.path.dirname(path), exist_ok=True)  # the instance folder, made when needed
        g.db = sqlite3.connect(path)
        g.db.row_factory = sqlite3.Row  # rows behave like dicts: row["text"]
        g.db.executescript(SCHEMA)  # creates the table the first time, does nothing after
    return g.db


def close_db(exception=None):
    """Close the request's connection, if it opened one."""
    db = g.pop("db", None)
    if db is not None:
        db.close()


def init_db():
    """Delete every row: drop the table and create it again."""
    get_db().executescript("DROP TABLE IF EXISTS messages;" + SCHEMA)


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Delete all data and create an empty table (flask --app database init-db)."""
    init_db()
    click.echo("Initialized the database.")


def csrf_token():
    """This visitor's secret form token, made once and kept in the session."""
    if "csrf_token" not in session:
        session["csrf_token"] = secrets.token_urlsafe(32)
    return session["csrf_token"]


def check_csrf():
    """Refuse a POST whose form does not carry this visitor's token."""
    if request.method != "POST":
        return
    # A page on another site can post a form to ours, but it cannot read the token.
    sent = request.form.get("csrf_token", "").encode()
    if not hmac.compare_digest(sent, csrf_token().encode()):
        abort(400, "The form is out of date. Go back, reload the page and try again.")


bp = Blueprint("messages", __name__)


@bp.route("/", methods=["GET", "POST"])
def index():
    """List the messages; a POST adds one."""
    db = get_db()
    error = None
    if request.method == "POST":
        text = request.form.get("text", "").strip()
        if not text:
            error = "Write a message first."
        else:
            # The ? hands the text to SQLite as a value: quotes in it are never run as SQL.
            db.execute("INSERT INTO messages (text) VALUES (?)", (text,))
            db.commit()
            return redirect(url_for("messages.index"))
    rows = db.execute("SELECT id, text FROM messages ORDER BY id DESC").fetchall()
    return render_template("index.html", rows=rows, error=error), 400 if error else 200


def create_app(test_config=None):
    """Create and configure the app (flaskr's factory; `flask --app database` finds it)."""
    app = Flask(__name__, instance_relative_config=True)
    # dev only: set a long random SECRET_KEY in production, anyone who knows it can forge a session
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "dev")
    app.config["DATABASE"] = os.path.join(app.instance_path, "database.sqlite")
    if test_config is not None:
        app.config.update(test_config)
    app.teardown_appcontext(close_db)  # after every request, even one that failed
    app.cli.add_command(init_db_command)
    app.before_request(check_csrf)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.register_blueprint(bp)
    return app
