"""Lesson 14: a small app ready for production: gunicorn, nginx in front, Docker."""
from flask import Flask, render_template, request
from werkzeug.middleware.proxy_fix import ProxyFix

app = Flask(__name__)
# nginx (nginx.conf) sits in front and forwards each request, so the app would see nginx's
# address and plain http. ProxyFix reads the X-Forwarded-For and X-Forwarded-Proto headers
# that exactly one proxy added (x_for=1, x_proto=1): the visitor's real address and scheme.
# Only for an app that visitors can reach through nginx alone: anyone else could fake them.
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)


@app.route("/")
def index():
    """What the app sees of the visitor, after ProxyFix."""
    return render_template("index.html", client=request.remote_addr, scheme=request.scheme)


@app.route("/healthz")
def healthz():
    """Answers 200 while the app is up: Docker's HEALTHCHECK and load balancers ask it."""
    return {"status": "ok"}
