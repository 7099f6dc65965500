@app.before_request
def start_timer():
    g.started = time.perf_counter()


@app.after_request
def add_timing(response):
    elapsed_ms = (time.perf_counter() - g.started) * 1000
    response.headers["Server-Timing"] = f"app;dur={elapsed_ms:.1f}"
    return response


@app.teardown_appcontext
def close_db(exception=None):  # runs even when the view raised
    db = g.pop("db", None)
    if db is not None:
        db.close()
