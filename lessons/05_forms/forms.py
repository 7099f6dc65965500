"""Lesson 5: a form that checks its input, keeps it when it is wrong, and redirects after success."""
import os
import secrets

from flask import Flask, abort, flash, redirect, render_template, request, session, url_for

app = Flask(__name__)
# dev only: set a long random SECRET_KEY in production, anyone who knows it can forge a session.
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "dev")

# No database in this lesson: messages live in this list and are gone when the server stops.
messages = []


@app.template_global()
def csrf_token():
    """This visitor's CSRF token: made once, kept in the session, written into every form."""
    if "csrf_token" not in session:
        session["csrf_token"] = secrets.token_urlsafe(32)
    return session["csrf_token"]


def check_csrf():
    """Stop a POST whose hidden token is not the one in this visitor's session."""
    # Without it, a page on another site could make your browser post this form as you.
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf_token", "")
    if not expected or not secrets.compare_digest(sent.encode(), expected.encode()):
        abort(400, "The form was out of date. Go back, reload the page and try again.")


def validate(values):
    """One message per wrong field; an empty dict when everything is fine."""
    errors = {}
    if not values["name"]:
        errors["name"] = "Please enter your name."
    elif len(values["name"]) > 50:
        errors["name"] = "Please keep your name to 50 characters or fewer."
    if not values["message"]:
        errors["message"] = "Please write a message."
    elif len(values["message"]) > 500:
        errors["message"] = "Please keep your message to 500 characters or fewer."
    return errors


@app.route("/", methods=["GET", "POST"])
def guestbook():
    """Show the form and the messages (GET); check and save a new message (POST)."""
    values, errors = {}, {}
    if request.method == "POST":
        check_csrf()
        # .get gives "" for a missing field; request.form["name"] would be a bare 400 page.
        values = {"name": request.form.get("name", "").strip(),
                  "message": request.form.get("message", "").strip()}
        errors = validate(values)
        if not errors:
            messages.append(values)
            flash(f"Thank you, {values['name']}: your message is saved.")
            # Redirect after a successful POST, so reloading the page cannot post it twice.
            return redirect(url_for("guestbook"))
    return render_template("guestbook.html", messages=messages, values=values, errors=errors)
