import pytest

from errors import app as errors_app


@pytest.fixture
def app():
    errors_app.config.update(TESTING=True)
    yield errors_app


@pytest.fixture
def client(app):
    return app.test_client()


def test_a_book_that_exists(client):
    assert client.get("/").status_code == 200
    response = client.get("/books/1")
    assert response.status_code == 200
    assert b"Flask Web Development" in response.data


@pytest.mark.parametrize("path", ["/books/99", "/no-such-page"])
def test_404_page_has_status_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert b"Page not found" in response.data


def test_500_page_shows_no_traceback(app, client, monkeypatch):
    # In testing mode Flask hands the error to the test instead of the 500 handler;
    # switch that off for this test only, as it is in production.
    monkeypatch.setitem(app.config, "TESTING", False)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    response = client.get("/crash")
    assert response.status_code == 500
    assert b"Something went wrong" in response.data
    assert b"Traceback" not in response.data
    assert b"ZeroDivisionError" not in response.data
