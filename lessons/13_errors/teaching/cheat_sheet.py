@app.errorhandler(404)
def not_found(e):
    return render_template('404.html'), 404
