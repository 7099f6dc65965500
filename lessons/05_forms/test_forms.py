import pytest

import forms


@pytest.fixture
def app():
    forms.app.config.update(TESTING=True)
    forms.messages.clear()  # every test starts with an empty guestbook
    yield forms.app
    forms.messages.clear()


@pytest.fixture
def client(app):
    return app.test_client()


def get_token(client):
    """Open the page as a visitor would, and read the CSRF token it put in the session."""
    client.get("/")
    with client.session_transaction() as session:
        return session["csrf_token"]


def test_a_good_message_is_saved_and_redirects(client):
    token = get_token(client)
    response = client.post("/", data={"csrf_token": token, "name": "Ada", "message": "Hi!"})
    assert response.status_code == 302  # post/redirect/get
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Thank you, Ada" in page and "Hi!" in page


def test_missing_fields_get_a_message_each_and_the_input_is_kept(client):
    token = get_token(client)
    response = client.post("/", data={"csrf_token": token, "name": "Ada"})  # no message
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Please write a message." in page
    assert 'value="Ada"' in page
    assert forms.messages == []


def test_a_post_without_the_token_is_refused(client):
    response = client.post("/", data={"name": "Mallory", "message": "From another site"})
    assert response.status_code == 400
    assert forms.messages == []
