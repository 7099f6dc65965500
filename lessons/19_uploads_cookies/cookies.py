"""Lesson 19: a cookie that remembers the visitor's text size."""
from flask import Flask, redirect, render_template, request, url_for

app = Flask(__name__)


@app.route("/")
def index():
    """Draw the page large or not, as the cookie the browser sent back says."""
    large = request.cookies.get("large_text") == "on"  # any other value: the normal size
    return render_template("cookies.html", large=large)


@app.post("/text-size")
def text_size():
    """Remember the choice in a cookie, then show the page again."""
    choice = "on" if request.form.get("large_text") == "on" else "off"
    response = redirect(url_for("index"))
    # The browser keeps the cookie and sends it back with every request to this site.
    response.set_cookie("large_text", choice,
                        max_age=365 * 24 * 3600,  # kept a year, not only until the browser closes
                        httponly=True,  # scripts on the page cannot read it
                        samesite="Lax")  # not sent along when another site posts a form here
    return response
