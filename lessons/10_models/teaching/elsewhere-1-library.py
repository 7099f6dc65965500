from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy(app)


class Note(db.Model):  # the table is named "note" after the class
    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.Integer, db.ForeignKey("user.id"), nullable=False)
    title = db.Column(db.String(200), nullable=False)


note = Note(user_id=1, title="first")
db.session.add(note)
db.session.commit()
same = db.session.get(Note, note.id)  # the legacy style: Note.query.get(note.id)
page = db.paginate(db.select(Note).filter_by(user_id=1).order_by(Note.id.desc()),
                   page=1, per_page=10)  # page.items, page.pages, page.has_next
