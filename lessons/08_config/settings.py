"""Lesson 8: settings from defaults, a settings file, FLASK_* variables and a .env file."""
import os

from dotenv import load_dotenv
from flask import Flask, render_template

# A setting whose name holds one of these words is a secret: the page never shows it.
SECRET_WORDS = ("SECRET", "PASS", "PWD", "PIN", "TOKEN", "KEY", "AUTH", "CREDENTIAL")


def shown(name, value):
    """The value as the settings page shows it, secrets masked."""
    # Anyone who reads SECRET_KEY can forge this app's cookies, so it is never displayed.
    if any(word in name for word in SECRET_WORDS):
        return "****** (hidden)"
    return repr(value)


def create_app(test_config=None):
    """Create the app. Settings load in order, and a later source wins over an earlier one."""
    app = Flask(__name__)
    app.config.from_mapping(
        # dev only: set FLASK_SECRET_KEY to a long random value in production,
        # anyone who knows the key can forge a session cookie.
        SECRET_KEY="dev",
        GREETING="Hello from the defaults in settings.py",
        ITEMS_PER_PAGE=10,
    )  # no DEBUG here: debug mode is for your own machine, asked for with `flask run --debug`
    if test_config is None:
        # Copy the .env file beside this one into os.environ; a variable already set wins.
        # (`flask run` also loads .env by itself when python-dotenv is installed.)
        load_dotenv(os.path.join(app.root_path, ".env"))
        # A Python file named by APP_SETTINGS, e.g. APP_SETTINGS=example_settings.cfg
        app.config.from_envvar("APP_SETTINGS", silent=True)
        # Every FLASK_* variable: FLASK_GREETING=Hi sets GREETING; FLASK_ITEMS_PER_PAGE=5 a number.
        app.config.from_prefixed_env()
    else:
        app.config.from_mapping(test_config)  # tests choose their own settings

    @app.route("/")
    def show_settings():
        """A page with the effective settings, secrets masked."""
        settings = [(name, shown(name, value)) for name, value in sorted(app.config.items())]
        return render_template("settings.html", settings=settings, greeting=app.config["GREETING"])

    return app
