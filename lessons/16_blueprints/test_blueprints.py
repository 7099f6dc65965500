import pytest
from flask import url_for
from flask.cli import routes_command

from blueprints import create_app


@pytest.fixture
def app():
    app = create_app()
    app.config.update(TESTING=True)
    yield app


@pytest.fixture
def client(app):
    return app.test_client()


def test_both_blueprints_serve_their_pages(client):
    assert b"Bookshop" in client.get("/").data
    assert client.get("/api/books").json[0] == {"id": 1, "title": "Flask Web Development"}


def test_endpoints_are_named_after_their_blueprint(app):
    with app.test_request_context():
        assert url_for("pages.about") == "/about"
        assert url_for("api.book", number=2) == "/api/books/2"  # url_prefix added


def test_an_unknown_book_is_a_json_404(client):
    response = client.get("/api/books/99")
    assert response.status_code == 404
    assert response.json == {"error": "no such book"}


def test_flask_routes_lists_every_endpoint(app):
    output = app.test_cli_runner().invoke(routes_command).output  # what `flask routes` prints
    assert "pages.index" in output and "api.books" in output and "/api/books/<int:number>" in output
