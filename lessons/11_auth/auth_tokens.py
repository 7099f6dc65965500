"""Lesson 11, part 2: a JSON API that trades a username and password for a short-lived token."""
import base64
import hashlib
import hmac
import json
import os
import time

from flask import Flask, request
from werkzeug.security import check_password_hash, generate_password_hash

TOKEN_SECONDS = 900  # a token works for 15 minutes, then the client logs in again

def b64url(data):
    """Bytes as base64url text without the '=' padding, the way JWTs write them."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

def b64url_decode(text):
    """The bytes of a base64url text (the '=' padding is put back first)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

def sign(key, text):
    """The HS256 signature of `text`: an HMAC made with SHA-256 and our secret key."""
    return hmac.new(key.encode(), text.encode("ascii"), hashlib.sha256).digest()

def make_token(username, key, seconds=TOKEN_SECONDS):
    """A JWT: a header, the claims (who: sub, until when: exp) and a signature, joined by dots."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"sub": username, "exp": int(time.time()) + seconds}).encode())
    signature = b64url(sign(key, header + "." + payload))
    return header + "." + payload + "." + signature

def read_token(token, key):
    """The token's claims if we signed it and it has not expired; None otherwise."""
    try:
        header, payload, signature = token.split(".")
        # compare_digest takes as long for a near miss as for a wild guess: timing tells nothing.
        if not hmac.compare_digest(b64url_decode(signature), sign(key, header + "." + payload)):
            return None  # changed by someone who does not know the key, or signed with another key
        header, claims = json.loads(b64url_decode(header)), json.loads(b64url_decode(payload))
    except ValueError:  # not three parts, not base64url, or not JSON
        return None
    # Never let a token choose how it is checked ("alg": "none" would mean "no signature").
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
        return None  # ours always say who (sub) and until when (exp)
    return claims if claims["exp"] > time.time() else None  # expired tokens are refused

def create_app(test_config=None):
    """Create and configure the app (flaskr's factory; `flask --app auth_tokens` finds it)."""
    app = Flask(__name__)
    # dev only: set a long random SECRET_KEY in production, anyone who knows it can make tokens
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "dev")
    # The users are a dict, not a table, so that this file is only about tokens (the table is
    # in auth_sessions.py). As in a table, only a hash of each password is kept.
    app.config["USERS"] = {"alice": generate_password_hash("wonderland")}  # demo account only
    app.config.update(test_config or {})  # the tests' settings win
    # No CSRF token here: the browser never sends the Authorization header by itself.

    @app.get("/")
    def index():
        """What this API offers, as JSON."""
        return {"endpoints": ["POST /api/token", "GET /api/me"],
                "try": 'POST /api/token with {"username": "alice", "password": "wonderland"}'}

    @app.post("/api/token")
    def get_token():
        """Trade a JSON username and password for a token."""
        try:
            data = request.get_json(silent=True)  # None when the body is not JSON
        except RecursionError:  # JSON nested thousands of levels deep is no login either
            data = None
        if not isinstance(data, dict):  # a list or a number is JSON too
            data = {}
        username, password = data.get("username"), data.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            return {"message": 'Send JSON like {"username": "...", "password": "..."}.'}, 400
        password_hash = app.config["USERS"].get(username)
        if password_hash is None or not check_password_hash(password_hash, password):
            return {"message": "Wrong username or password."}, 401
        token = make_token(username, app.config["SECRET_KEY"])
        return {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_SECONDS}

    @app.get("/api/me")
    def me():
        """Who the token belongs to; a 401 with a message without a valid token."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            message = "Send the header 'Authorization: Bearer <token>'."
        else:
            claims = read_token(token, app.config["SECRET_KEY"])
            if claims is not None and str(claims.get("sub")) in app.config["USERS"]:
                return {"username": claims["sub"]}
            message = "The token is invalid or has expired: get a new one from /api/token."
        return {"message": message}, 401, {"WWW-Authenticate": "Bearer"}

    return app
