"""Tests for lesson 3: path values and query strings, escaped."""

import pytest

from params import app as params_app


@pytest.fixture
def app():
    """The lesson's app, in testing mode."""
    params_app.config.update(TESTING=True)
    return params_app


@pytest.fixture
def client(app):
    """A test client: it sends requests without starting a server."""
    return app.test_client()


def test_greeting_is_escaped(client):
    assert client.get("/user/Ada").data == b"Hello, Ada!"
    response = client.get("/user/<img src=x onerror=alert(1)>")
    assert b"<img" not in response.data
    assert b"&lt;img src=x onerror=alert(1)&gt;" in response.data


def test_search(client):
    response = client.get("/search?q=data")
    assert b"Database" in response.data
    assert b"1 found" in response.data


def test_search_escapes_the_query(client):
    response = client.get("/search?q=<b>x</b>")
    assert b"<b>x</b>" not in response.data
    assert b"&lt;b&gt;x&lt;/b&gt;" in response.data


def test_bad_page_number_is_page_one(client):
    for url in ["/search?page=abc", "/search?page=-3", "/search"]:
        response = client.get(url)
        assert response.status_code == 200
        assert b"page 1<" in response.data
    assert b"Error handling" in client.get("/search?page=3").data
