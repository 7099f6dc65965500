"""Tests for lesson 15, and the lesson itself: run them with `python -m pytest`.

pytest finds files named test_*.py and runs each function named test_*. A function marked
@pytest.fixture makes something a test asks for by naming it as a parameter.
"""
import re

import pytest

from notes_app import create_app


@pytest.fixture
def app(tmp_path):
    """A fresh app for each test, on its own database in pytest's temporary folder."""
    # TESTING: errors reach the test instead of becoming a 500 page.
    return create_app({"TESTING": True, "SECRET_KEY": "test",
                       "DATABASE": str(tmp_path / "test.sqlite")})


@pytest.fixture
def client(app):
    """A pretend browser: it sends requests to the app without a server, and keeps cookies."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """Runs the app's `flask` commands, as the terminal would, and keeps what they print."""
    return app.test_cli_runner()


def csrf_token(client):
    """Open the page, as a person would, and read the token from its form."""
    page = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_the_page_says_there_are_no_notes_yet(client):
    response = client.get("/")
    assert response.status_code == 200
    assert b"No notes yet." in response.data


def test_the_form_adds_a_note_when_it_sends_its_token(client):
    data = {"text": "Buy milk", "csrf_token": csrf_token(client)}
    response = client.post("/", data=data)
    assert response.status_code == 302  # redirected back to the list
    assert b"Buy milk" in client.get("/").data


def test_a_form_without_the_token_is_refused(client):
    response = client.post("/", data={"text": "Buy milk"})
    assert response.status_code == 400
    assert b"Buy milk" not in client.get("/").data  # nothing was saved


def test_the_api_answers_json(client):
    client.post("/", data={"text": "first", "csrf_token": csrf_token(client)})
    response = client.get("/api/notes")
    assert response.status_code == 200
    assert response.get_json() == [{"id": 1, "text": "first"}]


def test_the_count_notes_command(client, runner):
    client.post("/", data={"text": "one", "csrf_token": csrf_token(client)})
    result = runner.invoke(args=["count-notes"])
    assert result.exit_code == 0
    assert result.output == "Notes: 1\n"
