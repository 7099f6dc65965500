"""Lesson 17, part 2: commands of your own for `flask`, and `flask shell`.

A command runs inside an application context, so `current_app`, `g` and `get_db()` work
there; `request` and `session` do not, because no request is running.
"""
import os
import sqlite3

import click
from flask import Flask, current_app, g, render_template
from werkzeug.security import generate_password_hash

app = Flask(__name__)
app.config["DATABASE"] = os.path.join(app.instance_path, "users.sqlite")

SCHEMA = "CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL);"


def get_db():
    """The connection of this application context: opened on first use, kept on `g`."""
    if "db" not in g:
        path = current_app.config["DATABASE"]
        os.makedirs(os.path.dirname(path), exist_ok=True)  # instance/: for data, not code
        g.db = sqlite3.connect(path)
        g.db.executescript(SCHEMA)
    return g.db


@app.teardown_appcontext
def close_db(error=None):
    """Runs when the application context ends: after each request, and after each command."""
    db = g.pop("db", None)
    if db is not None:
        db.close()


def user_names():
    """Every user's name, from the database."""
    return [row[0] for row in get_db().execute("SELECT name FROM users ORDER BY name")]


@app.cli.command("create-user")  # flask --app users create-user ada
@click.argument("name")
@click.password_option()  # asks twice, and shows nothing while you type
def create_user(name, password):
    """Add a user. Commands made with app.cli run inside an application context."""
    if len(password) < 8:
        raise click.BadParameter("use at least 8 characters", param_hint="password")
    try:
        get_db().execute("INSERT INTO users VALUES (?, ?)", (name, generate_password_hash(password)))
        get_db().commit()
    except sqlite3.IntegrityError:  # the name is the primary key: it exists already
        raise click.ClickException(f"There is already a user called {name}.") from None
    click.echo(f"Created the user {name}.")


@app.shell_context_processor
def shell_names():
    """What `flask --app users shell` has ready, with no import."""
    return {"get_db": get_db, "user_names": user_names}


@app.route("/")
def index():
    """The users that `flask --app users create-user` made."""
    return render_template("users.html", users=user_names())
