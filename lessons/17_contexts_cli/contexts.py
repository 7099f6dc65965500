"""Lesson 17, part 1: where `current_app`, `g`, `request` and `session` work.

While Flask handles a request, it opens an application context (`current_app` and `g`) and
a request context (`request` and `session`). Anywhere else, such as a script or the import
of this file, using them raises "Working outside of application context".
"""
import os

from flask import Flask, current_app, g, render_template, request, session

app = Flask(__name__)
# dev only: set a long random SECRET_KEY in production, anyone who knows it can forge a session
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "dev")


def app_name():
    """The running app's name. It reads current_app, so it needs an application context."""
    return current_app.name


# While Python imports this file, no request runs and no context is open: the call fails.
try:
    app_name()
except RuntimeError as error:
    OUTSIDE = str(error)
with app.app_context():  # the fix: open an application context around the call
    INSIDE = app_name()


@app.before_request
def count_visits():
    """Before every view: count this browser's visits in its session, and note it on `g`."""
    session["visits"] = session.get("visits", 0) + 1
    g.visits = session["visits"]


@app.route("/")
def index():
    """Inside a request, all four work: current_app, g, request and session."""
    return render_template("index.html", app_name=app_name(), g_names=sorted(g),
                           path=request.path, visits=session["visits"],
                           outside=OUTSIDE, inside=INSIDE)
