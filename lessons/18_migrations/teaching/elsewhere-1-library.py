# app.py: Flask-Migrate wraps Alembic for Flask-SQLAlchemy models.
from flask_migrate import Migrate

migrate = Migrate(app, db)  # adds the `flask db` command group

# In a shell, once: `flask db init` (it makes migrations/, kept in git). For each change:
# `flask db migrate -m "session ids"` writes a script from what changed in the models,
# `flask db upgrade` applies the scripts the database has not had, and
# `flask db current` shows the revision it is at (Alembic keeps it in a table).

# The script `flask db migrate` wrote in migrations/versions/: read it before committing.
from alembic import op
import sqlalchemy as sa

revision = "3f2a9c1d7e4b"
down_revision = "a1b2c3d4e5f6"  # the script it follows: a chain of ids, not numbers


def upgrade():
    op.add_column("users", sa.Column("session_id", sa.String(), nullable=False,
                                     server_default=""))


def downgrade():
    op.drop_column("users", "session_id")
