import pytest

from hooks import app as hooks_app


@pytest.fixture
def app():
    hooks_app.config.update(TESTING=True)
    yield hooks_app


@pytest.fixture
def client(app):
    return app.test_client()


def test_after_request_adds_headers(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Response-Time"].endswith("ms")


def test_page_shows_the_id_that_before_request_gave(client):
    response = client.get("/")
    request_id = response.headers["X-Request-ID"]
    assert request_id.encode() in response.data


def test_every_request_gets_a_new_id(client):
    first = client.get("/").headers["X-Request-ID"]
    second = client.get("/").headers["X-Request-ID"]
    assert first != second


def test_a_404_gets_the_headers_too(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_one_log_line_per_request(client, caplog):
    caplog.set_level("INFO", logger="hooks")
    client.get("/")
    assert any("GET '/' 200" in record.getMessage() for record in caplog.records)
    client.get("/x%0aINFO in hooks: forged")  # a line break in the URL stays on one line
    assert not any("\n" in record.getMessage() for record in caplog.records)
