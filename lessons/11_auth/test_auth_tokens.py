"""Tests for lesson 11, part 2: run them with `python -m pytest`."""
import json

import pytest
from werkzeug.security import generate_password_hash

from auth_tokens import b64url, create_app, make_token, sign


@pytest.fixture
def app():
    return create_app({"TESTING": True, "SECRET_KEY": "test",
                       "USERS": {"bob": generate_password_hash("secret"),
                                 "eve": generate_password_hash("eve's password")}})


@pytest.fixture
def client(app):
    return app.test_client()


def me(client, token):
    """GET /api/me with the token in the Authorization header."""
    return client.get("/api/me", headers={"Authorization": f"Bearer {token}"})


def test_log_in_and_use_the_token(client):
    assert client.get("/").status_code == 200
    response = client.post("/api/token", json={"username": "bob", "password": "secret"})
    assert response.status_code == 200
    assert me(client, response.json["access_token"]).json == {"username": "bob"}


def test_wrong_password_and_bad_input_get_no_token(client):
    assert client.post("/api/token", json={"username": "bob", "password": "nope"}).status_code == 401
    assert client.post("/api/token", json={"username": "bob"}).status_code == 400
    assert client.post("/api/token", json=["bob", "secret"]).status_code == 400
    assert client.post("/api/token", data="not json").status_code == 400


def test_me_needs_a_token(client):
    response = client.get("/api/me")
    assert response.status_code == 401
    assert "Bearer" in response.json["message"]


def test_expired_and_tampered_tokens_are_refused(client):
    assert me(client, make_token("bob", "test", seconds=-60)).status_code == 401  # expired
    token = make_token("eve", "test")
    assert me(client, token).json == {"username": "eve"}
    header, claims, signature = token.split(".")
    bob = b64url(json.dumps({"sub": "bob", "exp": 9999999999}).encode())
    assert me(client, f"{header}.{bob}.{signature}").status_code == 401  # eve changed `sub`
    assert me(client, make_token("bob", "another key")).status_code == 401  # not our key
    assert me(client, "not.a-token").status_code == 401


def test_only_hs256_is_accepted(client):
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"sub": "bob", "exp": 9999999999}).encode())
    assert me(client, f"{header}.{claims}.").status_code == 401  # "none": no signature at all
    header = b64url(json.dumps({"alg": "HS512", "typ": "JWT"}).encode())
    signature = b64url(sign("test", f"{header}.{claims}"))
    assert me(client, f"{header}.{claims}.{signature}").status_code == 401


def test_a_signed_token_with_odd_claims_is_refused_not_a_crash(client):
    # Anyone who knows the key (the public "dev" one, say) can sign anything: still no 500.
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    for claims in ({"sub": "bob"}, {"sub": "bob", "exp": "soon"}, ["bob"], {"sub": ["bob"], "exp": 9999999999}):
        payload = b64url(json.dumps(claims).encode())
        signature = b64url(sign("test", f"{header}.{payload}"))
        assert me(client, f"{header}.{payload}.{signature}").status_code == 401, claims
