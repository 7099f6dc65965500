"""Lesson 15: a small notes app, built to be tested: test_notes_app.py is the real lesson."""
import os
import secrets
import sqlite3

from flask import Flask, abort, g, jsonify, redirect, render_template, request, session, url_for


def create_app(test_config=None):  # flaskr's factory: each test calls it for an app of its own
    app = Flask(__name__)
    # dev only: set a long random SECRET_KEY in production, anyone who knows it can forge a session
    app.config.from_mapping(SECRET_KEY=os.environ.get("SECRET_KEY", "dev"),
                            DATABASE=os.path.join(app.instance_path, "notes.sqlite"))
    app.config.update(test_config or {})  # the tests' settings win: TESTING, their own DATABASE

    def get_db():
        """The request's database connection; the file and its table are made on first use."""
        if "db" not in g:
            os.makedirs(os.path.dirname(app.config["DATABASE"]), exist_ok=True)
            g.db = sqlite3.connect(app.config["DATABASE"])
            g.db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT)")
        return g.db

    @app.teardown_appcontext
    def close_db(exception=None):
        if "db" in g:
            g.pop("db").close()

    @app.cli.command("count-notes")  # flask --app notes_app count-notes
    def count_notes():
        print("Notes:", get_db().execute("SELECT count(*) FROM notes").fetchone()[0])

    @app.route("/", methods=["GET", "POST"])
    def index():
        token = session.setdefault("csrf_token", secrets.token_urlsafe(32))  # the form's secret
        if request.method == "POST" and request.form.get("csrf_token") != token:
            abort(400, "The form is out of date. Reload the page and try again.")  # not our form
        if request.method == "POST":  # a missing "text" field is a 400 Bad Request
            get_db().execute("INSERT INTO notes (text) VALUES (?)", (request.form["text"][:200],))
            get_db().commit()
            return redirect(url_for("index"))  # so that reloading the page does not post twice
        return render_template("index.html", notes=get_db().execute("SELECT text FROM notes"))

    @app.get("/api/notes")
    def list_notes():
        rows = get_db().execute("SELECT id, text FROM notes ORDER BY id").fetchall()
        return jsonify([{"id": id, "text": text} for id, text in rows])  # for programs, not people

    return app
