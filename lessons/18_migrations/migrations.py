"""Lesson 18: numbered migrations, counted in SQLite's `PRAGMA user_version`."""
import os
import sqlite3
from contextlib import closing

from flask import Flask

app = Flask(__name__)
app.config["DATABASE"] = os.path.join(app.instance_path, "library.sqlite")

# Migration 1 is MIGRATIONS[0], and so on. Only add at the end: never edit one that has run.
MIGRATIONS = [
    "CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL,"
    " author_id INTEGER REFERENCES authors (id))",
    "ALTER TABLE books ADD COLUMN year INTEGER",  # books already there get an empty year
]


def version(db):
    """The number of the last migration this database has had (0 for a new file)."""
    return db.execute("PRAGMA user_version").fetchone()[0]


def upgrade(db):
    """Run the migrations the database has not had yet, each in one transaction."""
    for number, sql in enumerate(MIGRATIONS, start=1):
        with db:  # COMMIT at the end of the block, ROLLBACK if it fails: all or nothing
            db.execute("BEGIN IMMEDIATE")  # the write lock: one writer at a time, others wait
            if version(db) < number:  # read again under the lock: another may have run it
                db.execute(sql)
                db.execute(f"PRAGMA user_version = {number}")  # in the same transaction


def connect():
    """A new connection to the database, brought up to date first if it is behind."""
    os.makedirs(os.path.dirname(app.config["DATABASE"]), exist_ok=True)
    db = sqlite3.connect(app.config["DATABASE"])
    if version(db) < len(MIGRATIONS):  # a read, no lock: only a database behind waits to write
        upgrade(db)
    return db


@app.route("/")
def index():
    """The database's version, and the columns the books table has now."""
    with closing(connect()) as db:  # closed at the end of the block
        columns = [row[1] for row in db.execute("PRAGMA table_info(books)")]
        return {"version": version(db), "latest": len(MIGRATIONS), "books": columns}
