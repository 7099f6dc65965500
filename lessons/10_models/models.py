"""Lesson 10: a small model class over sqlite3, the only code that writes SQL."""
import os
import secrets
import sqlite3
from dataclasses import dataclass

from flask import Flask, abort, current_app, g, redirect, render_template, request, session, url_for

SCHEMA = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, title TEXT, body TEXT);"


def get_db():
    """The request's database connection, opened on first use and kept on `g`."""
    if "db" not in g:
        path = current_app.config["DATABASE"]
        os.makedirs(os.path.dirname(path), exist_ok=True)  # the instance folder, made when needed
        g.db = sqlite3.connect(path)
        g.db.row_factory = sqlite3.Row  # rows behave like dicts, so Note(**row) works
        g.db.executescript(SCHEMA)  # creates the table the first time, does nothing after
    return g.db


def close_db(exception=None):
    """Close the request's connection, if it opened one."""
    db = g.pop("db", None)
    if db is not None:
        db.close()


@dataclass
class Note:
    """One row of the notes table. Only these methods write SQL, always with ? parameters."""
    id: int
    title: str
    body: str

    @classmethod
    def create(cls, title, body):
        """Store a new note and return it."""
        db = get_db()
        cursor = db.execute("INSERT INTO notes (title, body) VALUES (?, ?)", (title, body))
        db.commit()
        return cls(cursor.lastrowid, title, body)

    @classmethod
    def get(cls, note_id):
        """The note with this id, or None."""
        if note_id >= 2**63:  # bigger than any SQLite number: no such note (not a crash)
            return None
        row = get_db().execute("SELECT * FROM notes WHERE id = ?", (note_id,)).fetchone()
        return cls(**row) if row else None

    @classmethod
    def all(cls):
        """Every note, newest first."""
        return [cls(**row) for row in get_db().execute("SELECT * FROM notes ORDER BY id DESC")]

    def delete(self):
        """Remove this note from the table."""
        db = get_db()
        db.execute("DELETE FROM notes WHERE id = ?", (self.id,))
        db.commit()


def create_app(test_config=None):
    """Create and configure the app (flaskr's factory; `flask --app models` finds it)."""
    app = Flask(__name__)
    # dev only: set a long random SECRET_KEY in production, anyone who knows it can forge a session
    app.config.from_mapping(SECRET_KEY=os.environ.get("SECRET_KEY", "dev"),
                            DATABASE=os.path.join(app.instance_path, "models.sqlite"))
    app.config.update(test_config or {})  # the tests' settings win
    app.teardown_appcontext(close_db)  # after every request, even one that failed

    @app.before_request
    def check_csrf():
        """Give each visitor a secret form token; refuse a POST that does not send it back."""
        token = session.setdefault("csrf_token", secrets.token_urlsafe(32))
        sent = request.form.get("csrf_token", "")  # another site can post here, not read this
        if request.method == "POST" and not secrets.compare_digest(sent.encode(), token.encode()):
            abort(400, "The form is out of date. Go back, reload the page and try again.")

    @app.route("/", methods=["GET", "POST"])
    def index():
        """List the notes; a POST adds one."""
        if request.method == "POST":
            title = request.form.get("title", "").strip() or "Untitled"
            Note.create(title, request.form.get("body", ""))
            return redirect(url_for("index"))
        return render_template("index.html", notes=Note.all())

    @app.post("/notes/<int:note_id>/delete")
    def delete(note_id):
        """Delete one note, then go back to the list."""
        note = Note.get(note_id)
        if note is not None:
            note.delete()
        return redirect(url_for("index"))

    return app
