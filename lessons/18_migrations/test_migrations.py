"""Tests for lesson 18's app: run them with `python -m pytest`."""
import sqlite3
from contextlib import closing

import pytest

import migrations
from migrations import MIGRATIONS


@pytest.fixture
def app(tmp_path):
    """The app, its database a new file in pytest's temporary folder.

    migrations.py makes one app, not a factory (lesson 15 has one), so each test
    gives that app a new database file instead of building a new app.
    """
    migrations.app.config.update(TESTING=True, DATABASE=str(tmp_path / "test.sqlite"))
    return migrations.app


@pytest.fixture
def client(app):
    return app.test_client()


def make_old_database(path):
    """A database as the code of version 2 left it, with a book in it."""
    with sqlite3.connect(path) as db:
        for sql in MIGRATIONS[:2]:
            db.execute(sql)
        db.execute("PRAGMA user_version = 2")
        db.execute("INSERT INTO authors (name) VALUES ('Ada')")
        db.execute("INSERT INTO books (title, author_id) VALUES ('Notes', 1)")
    db.close()  # `with` committed; it does not close


def test_a_new_database_gets_every_migration(client):
    page = client.get("/").json
    assert page["version"] == page["latest"] == len(MIGRATIONS)
    assert page["books"] == ["id", "title", "author_id", "year"]


def test_an_old_database_keeps_its_rows_and_gets_the_new_column(app, client):
    make_old_database(app.config["DATABASE"])
    assert client.get("/").json["version"] == len(MIGRATIONS)
    with sqlite3.connect(app.config["DATABASE"]) as db:
        assert db.execute("SELECT title, year FROM books").fetchall() == [("Notes", None)]
    db.close()


def test_an_up_to_date_database_is_read_without_waiting_for_the_write_lock(app, client):
    client.get("/")  # the database is at the latest version
    with closing(sqlite3.connect(app.config["DATABASE"])) as writer:
        writer.execute("BEGIN IMMEDIATE")  # someone else holds the write lock
        assert client.get("/").json["version"] == len(MIGRATIONS)  # served all the same


def test_a_failing_migration_changes_nothing(app, client, monkeypatch):
    client.get("/")  # the database is at the latest version
    # One more migration, a copy of migration 3: SQLite refuses to add a column twice.
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS + [MIGRATIONS[2]])
    with pytest.raises(sqlite3.OperationalError, match="duplicate column name: year"):
        client.get("/")
    with sqlite3.connect(app.config["DATABASE"]) as db:
        assert migrations.version(db) == len(MIGRATIONS)  # rolled back: no version bump
    db.close()
