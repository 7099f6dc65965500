"""Tests for lesson 11, part 1: run them with `python -m pytest`."""
import pytest

from auth_sessions import create_app, get_db


@pytest.fixture
def app(tmp_path):
    """An app whose database is a fresh file in pytest's temporary folder."""
    return create_app({"TESTING": True, "SECRET_KEY": "test",
                       "DATABASE": str(tmp_path / "test.sqlite")})


@pytest.fixture
def client(app):
    return app.test_client()


def post(client, url, **fields):
    """Post a form as a browser would: with the token from the visitor's session."""
    client.get("/")
    with client.session_transaction() as session:
        fields["csrf_token"] = session["csrf_token"]
    return client.post(url, data=fields, follow_redirects=True)


def test_register_log_in_see_the_private_page_log_out(app, client):
    response = client.get("/private")
    assert response.status_code == 302  # not logged in: sent to the login page
    assert response.headers["Location"] == "/"
    post(client, "/register", username="ann", password="correct horse")
    with app.app_context():
        stored = get_db().execute("SELECT password_hash FROM users").fetchone()[0]
    assert "correct horse" not in stored  # only a hash is kept
    page = post(client, "/", username="ann", password="correct horse")
    assert b"Only for you, ann" in page.data
    post(client, "/logout")
    assert client.get("/private").status_code == 302


def test_wrong_password_taken_name_and_empty_fields(client):
    post(client, "/register", username="ann", password="correct horse")
    assert b"Wrong username or password." in post(client, "/", username="ann", password="x").data
    assert b"is taken" in post(client, "/register", username="ann", password="other").data
    assert b"Choose a username" in post(client, "/register", username=" ").data


def test_forms_without_the_token_are_refused(client):
    assert client.post("/register", data={"username": "x", "password": "y"}).status_code == 400
    assert client.post("/", data={"username": "x", "password": "y"}).status_code == 400
    assert client.post("/logout").status_code == 400
