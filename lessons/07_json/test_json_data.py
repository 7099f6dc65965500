import pytest

import json_data


@pytest.fixture
def app():
    json_data.app.config.update(TESTING=True)
    return json_data.app


@pytest.fixture
def client(app):
    return app.test_client()


def test_data_is_the_cheat_sheets_json(client):
    response = client.get("/data")
    assert response.is_json
    assert response.json == {"name": "Nutan", "role": "DevOps Engineer"}


def test_greet_reads_a_json_body(client):
    response = client.post("/greet", json={"name": "Ada"})
    assert response.json == {"message": "Hello, Ada!"}


@pytest.mark.parametrize("body, status", [
    ("not json", 400),
    ("[" * 100_000, 400),  # nested far too deep for Python's JSON reader
    ({"name": 42}, 422),
])
def test_a_bad_body_gets_a_json_message(client, body, status):
    if isinstance(body, str):
        response = client.post("/greet", data=body, content_type="application/json")
    else:
        response = client.post("/greet", json=body)
    assert response.status_code == status
    assert "error" in response.json


def test_errors_are_json_too(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.json["error"] == "Not Found"
