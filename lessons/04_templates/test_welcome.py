"""Tests for lesson 4: templates, extends, a loop, a condition and autoescaping."""

import pytest

from welcome import app as welcome_app


@pytest.fixture
def app():
    """The lesson's app, in testing mode."""
    welcome_app.config.update(TESTING=True)
    return welcome_app


@pytest.fixture
def client(app):
    """A test client: it sends requests without starting a server."""
    return app.test_client()


def test_home_lists_the_team(client):
    response = client.get("/")
    assert response.status_code == 200
    assert b"Grace</a>" in response.data
    assert b"- Lesson 4</title>" in response.data  # the title from base.html


def test_welcome_member_and_stranger(client):
    assert b"Welcome back to the team." in client.get("/welcome/Ada").data
    assert b"Welcome back" in client.get("/welcome/Guido<br>van Rossum").data
    assert b"Nice to meet you." in client.get("/welcome/Stranger").data


def test_autoescaping(client):
    response = client.get("/welcome/<b>Bob")
    assert b"<b>Bob" not in response.data
    assert b"Hello &lt;b&gt;Bob" in response.data
    assert b"Guido&lt;br&gt;van Rossum</a>" in client.get("/").data
