"""Lesson 19: file uploads, and a cookie that remembers a preference."""
import os

from flask import Flask, redirect, render_template, request, send_from_directory, url_for
from werkzeug.utils import secure_filename

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024  # a bigger request is refused: 413
app.config["UPLOAD_FOLDER"] = os.path.join(app.instance_path, "uploads")

# The extensions we accept, and how a real file of each kind begins (its "magic bytes").
ALLOWED = {".png": b"\x89PNG\r\n\x1a\n", ".jpg": b"\xff\xd8\xff", ".pdf": b"%PDF-"}


@app.route("/", methods=["GET", "POST"])
def index():
    """Show the upload form and the files; save a posted file."""
    error = None
    if request.method == "POST":
        file = request.files.get("file")  # the form needs enctype="multipart/form-data"
        if file is None or file.filename == "":
            error = "Choose a file first."
        else:
            error = save_upload(file)
        if error is None:
            return redirect(url_for("index"))  # after a POST, redirect: a reload will not resend it
    folder = app.config["UPLOAD_FOLDER"]
    files = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return render_template("index.html", files=files, error=error,
                           large=request.cookies.get("large_text") == "on")


def save_upload(file):
    """Save the file if its name and its content are allowed; else return why not."""
    # The sender chooses the name: "../../app.py" would write outside the folder.
    # secure_filename keeps only letters, digits, "_", "-" and "." ("../../app.py" -> "app.py").
    name = secure_filename(file.filename)
    extension = os.path.splitext(name)[1].lower()
    if extension not in ALLOWED:
        return "Only .png, .jpg and .pdf files are allowed."
    # The name can lie: a web page renamed page.png must not pass, so look at its first bytes.
    if not file.stream.read(16).startswith(ALLOWED[extension]):
        return f"That file is not really a {extension} file."
    file.stream.seek(0)  # back to the start, so that save() writes the whole file
    os.makedirs(app.config["UPLOAD_FOLDER"], exist_ok=True)
    file.save(os.path.join(app.config["UPLOAD_FOLDER"], name))
    return None


@app.route("/files/<name>")
def download(name):
    """Send one uploaded file back."""
    # send_from_directory refuses a name that leads out of the folder (404).
    return send_from_directory(app.config["UPLOAD_FOLDER"], name, as_attachment=True)


@app.post("/text-size")
def text_size():
    """Remember the visitor's text size in a cookie, then show the page again."""
    choice = "on" if request.form.get("large_text") == "on" else "off"
    response = redirect(url_for("index"))
    # The browser keeps the cookie and sends it back with every request to this site.
    response.set_cookie("large_text", choice,
                        max_age=365 * 24 * 3600,  # kept a year, not only until the browser closes
                        httponly=True,  # page scripts cannot read it
                        samesite="Lax")  # not sent along when another site posts a form here
    return response


@app.errorhandler(413)
def too_large(error):
    """A friendly page when a file is over MAX_CONTENT_LENGTH."""
    return "That file is too large: at most 1 MB.", 413

