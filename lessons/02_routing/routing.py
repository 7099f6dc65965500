"""Lesson 2: routing. @app.route maps a URL to the function that answers it."""

from flask import Flask, render_template, request

app = Flask(__name__)


@app.route("/")
def home():
    """The home page: its links are built with url_for in the template."""
    return render_template("home.html")


@app.route("/about")
def about():
    """A plain page: the function's name, "about", is the endpoint url_for uses."""
    return "Lesson 2 shows routes, converters, url_for and methods."


@app.route("/square/<int(max=9999):n>")
def square(n):
    """Square a whole number taken from the URL."""
    # <int:n> hands the view an int, and /square/abc is a 404 before this code runs;
    # max=9999 makes a number too big to print a 404 as well, not a crash.
    return f"{n} squared is {n * n}"


@app.route("/ping", methods=["GET", "POST"])
def ping():
    """Answer GET and POST; any other method gets 405 Method Not Allowed."""
    return f"You sent a {request.method} request."


if __name__ == "__main__":
    app.run()
