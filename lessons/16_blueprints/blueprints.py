"""Lesson 16: Blueprints, groups of views that an app registers."""
from flask import Blueprint, Flask, render_template

# A Blueprint collects views as an app does, but serves nothing on its own:
# its views start working when create_app registers it on an app.
pages = Blueprint("pages", __name__)
api = Blueprint("api", __name__, url_prefix="/api")  # every URL of `api` starts with /api

BOOKS = {1: "Flask Web Development", 2: "Fluent Python"}


@pages.route("/")
def index():
    """The home page; its links come from url_for("pages.about") and friends."""
    return render_template("index.html", books=BOOKS)


@pages.route("/about")
def about():
    """A second page of the same Blueprint."""
    return render_template("about.html")


@api.route("/books")
def books():
    """Every book as JSON, at /api/books."""
    return [{"id": number, "title": title} for number, title in BOOKS.items()]


@api.route("/books/<int:number>")
def book(number):
    """One book as JSON, or a 404 with a JSON error."""
    if number not in BOOKS:
        return {"error": "no such book"}, 404
    return {"id": number, "title": BOOKS[number]}


def create_app():
    """The application factory: make the app, register each Blueprint, return it."""
    app = Flask(__name__)
    app.register_blueprint(pages)
    app.register_blueprint(api)
    return app
