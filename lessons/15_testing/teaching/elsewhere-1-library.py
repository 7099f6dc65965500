# conftest.py: pytest-flask asks for one fixture, `app`, and makes `client` from it.
import pytest
from flask import url_for

from notes_app import create_app


@pytest.fixture
def app(tmp_path):
    return create_app({"TESTING": True, "DATABASE": str(tmp_path / "test.sqlite")})


# test_notes_app.py: `client` comes from the plugin, and while a test runs the plugin has
# a request context pushed, so `url_for` works without a `with` block.
def test_the_api_answers_json(client):
    response = client.get(url_for("list_notes"))
    assert response.json == []
