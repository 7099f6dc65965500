"""Tests for lesson 1: the page and its stylesheet are served."""

import pytest

from hello import app as hello_app


@pytest.fixture
def app():
    """The lesson's app, in testing mode."""
    hello_app.config.update(TESTING=True)
    return hello_app


@pytest.fixture
def client(app):
    """A test client: it sends requests without starting a server."""
    return app.test_client()


def test_home_page(client):
    response = client.get("/")
    assert response.status_code == 200
    assert b"Hello, Flask!" in response.data
    assert b'href="/static/style.css"' in response.data


def test_stylesheet_is_served(client):
    response = client.get("/static/style.css")
    assert response.status_code == 200
    assert b"h1" in response.data
    response.close()


def test_debug_is_off(app):
    assert app.debug is False
