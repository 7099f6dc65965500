# app.py: Flask-Migrate wraps Alembic for Flask-SQLAlchemy models.
from flask_migrate import Migrate

migrate = Migrate(app, db)  # adds the `flask db` command group

# In a shell:
#   flask db init                          once: creates migrations/, kept in git
#   flask db migrate -m "session ids"      compares the models with the database, writes a script
#   flask db upgrade                       applies the scripts the database has not had
#   flask db current                       the database's revision (Alembic keeps it in a table)

# migrations/versions/3f2a9c1d7e4b_session_ids.py, written by `flask db migrate`: read it!
from alembic import op
import sqlalchemy as sa

revision = "3f2a9c1d7e4b"
down_revision = "a1b2c3d4e5f6"  # the script it follows: a chain of ids, not numbers


def upgrade():
    op.add_column("users", sa.Column("session_id", sa.String(), nullable=False,
                                     server_default=""))


def downgrade():
    op.drop_column("users", "session_id")
