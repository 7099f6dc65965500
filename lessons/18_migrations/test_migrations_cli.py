"""Tests for lesson 18's commands: run them with `python -m pytest`."""
import sqlite3

import pytest

import migrations_cli
from migrations import MIGRATIONS
from test_migrations import make_old_database


@pytest.fixture
def app(tmp_path):
    """The app with its commands, its database a new file in pytest's temporary folder."""
    migrations_cli.app.config.update(TESTING=True, DATABASE=str(tmp_path / "test.sqlite"))
    return migrations_cli.app


@pytest.fixture
def client(app):
    return app.test_client()


def test_status_then_upgrade_of_an_old_database(app):
    make_old_database(app.config["DATABASE"])
    runner = app.test_cli_runner()
    status = runner.invoke(args=["db-status"]).output
    assert f"Current version: 2, latest: {len(MIGRATIONS)}" in status
    assert "Pending 3: ALTER TABLE books ADD COLUMN year INTEGER" in status
    upgrade = runner.invoke(args=["db-upgrade"]).output
    assert "Applied 3: ALTER TABLE books ADD COLUMN year INTEGER" in upgrade
    assert "Pending" not in runner.invoke(args=["db-status"]).output


def test_a_database_newer_than_the_code_is_refused(app):
    with sqlite3.connect(app.config["DATABASE"]) as db:
        db.execute("PRAGMA user_version = 9")  # as newer code would leave it
    db.close()
    for command in ("db-status", "db-upgrade"):
        result = app.test_cli_runner().invoke(args=[command])
        assert result.exit_code == 1 and "version 9, newer than this code" in result.output
