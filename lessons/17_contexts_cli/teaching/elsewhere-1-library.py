# Flask-SQLAlchemy 3.1: db.session and db.create_all() need an application context, as get_db does.
import click
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from werkzeug.security import generate_password_hash


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class User(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(unique=True)
    password_hash: Mapped[str]


app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///project.db"
db.init_app(app)

with app.app_context():  # a script, or the import of this file: open the context yourself
    db.create_all()


@app.cli.command("create-user")  # a command gets an application context from flask
@click.argument("username")
@click.password_option()
def create_user(username, password):
    db.session.add(User(username=username, password_hash=generate_password_hash(password)))
    db.session.commit()


@app.shell_context_processor
def shell_names():
    return {"db": db, "User": User}
