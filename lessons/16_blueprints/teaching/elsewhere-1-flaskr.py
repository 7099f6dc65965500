# flaskr/auth.py: one Blueprint per module, with a URL prefix
from flask import Blueprint

from flaskr.db import get_db

bp = Blueprint("auth", __name__, url_prefix="/auth")


@bp.route("/login", methods=("GET", "POST"))
def login():
    ...


# flaskr/__init__.py: the factory imports each module, then registers it
def create_app(test_config=None):
    app = Flask(__name__, instance_relative_config=True)
    ...
    from . import db
    db.init_app(app)

    from . import auth
    app.register_blueprint(auth.bp)

    from . import blog
    app.register_blueprint(blog.bp)
    app.add_url_rule("/", endpoint="index")
    return app
