@app.errorhandler(404)
def not_found(error):
    return render_template("404.html"), 404


@app.errorhandler(500)
def server_error(error):  # error.original_exception is what the view raised
    return render_template("500.html"), 500
