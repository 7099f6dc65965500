import json
import re
import runpy
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from deployment import app as deployment_app

HERE = Path(__file__).parent


@pytest.fixture
def app():
    deployment_app.config.update(TESTING=True)
    yield deployment_app


@pytest.fixture
def client(app):
    return app.test_client()


def test_healthz_answers_json(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_proxyfix_reads_what_nginx_adds(client):
    response = client.get("/", environ_base={"REMOTE_ADDR": "127.0.0.1"}, headers={
        "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
    assert response.status_code == 200
    assert b"203.0.113.7" in response.data
    assert b"<code>https</code>" in response.data


def test_gunicorn_conf_sets_bind_and_workers(monkeypatch):
    monkeypatch.delenv("GUNICORN_BIND", raising=False)
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    settings = runpy.run_path(str(HERE / "gunicorn.conf.py"))
    assert settings["bind"].startswith("127.0.0.1:")  # this machine only: nginx's side
    assert settings["workers"] == 3


def test_nginx_proxies_to_gunicorn(monkeypatch):
    monkeypatch.delenv("GUNICORN_BIND", raising=False)
    bind = runpy.run_path(str(HERE / "gunicorn.conf.py"))["bind"]
    nginx = (HERE / "nginx.conf").read_text()
    assert re.search(r"proxy_pass http://([^;/]+);", nginx).group(1) == bind
    assert "X-Forwarded-Proto" in nginx


def test_gunicorn_serves_healthz():
    pytest.importorskip("gunicorn")
    with socket.socket() as s:  # ask the system for a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--workers", "1",
         "--bind", f"127.0.0.1:{port}", "deployment:app"],
        cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # gunicorn needs a moment to start
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as response:
                    assert json.load(response) == {"status": "ok"}
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not answer /healthz")
    finally:
        server.terminate()
        server.wait(timeout=10)
