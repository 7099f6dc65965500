"""Lesson 9: one SQLite connection per request, kept on `g` and closed at teardown.

`g` is a place Flask gives each request for its own things; teardown is what runs when the
request is over, even after an error.
"""
import os
import secrets
import sqlite3

import click
from flask import Flask, abort, current_app, g, redirect, render_template, request, session, url_for
from flask.cli import with_appcontext

SCHEMA = "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"


def get_db():
    """The request's database connection, opened on first use and kept on `g`."""
    if "db" not in g:
        path = current_app.config["DATABASE"]
        os.makedirs(os.path.dirname(path), exist_ok=True)  # instance/: for data, not code
        g.db = sqlite3.connect(path)
        g.db.row_factory = sqlite3.Row  # rows behave like dicts: row["text"]
        g.db.executescript(SCHEMA)  # creates the table the first time, does nothing after
    return g.db


def close_db(exception=None):
    """Close the request's connection, if it opened one."""
    db = g.pop("db", None)
    if db is not None:
        db.close()


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Delete every message: drop the table and create it again."""
    get_db().executescript("DROP TABLE IF EXISTS messages;" + SCHEMA)
    click.echo("Initialized the database.")


def create_app(test_config=None):
    """Create and configure the app (flaskr's factory; `flask --app database` finds it)."""
    app = Flask(__name__)
    # dev only: set a long random SECRET_KEY in production, anyone who knows it can forge a session
    app.config.from_mapping(SECRET_KEY=os.environ.get("SECRET_KEY", "dev"),
                            DATABASE=os.path.join(app.instance_path, "database.sqlite"))
    app.config.update(test_config or {})  # the tests' settings win
    app.teardown_appcontext(close_db)  # after every request, even one that failed
    app.cli.add_command(init_db_command)  # flask --app database init-db

    @app.before_request
    def check_csrf():
        """Give each visitor a secret form token; refuse a POST that does not send it back."""
        token = session.setdefault("csrf_token", secrets.token_urlsafe(32))
        # Another site can make your browser post this form, but it cannot read this token.
        sent = request.form.get("csrf_token", "")
        if request.method == "POST" and not secrets.compare_digest(sent.encode(), token.encode()):
            abort(400, "The form is out of date. Go back, reload the page and try again.")

    @app.route("/", methods=["GET", "POST"])
    def index():
        """List the messages; a POST adds one."""
        db = get_db()
        error = None
        if request.method == "POST":
            text = request.form.get("text", "").strip()
            if not text:
                error = "Write a message first."
            elif len(text) > 200:  # maxlength in the page stops a browser, not a script
                error = "At most 200 characters, please."
            else:
                # The ? hands the text to SQLite as a value: quotes in it are never run as SQL.
                db.execute("INSERT INTO messages (text) VALUES (?)", (text,))
                db.commit()
                return redirect(url_for("index"))
        rows = db.execute("SELECT id, text FROM messages ORDER BY id DESC").fetchall()
        return render_template("index.html", rows=rows, error=error), 400 if error else 200

    return app
