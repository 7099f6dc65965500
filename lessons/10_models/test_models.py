"""Tests for lesson 10: run them with `python -m pytest`."""
import pytest

from models import Note, create_app


@pytest.fixture
def app(tmp_path):
    """An app whose database is a fresh file in pytest's temporary folder."""
    return create_app({"TESTING": True, "SECRET_KEY": "test",
                       "DATABASE": str(tmp_path / "test.sqlite")})


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_token(client):
    """The form token a browser would find in the page."""
    client.get("/")
    with client.session_transaction() as session:
        return session["csrf_token"]


def test_the_model_creates_gets_lists_and_deletes(app):
    with app.app_context():
        note = Note.create("Shopping", "milk")
        assert Note.get(note.id) == note
        assert Note.all() == [note]
        note.delete()
        assert Note.get(note.id) is None
        assert Note.get(2**70) is None  # too big for SQLite: simply not there


def test_add_and_delete_through_the_pages(client):
    token = csrf_token(client)
    page = client.post("/", data={"title": "x' OR '1'='1", "body": "b", "csrf_token": token},
                       follow_redirects=True)
    assert b"x&#39; OR &#39;1&#39;=&#39;1" in page.data  # stored as text, never run as SQL
    page = client.post("/notes/1/delete", data={"csrf_token": token}, follow_redirects=True)
    assert b"No notes yet." in page.data


def test_a_form_without_its_token_is_refused(client):
    assert client.post("/", data={"title": "Sneaky"}).status_code == 400
    assert client.post("/notes/1/delete").status_code == 400
    assert b"Sneaky" not in client.get("/").data
