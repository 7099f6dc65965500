"""Lesson 11, part 1: register, log in and log out with the session; one page needs a login."""
import functools
import os
import secrets
import sqlite3

from flask import Flask, current_app, flash, g, redirect, render_template, request, session, url_for
from werkzeug.security import check_password_hash, generate_password_hash

SCHEMA = """CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY, username TEXT UNIQUE NOT NULL, password_hash TEXT NOT NULL);"""

def get_db():
    """The request's database connection, opened on first use and kept on `g`."""
    if "db" not in g:
        path = current_app.config["DATABASE"]
        os.makedirs(os.path.dirname(path), exist_ok=True)  # the instance folder, made when needed
        g.db = sqlite3.connect(path)
        g.db.row_factory = sqlite3.Row  # rows behave like dicts: user["password_hash"]
        g.db.executescript(SCHEMA)  # creates the table the first time, does nothing after
    return g.db

def close_db(exception=None):
    """Close the request's connection, if it opened one."""
    db = g.pop("db", None)
    if db is not None:
        db.close()

def login_required(view):
    """Send visitors who have not logged in to the login page instead of `view`."""
    @functools.wraps(view)  # keeps the view's name, which Flask uses for url_for
    def wrapped(*args, **kwargs):
        if "user_id" not in session:
            return redirect(url_for("login"))
        return view(*args, **kwargs)
    return wrapped

def create_app(test_config=None):
    """Create and configure the app (flaskr's factory; `flask --app auth_sessions` finds it)."""
    app = Flask(__name__)
    # dev only: set a long random SECRET_KEY in production, anyone who knows it can forge a login
    app.config.from_mapping(SECRET_KEY=os.environ.get("SECRET_KEY", "dev"),
                            DATABASE=os.path.join(app.instance_path, "auth_sessions.sqlite"))
    app.config.update(test_config or {})  # the tests' settings win
    app.teardown_appcontext(close_db)  # after every request, even one that failed

    @app.before_request
    def check_csrf():
        """Give each visitor a secret form token; refuse a POST that does not send it back."""
        token = session.setdefault("csrf_token", secrets.token_urlsafe(32))
        sent = request.form.get("csrf_token", "")  # another site can't read it: only we have it
        if request.method == "POST" and not secrets.compare_digest(sent.encode(), token.encode()):
            return "The form is out of date. Go back, reload the page and try again.", 400

    @app.route("/", methods=["GET", "POST"])
    def login():
        """The home page: log in, checking the password against the stored hash."""
        if request.method == "POST":
            username = request.form.get("username", "").strip()  # "ann " is "ann"
            password = request.form.get("password", "")
            user = get_db().execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
            if user and check_password_hash(user["password_hash"], password):
                session.clear()  # a fresh session: nothing planted in it before login survives
                session["user_id"], session["username"] = user["id"], user["username"]
                return redirect(url_for("private"))
            flash("Wrong username or password.")
        return render_template("login.html")

    @app.route("/register", methods=["GET", "POST"])
    def register():
        """Create an account; only a hash of the password is stored, never the password."""
        if request.method == "POST":
            username = request.form.get("username", "").strip()
            password = request.form.get("password", "")
            if not username or not password:
                flash("Choose a username and a password.")
            else:
                try:
                    get_db().execute("INSERT INTO users (username, password_hash) VALUES (?, ?)",
                                     (username, generate_password_hash(password)))
                    get_db().commit()  # the same connection: get_db keeps it on g
                    flash("You are registered: now log in.")
                    return redirect(url_for("login"))
                except sqlite3.IntegrityError:  # the table's UNIQUE rule refused a second one
                    flash(f"The name {username} is taken, choose another.")
        return render_template("register.html")

    @app.post("/logout")
    def logout():
        """Forget the user by emptying the session."""
        session.clear()
        return redirect(url_for("login"))

    @app.route("/private")
    @login_required
    def private():
        """A page only for users who have logged in."""
        return render_template("private.html")

    return app
