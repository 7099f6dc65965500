"""Lesson 3: values from the URL path (/user/<name>) and the query string (?q=)."""

from flask import Flask, render_template, request
from markupsafe import escape

app = Flask(__name__)

# What /search looks through: the topics of the Flask cheat sheet.
TOPICS = [
    "Flask setup", "Routing", "URL parameters", "Templates", "Forms", "REST APIs",
    "JSON responses", "Configuration", "Database", "Models", "Authentication",
    "Request hooks", "Error handling", "Deployment",
]
PAGE_SIZE = 5


@app.route("/")
def home():
    """Links to try, and a search form."""
    return render_template("home.html")


@app.route("/user/<name>")
def user(name):
    """Greet the name from the URL path."""
    # escape() turns <script> into harmless text; without it the browser would run it.
    return f"Hello, {escape(name)}!"


@app.route("/search")
def search():
    """Search the topics for ?q=, PAGE_SIZE results a page (?page=2 for the next ones)."""
    q = request.args.get("q", "")
    # type=int: ?page=abc gives the default 1 instead of an error; max() makes -5 a 1.
    page = max(1, request.args.get("page", 1, type=int))
    found = [topic for topic in TOPICS if q.lower() in topic.lower()]
    start = (page - 1) * PAGE_SIZE
    return render_template("search.html", q=q, page=page, total=len(found),
                           results=found[start:start + PAGE_SIZE],
                           has_next=start + PAGE_SIZE < len(found))


if __name__ == "__main__":
    app.run()
