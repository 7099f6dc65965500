"""Lesson 13: custom error pages for 404 and 500, with the right status codes."""
from flask import Flask, abort, render_template

app = Flask(__name__)

BOOKS = {1: "Flask Web Development", 2: "Fluent Python"}


@app.errorhandler(404)
def not_found(error):
    """Our own page for a missing page, still sent with status 404."""
    # Without ", 404" the page would go out as 200 OK, and search engines would keep it.
    return render_template("404.html"), 404


@app.errorhandler(500)
def server_error(error):
    """Our own page for a crash: an apology, never the traceback."""
    # Flask has already written the traceback to the log; the visitor sees only this page,
    # because a traceback shows strangers how the app works inside.
    return render_template("500.html"), 500


@app.route("/")
def index():
    """The list of books, and links that go wrong on purpose."""
    return render_template("index.html", books=BOOKS)


@app.route("/books/<int:book_id>")
def book(book_id):
    """One book, or the 404 page when there is no book with that id."""
    if book_id not in BOOKS:
        abort(404)  # stops the view here and lets the 404 handler answer
    return render_template("book.html", title=BOOKS[book_id])


@app.route("/crash")
def crash():
    """A view with a bug, to show the 500 page."""
    return 1 / 0
