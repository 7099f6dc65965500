"""Tests for lesson 17, part 1: run them with `python -m pytest`."""
import pytest

import contexts
from contexts import app as contexts_app


@pytest.fixture
def app():
    contexts_app.config.update(TESTING=True)
    yield contexts_app


@pytest.fixture
def client(app):
    return app.test_client()


def test_outside_a_context_the_helper_fails_and_inside_it_works(app):
    assert contexts.OUTSIDE.startswith("Working outside of application context.")
    with pytest.raises(RuntimeError, match="application context"):
        contexts.app_name()
    with app.app_context():
        assert contexts.app_name() == "contexts"


def test_the_page_shows_what_this_request_can_reach(client):
    page = client.get("/").get_data(as_text=True)
    assert "<code>contexts</code>" in page and "<code>visits</code>" in page
    assert "RuntimeError: Working outside of application context." in page


def test_g_is_new_for_each_request_but_the_session_remembers(client):
    client.get("/")
    assert "is 2:" in client.get("/").get_data(as_text=True)
