"""Lesson 18, part 2: `flask db-status` and `flask db-upgrade` for the app of migrations.py.

This module adds the two commands to that same app: run them with
`flask --app migrations_cli db-status`, and `flask --app migrations_cli run` serves it too.
"""
import os
import sqlite3
from contextlib import closing

import click

from migrations import MIGRATIONS, app, upgrade, version


def open_db():
    """A connection to the database that upgrades nothing by itself, closed after `with`."""
    os.makedirs(os.path.dirname(app.config["DATABASE"]), exist_ok=True)
    return closing(sqlite3.connect(app.config["DATABASE"]))


def refuse_a_newer(db):
    """Stop if newer code has migrated this database: this code must not use it."""
    if version(db) > len(MIGRATIONS):
        raise click.ClickException(f"The database is at version {version(db)}, newer than "
                                   f"this code's {len(MIGRATIONS)}. Run the newer code.")


@app.cli.command("db-status")
def db_status():
    """Show the database's version and the migrations it has not had yet."""
    with open_db() as db:
        current = version(db)
        click.echo(f"Current version: {current}, latest: {len(MIGRATIONS)}")
        refuse_a_newer(db)
    for number in range(current + 1, len(MIGRATIONS) + 1):
        click.echo(f"Pending {number}: {MIGRATIONS[number - 1]}")


@app.cli.command("db-upgrade")
def db_upgrade():
    """Run the migrations the database has not had yet."""
    with open_db() as db:
        refuse_a_newer(db)
        before = version(db)
        upgrade(db)  # one transaction each: if one fails, the ones before it stay done
        for number in range(before + 1, version(db) + 1):
            click.echo(f"Applied {number}: {MIGRATIONS[number - 1]}")
    click.echo(f"The database is at version {len(MIGRATIONS)}, the latest.")
