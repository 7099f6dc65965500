"""Lesson 4: templates. render_template fills in an HTML file from templates/."""

from flask import Flask, render_template

app = Flask(__name__)

# The people the home page lists; the last one shows what autoescaping does.
TEAM = ["Ada", "Grace", "Linus", "Guido<br>van Rossum"]


@app.route("/")
def home():
    """List the team, each name a link to its welcome page."""
    return render_template("index.html", team=TEAM)


@app.route("/welcome/<user>")
def welcome(user):
    """Welcome one user by name."""
    return render_template("welcome.html", user=user, is_member=user in TEAM)


if __name__ == "__main__":
    app.run()
