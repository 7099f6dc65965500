import pytest

from cookies import app as cookies_app


@pytest.fixture
def app():
    cookies_app.config.update(TESTING=True)
    yield cookies_app


@pytest.fixture
def client(app):
    return app.test_client()


def test_the_page_is_normal_without_the_cookie(client):
    assert b'class="large"' not in client.get("/").data


def test_the_cookie_is_set_with_its_flags(client):
    cookie = client.post("/text-size", data={"large_text": "on"}).headers["Set-Cookie"]
    assert cookie.startswith("large_text=on;")
    assert "Max-Age=31536000" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_the_cookie_makes_the_page_large(client):
    client.post("/text-size", data={"large_text": "on"})
    assert b'class="large"' in client.get("/").data  # the test client sends the cookie back
    client.set_cookie("large_text", "huge")  # a value we never set: the normal size
    assert b'class="large"' not in client.get("/").data
