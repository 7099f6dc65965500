"""Tests for lesson 17, part 2: run them with `python -m pytest`."""
import sqlite3

import pytest
from flask.cli import routes_command

import users
from users import app as users_app


@pytest.fixture
def app(tmp_path):
    """The lesson's app, on a fresh database file in pytest's temporary folder."""
    users_app.config.update(TESTING=True, DATABASE=str(tmp_path / "test.sqlite"))
    yield users_app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def test_create_user_asks_for_the_password_twice(client, runner):
    # input= is what the user types: the password, then the same again to confirm it.
    result = runner.invoke(args=["create-user", "ada"], input="long enough\nlong enough\n")
    assert result.exit_code == 0 and "Created the user ada." in result.output
    assert "long enough" not in result.output  # hidden while typed
    assert "<li>ada</li>" in client.get("/").get_data(as_text=True)


def test_create_user_refuses_a_short_password_and_a_taken_name(runner):
    assert runner.invoke(args=["create-user", "ada"], input="short\nshort\n").exit_code == 2
    runner.invoke(args=["create-user", "ada"], input="long enough\nlong enough\n")
    result = runner.invoke(args=["create-user", "ada"], input="other one\nother one\n")
    assert result.exit_code == 1 and "already a user called ada" in result.output


def test_a_confirmation_that_differs_is_asked_again(runner):
    result = runner.invoke(args=["create-user", "ada"], input="long enough\nlong enuogh\n")
    assert "do not match" in result.output and result.exit_code == 1  # no more input: aborted


def test_flask_shell_has_get_db_and_flask_routes_lists_the_page(app, runner):
    assert app.make_shell_context()["get_db"] is users.get_db
    assert "index" in runner.invoke(routes_command).output  # flask's own command, by its function


def test_the_connection_is_closed_when_the_context_ends(app):
    with app.app_context():
        db = users.get_db()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        db.execute("SELECT 1")
