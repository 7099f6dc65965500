import pytest

import rest_api


@pytest.fixture
def app():
    rest_api.app.config.update(TESTING=True)
    rest_api.books.clear()  # every test starts with no books
    yield rest_api.app
    rest_api.books.clear()


@pytest.fixture
def client(app):
    return app.test_client()


def test_create_read_replace_and_delete_a_book(client):
    created = client.post("/books", json={"title": "Dune", "author": "Frank Herbert"})
    assert created.status_code == 201
    location = created.headers["Location"]
    assert client.get(location).json["title"] == "Dune"
    replaced = client.put(location, json={"title": "Emma", "author": "Jane Austen"})
    assert replaced.json["author"] == "Jane Austen"
    assert client.get("/books").json == [replaced.json]
    assert client.delete(location).status_code == 204
    assert client.get(location).status_code == 404


def test_a_missing_book_is_a_json_404(client):
    response = client.get("/books/99")
    assert response.status_code == 404
    assert response.json == {"error": "There is no book 99."}


@pytest.mark.parametrize("body, status", [
    ("not json at all", 400),
    ("[" * 100_000, 400),  # nested far too deep for Python's JSON reader
    ([1, 2, 3], 400),
    ({"title": "Dune"}, 422),
    ({"title": 42, "author": ""}, 422),
])
def test_a_bad_body_gets_a_json_message_not_a_500(client, body, status):
    if isinstance(body, str):
        response = client.post("/books", data=body, content_type="application/json")
    else:
        response = client.post("/books", json=body)
    assert response.status_code == status
    assert response.is_json
    assert rest_api.books == {}
