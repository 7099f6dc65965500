@app.before_request
def before_req():
    print("Before request")

@app.after_request
def after_req(response):
    print("After request")
    return response
