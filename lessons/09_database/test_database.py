"""Tests for lesson 9: run them with `python -m pytest`."""
import sqlite3

import pytest

from database import create_app, get_db


@pytest.fixture
def app(tmp_path):
    """An app whose database is a fresh file in pytest's temporary folder."""
    return create_app({"TESTING": True, "SECRET_KEY": "test",
                       "DATABASE": str(tmp_path / "test.sqlite")})


@pytest.fixture
def client(app):
    return app.test_client()


def post_message(client, text):
    """Post the form as a browser would: with the token from the page's session."""
    client.get("/")
    with client.session_transaction() as session:
        token = session["csrf_token"]
    return client.post("/", data={"text": text, "csrf_token": token}, follow_redirects=True)


def test_add_and_list(client):
    assert b"No messages yet." in client.get("/").data
    response = post_message(client, "It's -- ' OR 1=1; DROP TABLE messages")
    assert response.status_code == 200
    # The ? parameter stored the quotes as plain text: nothing was run, nothing dropped.
    assert b"It&#39;s -- &#39; OR 1=1; DROP TABLE messages" in response.data


def test_empty_message_is_refused(client):
    response = post_message(client, "   ")
    assert response.status_code == 400
    assert b"Write a message first." in response.data


def test_form_without_token_is_refused(client):
    response = client.post("/", data={"text": "hello"})
    assert response.status_code == 400
    assert b"hello" not in client.get("/").data


def test_connection_is_closed_at_teardown(app):
    with app.app_context():
        db = get_db()
        assert db is get_db()  # one connection for the whole request
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        db.execute("SELECT 1")


def test_init_db_command_empties_the_table(app, client):
    post_message(client, "soon gone")
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert "Initialized" in result.output
    assert b"soon gone" not in client.get("/").data
