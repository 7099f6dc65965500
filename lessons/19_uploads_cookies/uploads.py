"""Lesson 19: file uploads. A form sends a file, the view checks it and saves it."""
import os
import secrets

from flask import Flask, redirect, render_template, request, send_from_directory, session, url_for
from werkzeug.utils import secure_filename

app = Flask(__name__)
# dev only: set a long random SECRET_KEY in production, anyone who knows it can forge a session.
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "dev")
app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024  # a bigger request is refused: 413
app.config["UPLOAD_FOLDER"] = os.path.join(app.instance_path, "uploads")
# The extensions we accept, and how a real file of each kind begins (its "magic bytes").
ALLOWED = {".png": b"\x89PNG\r\n\x1a\n", ".jpg": b"\xff\xd8\xff", ".jpeg": b"\xff\xd8\xff",
           ".pdf": b"%PDF-"}
names = {}  # stored name: the name the sender gave, for the list; forgotten when the server stops


@app.route("/", methods=["GET", "POST"])
def index():
    """Show the upload form and the files; save a posted file."""
    token = session.setdefault("csrf_token", secrets.token_urlsafe(32))  # this visitor's secret
    error = None
    if request.method == "POST":
        # Another site can make your browser post this form, but it cannot read the token in it.
        if not secrets.compare_digest(request.form.get("csrf_token", "").encode(), token.encode()):
            return "The form is out of date. Go back, reload the page and try again.", 400
        error = save_upload(request.files.get("file"))  # needs enctype="multipart/form-data"
        if error is None:
            return redirect(url_for("index"))  # after a POST, redirect: a reload will not resend it
    folder = app.config["UPLOAD_FOLDER"]
    files = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return render_template("uploads.html", files=files, names=names, error=error)


def save_upload(file):
    """Save the file under a new name if its name and its content are allowed; else say why not."""
    if file is None or file.filename == "":
        return "Choose a file first."
    name = secure_filename(file.filename)  # "../../app.py" becomes "app.py": safe to show
    extension = os.path.splitext(name)[1].lower()
    if extension not in ALLOWED:
        return "Only these files are allowed: " + ", ".join(ALLOWED)
    # A name can lie (a web page renamed page.png): look at the file's first bytes too.
    if not file.stream.read(16).startswith(ALLOWED[extension]):
        return f"That file is not really a {extension} file."
    file.stream.seek(0)  # back to the start, so that save() writes the whole file
    os.makedirs(app.config["UPLOAD_FOLDER"], exist_ok=True)
    stored = secrets.token_hex(8) + extension  # our name, not the sender's: none replaces another
    with open(os.path.join(app.config["UPLOAD_FOLDER"], stored), "xb") as out:  # "x": no overwrite
        file.save(out)
    names[stored] = name
    return None


@app.route("/files/<name>")
def download(name):
    """Send one uploaded file back by the name we stored it under; any other name is a 404."""
    return send_from_directory(app.config["UPLOAD_FOLDER"], name, as_attachment=True,
                               download_name=names.get(name, name))  # saved under its sent name
