@app.post("/theme")
def set_theme():
    response = redirect(url_for("index"))
    response.set_cookie("theme", request.form.get("theme", "light"))
    return response


@app.route("/")
def index():
    return render_template("index.html", theme=request.cookies.get("theme", "light"))
