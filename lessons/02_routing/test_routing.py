"""Tests for lesson 2: routes, converters, url_for and methods."""

import pytest
from flask import url_for

from routing import app as routing_app


@pytest.fixture
def app():
    """The lesson's app, in testing mode."""
    routing_app.config.update(TESTING=True)
    return routing_app


@pytest.fixture
def client(app):
    """A test client: it sends requests without starting a server."""
    return app.test_client()


def test_home_links_are_built_with_url_for(client):
    response = client.get("/")
    assert response.status_code == 200
    assert b'href="/square/7"' in response.data


def test_int_converter(client):
    assert client.get("/square/12").data == b"12 squared is 144"
    assert client.get("/square/abc").status_code == 404
    assert client.get("/square/" + "9" * 3000).status_code == 404  # over max: not a crash


def test_methods(client):
    assert client.get("/ping").data == b"You sent a GET request."
    assert client.post("/ping").data == b"You sent a POST request."
    assert client.delete("/ping").status_code == 405


def test_url_for(app):
    with app.test_request_context():
        assert url_for("square", n=3) == "/square/3"
        assert url_for("about") == "/about"
