"""Lesson 6: a REST API with Flask's own MethodView: one method per HTTP verb."""
import itertools
import json

from flask import Flask, abort, request, url_for
from flask.views import MethodView
from werkzeug.exceptions import HTTPException

app = Flask(__name__)

# No database in this lesson: books live in this dict (id -> book) until the server stops.
books = {}
new_ids = itertools.count(1)  # next(new_ids) gives 1, then 2, 3, ...


@app.errorhandler(HTTPException)
def json_error(error):
    """Answer every error (404, 405, 400, ...) in JSON, as the rest of the API does."""
    response = error.get_response()  # keeps the status code and headers such as Allow
    response.data = json.dumps({"error": error.description})
    response.content_type = "application/json"
    return response


@app.route("/")
def index():
    """Say where the API is."""
    return {"message": "A small books API.", "books": url_for("book_list")}


def read_book():
    """The book sent as JSON, and a message for each wrong field."""
    try:
        data = request.get_json(silent=True)  # silent=True: None when the body is not JSON
    except RecursionError:  # JSON nested thousands of levels deep is not a book either
        data = None
    if not isinstance(data, dict):
        abort(400, 'Send a JSON object, like {"title": "Dune", "author": "Frank Herbert"}.')
    book, errors = {}, {}
    for field in ("title", "author"):
        value = data.get(field)
        if not isinstance(value, str) or not value.strip():
            errors[field] = "Required: some text."
        elif len(value) > 200:
            errors[field] = "At most 200 characters."
        else:
            book[field] = value.strip()
    return book, errors


def find_book(book_id):
    """The book with this id, or a 404 error."""
    if book_id not in books:
        abort(404, f"There is no book {book_id}.")
    return books[book_id]


class BookList(MethodView):
    """The whole collection: GET lists it, POST adds a book."""

    def get(self):
        return list(books.values())

    def post(self):
        book, errors = read_book()
        if errors:
            return {"errors": errors}, 422  # 422: JSON we could read, but fields that are wrong
        book["id"] = next(new_ids)
        books[book["id"]] = book
        # 201 Created, and Location says where the new book lives.
        return book, 201, {"Location": url_for("book", book_id=book["id"])}


class Book(MethodView):
    """One book: GET reads it, PUT replaces it, DELETE removes it."""

    def get(self, book_id):
        return find_book(book_id)

    def put(self, book_id):
        find_book(book_id)
        book, errors = read_book()
        if errors:
            return {"errors": errors}, 422
        book["id"] = book_id
        books[book_id] = book
        return book

    def delete(self, book_id):
        find_book(book_id)
        del books[book_id]
        return "", 204  # 204 No Content: done, and nothing to send back


app.add_url_rule("/books", view_func=BookList.as_view("book_list"))
app.add_url_rule("/books/<int:book_id>", view_func=Book.as_view("book"))
