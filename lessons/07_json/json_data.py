"""Lesson 7: JSON responses with jsonify, JSON request bodies, and errors in JSON too."""
import json

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

app = Flask(__name__)


@app.route("/")
def index():
    """A dict returned from a view becomes a JSON response by itself."""
    return {"message": "Try /data and /languages, or POST JSON to /greet.",
            "links": ["/data", "/languages"]}


@app.route("/data")
def data():
    """The cheat sheet's example: jsonify turns a dict into a JSON response."""
    return jsonify({"name": "Nutan", "role": "DevOps Engineer"})


@app.route("/languages")
def languages():
    """A returned list becomes JSON too (Flask 2.2 and later)."""
    return [{"name": "Python", "year": 1991}, {"name": "JavaScript", "year": 1995}]


@app.post("/greet")
def greet():
    """Read a JSON body safely and answer with a greeting."""
    try:
        # silent=True gives None for a body that is not JSON, instead of an HTML error page.
        body = request.get_json(silent=True)
    except RecursionError:  # JSON nested thousands of levels deep: refuse it as well
        body = None
    if not isinstance(body, dict):
        return {"error": 'Send a JSON object, like {"name": "Ada"}.'}, 400
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        return {"error": '"name" must be some text.'}, 422
    return {"message": f"Hello, {name.strip()}!"}


@app.errorhandler(HTTPException)
def json_error(error):
    """Every error (404, 405, ...) as JSON, so a client always gets JSON back."""
    response = error.get_response()  # keeps the status code and headers such as Allow
    response.data = json.dumps({"error": error.name, "message": error.description})
    response.content_type = "application/json"
    return response
