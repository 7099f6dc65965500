"""Lesson 1: the smallest Flask project, with a template and a stylesheet."""

from flask import Flask, render_template

# __name__ tells Flask where this file is, so it finds templates/ and static/ beside it.
app = Flask(__name__)


@app.route("/")
def home():
    """The home page, filled in from templates/index.html."""
    return render_template("index.html")


if __name__ == "__main__":
    # No debug=True here: the debugger's error pages can run Python on this computer.
    # For the reloader and debugger while you work, run `flask --app hello run --debug`.
    app.run()
