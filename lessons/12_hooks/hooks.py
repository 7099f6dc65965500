"""Lesson 12: request hooks, code that runs before and after every view."""
import logging
import time
import uuid

from flask import Flask, g, render_template, request

app = Flask(__name__)
app.logger.setLevel(logging.INFO)  # show info lines, not only warnings


@app.before_request
def start_request():
    """Give the request an id and note when it started."""
    g.request_id = uuid.uuid4().hex
    g.started = time.perf_counter()


@app.after_request
def finish_request(response):
    """Add headers to the response and log one line about the request."""
    elapsed_ms = (time.perf_counter() - g.started) * 1000
    response.headers["X-Request-ID"] = g.request_id
    response.headers["X-Response-Time"] = f"{elapsed_ms:.1f}ms"
    # Stops a browser from guessing that a text file is a script and running it.
    response.headers["X-Content-Type-Options"] = "nosniff"
    # The logger, not print(): each line gets a level and can be filtered or sent to a file.
    # %r writes a line break sent in the URL as \n: a visitor cannot add a fake line to the log.
    app.logger.info("%s %r %s %.1fms id=%s", request.method, request.path,
                    response.status_code, elapsed_ms, g.request_id)
    # Flask sends what this function returns: forget the return and the visitor gets an error.
    return response


@app.teardown_request
def end_request(error=None):
    """Runs last, even when the view raised an error: the place to close things."""
    if error is not None:
        app.logger.error("request %s failed: %s", g.get("request_id"), error)


@app.route("/")
def index():
    """A page that shows what the before_request hook put on g."""
    return render_template("index.html", request_id=g.request_id)
