"""Deployment tests for issue 13 (items 5-11), pending a move into test_app.py's section 14.

They use test_app's live-server harness: real gunicorn and nginx on loopback ports. The
commands in docs/deployment.md are run exactly as written there, with the ports and the
folders given as the settings those commands read.
"""

import contextlib
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from gunicorn.config import Config

import app as tour
from test_app import (NGINX, PASSWORD, ROOT, TEST_SECRET, LiveClient, free_port, nginx_config,
                      run_gunicorn, running, wait_for)

needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs "
                                 "it with apt-get when it runs as root)")
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"


def bash_blocks(path):
    """The ```bash blocks of a Markdown file, as written."""
    return re.findall(r"^```bash\n(.*?)^```$", path.read_text(), re.M | re.S)


def documented(command):
    """The one bash block of docs/deployment.md that contains `command`."""
    blocks = [block for block in bash_blocks(DEPLOYMENT_DOC) if command in block]
    assert len(blocks) == 1, f"docs/deployment.md has {len(blocks)} blocks with {command!r}"
    return blocks[0]


def work_tree():
    """Every file in the checkout but git's and Python's caches."""
    skip = {".git", "__pycache__", ".pytest_cache"}
    return {str(path.relative_to(ROOT)) for path in ROOT.rglob("*")
            if not skip.intersection(path.relative_to(ROOT).parts)}


@pytest.fixture
def clean_work_tree():
    """The test leaves no file in the checkout (databases, keys, logs and pid files go elsewhere)."""
    before = work_tree()
    yield
    assert work_tree() == before


def shell_environment(tmp_path, **settings):
    """The environment documented commands run in: this Python's gunicorn, a temporary database."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "FLASK_DATABASE": str(tmp_path / "deploy.sqlite"), "FLASK_SECRET_KEY": TEST_SECRET,
            **settings}


# gunicorn's settings: deploy/gunicorn.conf.py ------------------------------

def test_every_deployment_runs_gunicorn_with_its_config_file():
    command = "gunicorn -c deploy/gunicorn.conf.py app:app"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "app:app"]' in dockerfile
    assert "COPY deploy/gunicorn.conf.py deploy/" in dockerfile
    assert "ENV GUNICORN_BIND=0.0.0.0:8000" in dockerfile and "127.0.0.1:8000/healthz" in dockerfile
    assert "command:" not in (ROOT / "docker-compose.yml").read_text()  # the image's CMD
    assert command in (ROOT / "deploy" / "local.sh").read_text()
    assert command in documented("WEB_CONCURRENCY=2 gunicorn")
    assert "gunicorn -c deploy/gunicorn.conf.py" in (ROOT / "README.md").read_text()


def load_gunicorn_conf(environ):
    """gunicorn's effective settings from deploy/gunicorn.conf.py under `environ`."""
    config = Config()
    namespace = {}
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(environ)
        exec(compile(GUNICORN_CONF.read_text(), str(GUNICORN_CONF), "exec"), namespace)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    for name, value in namespace.items():
        if name in config.settings:
            config.set(name, value)
    return config


def test_gunicorn_conf_reads_bind_and_workers_from_the_environment():
    default = load_gunicorn_conf({})
    assert (default.bind, default.workers) == (["127.0.0.1:8000"], 1)
    custom = load_gunicorn_conf({"GUNICORN_BIND": "0.0.0.0:9000", "WEB_CONCURRENCY": "3"})
    assert (custom.bind, custom.workers) == (["0.0.0.0:9000"], 3)
    assert default.forwarded_allow_ips == [] and default.secure_scheme_headers == {}
    assert default.forwarder_headers == [] and default.control_socket_disable
    compose = (ROOT / "docker-compose.yml").read_text()
    grace = int(re.search(r"^  stop_grace_period: (\d+)s$", compose, re.M).group(1))
    assert grace > default.graceful_timeout  # docker stop must not SIGKILL requests in progress
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    read_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", nginx).group(1))
    assert read_timeout <= default.timeout  # nginx notices a stalled instance first


FORGED_SCHEME = {"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on",
                 "X-Forwarded-Protocol": "ssl"}


def test_documented_gunicorn_command_trusts_no_local_client(tmp_path, clean_work_tree):
    """The doc's command verbatim: a local client cannot claim https; no control socket."""
    port = free_port()
    env = shell_environment(tmp_path, GUNICORN_BIND=f"127.0.0.1:{port}")
    with running(["bash", "-c", documented("WEB_CONCURRENCY=2 gunicorn")], port,
                 tmp_path / "gunicorn.log", cwd=ROOT, env=env) as server:
        wait_for(lambda: server.output().count("Booting worker") == 2, "WEB_CONCURRENCY=2 workers")
        client = LiveClient(server.url)
        for headers in (FORGED_SCHEME, {"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "off"}):
            reply = client.get("/hooks", headers)
            assert reply.status == 200  # not gunicorn's "Contradictory scheme headers"
            assert "<dt>Scheme</dt><dd><code>http</code></dd>" in reply.text
            assert "Strict-Transport-Security" not in reply.headers
        page = client.get("/login", FORGED_SCHEME)
        assert "Secure" not in page.headers["Set-Cookie"]
        assert "/evil" not in client.get("/login", {"SCRIPT_NAME": "/evil"}).text  # no prefix
    assert "Control socket" not in server.output() and "Control server" not in server.output()


# nginx: forged scheme headers, its own pages, a stalled instance -------------

@contextlib.contextmanager
def nginx_in_front_of(tmp_path, upstreams, edits=(), name="nginx"):
    """nginx with deploy/nginx.conf (as test_app's nginx_config adapts it), whatever the
    upstreams' state: it is ready once its port accepts connections."""
    temp, port = tmp_path / name, free_port()
    temp.mkdir()
    text = nginx_config(temp, port, upstreams)
    for old, new in edits:
        assert old in text, f"deploy/nginx.conf no longer contains {old!r}"
        text = text.replace(old, new)
    (temp / "nginx.conf").write_text(text)
    main = f"daemon off; pid {temp}/nginx.pid;" + (" user root;" if os.geteuid() == 0 else "")
    command = [NGINX, "-p", f"{temp}/", "-c", str(temp / "nginx.conf"),
               "-e", f"{temp}/error.log", "-g", main]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr
    with open(temp / "output.log", "wb") as output:
        proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        def accepting():
            try:
                LiveClient(f"http://127.0.0.1:{port}").get("/static/style.css")
                return True
            except OSError:
                return False
        wait_for(accepting, "nginx to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def stalled_instance():
    """A port that accepts connections (the kernel does) and never answers: a stalled app."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def assert_security_headers(reply):
    assert [(name, reply.headers.get_all(name)) for name, _ in tour.SECURITY_HEADERS] == [
        (name, [value]) for name, value in tour.SECURITY_HEADERS], reply.headers


@needs_nginx
def test_nginx_clears_scheme_headers_a_client_sends(tmp_path):
    """gunicorn without our config file trusts scheme headers from nginx's address: nginx must
    set or clear every one, or any client gets the 400 of a contradiction, or https."""
    with contextlib.ExitStack() as stack:
        apps = [stack.enter_context(run_gunicorn(tmp_path, workers=1,
                                                 env={"FLASK_TRUSTED_PROXIES": "1"}))
                for _ in range(2)]
        proxy = stack.enter_context(nginx_in_front_of(tmp_path, [app.port for app in apps]))
        for headers in (FORGED_SCHEME, {"X-Forwarded-Ssl": "on"}, {"X-Forwarded-Protocol": "ssl"},
                        {"Forwarded": "proto=https"}):
            for _ in apps:  # each instance once (round robin)
                reply = LiveClient(proxy).get("/hooks", headers)
                assert reply.status == 200, reply.text
                assert "<dt>Scheme</dt><dd><code>http</code></dd>" in reply.text
                assert "Strict-Transport-Security" not in reply.headers
                assert_security_headers(reply)  # once each: nginx's, not also the app's


@needs_nginx
def test_nginx_own_error_pages_carry_the_security_headers(tmp_path):
    edits = [("proxy_read_timeout 10s;", "proxy_read_timeout 1s;")]
    with stalled_instance() as stalled:
        with nginx_in_front_of(tmp_path, [free_port(), free_port()], edits) as proxy:
            missing = LiveClient(proxy).get("/static/no-such-file.css")
            assert missing.status == 404 and "X-Request-ID" not in missing.headers
            assert_security_headers(missing)
            down = LiveClient(proxy).get("/")  # both instances refuse the connection
            assert down.status == 502 and "X-Request-ID" not in down.headers
            assert_security_headers(down)
        with nginx_in_front_of(tmp_path, [stalled, stalled], edits, "nginx-504") as proxy:
            timed_out = LiveClient(proxy).post_json("/api/notes", {"title": "lost?"})
            assert timed_out.status == 504
            assert_security_headers(timed_out)


@needs_nginx
def test_nginx_stops_sending_requests_to_a_stalled_instance(tmp_path):
    """One instance accepts connections and never answers: GETs are retried on the other, the
    stalled one is then skipped (fail_timeout), so even POSTs all succeed after the first."""
    edits = [("proxy_read_timeout 10s;", "proxy_read_timeout 1s;")]
    with stalled_instance() as stalled, run_gunicorn(
            tmp_path, workers=2, env={"FLASK_TRUSTED_PROXIES": "1"}) as live:
        bearer = token_for(live.url)
        with nginx_in_front_of(tmp_path, [stalled, live.port], edits) as proxy:
            started = time.monotonic()
            for _ in range(2):
                assert LiveClient(proxy).get("/data").status == 200
            assert time.monotonic() - started < 3  # one request waited the 1 s, then retried
            started = time.monotonic()
            statuses = [LiveClient(proxy).post_json("/api/notes", {"title": f"n{n}"}, bearer).status
                        for n in range(20)]
            assert statuses == [201] * 20 and time.monotonic() - started < 5


# Rolling restart under POST load, with the documented commands ----------------

def token_for(url, username="ada"):
    """Register `username` through the API at `url`; Bearer headers for it."""
    client = LiveClient(url)
    credentials = {"username": username, "password": PASSWORD}
    assert client.post_json("/api/users", credentials).status == 201
    token = client.post_json("/api/token", credentials).json["access_token"]
    return {"Authorization": "Bearer " + token}


class WriteLoad:
    """Threads creating notes through `url` until stopped; every answer and error recorded."""

    def __init__(self, url, headers, threads=6):
        self.url, self.headers, self.stop = url, headers, threading.Event()
        self.replies, self.errors, self.lock = [], [], threading.Lock()
        self.threads = [threading.Thread(target=self.write, args=(n,)) for n in range(threads)]

    def write(self, thread):
        client, number = LiveClient(self.url), 0
        while not self.stop.is_set():
            title = f"t{thread}-{number}"
            number += 1
            try:
                reply = client.post_json("/api/notes", {"title": title}, self.headers)
                result = (title, reply.status, reply.json.get("id") if reply.status == 201 else
                          reply.text[:200])
            except Exception as error:  # a reset connection, a timeout: the client saw an error
                with self.lock:
                    self.errors.append((title, repr(error)))
                continue
            with self.lock:
                self.replies.append(result)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=20)


def run_documented(command, env, timeout=60):
    result = subprocess.run(["bash", "-c", documented(command)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result


@needs_nginx
def test_rolling_restart_under_post_load_loses_nothing(tmp_path, clean_work_tree):
    """docs/deployment.md's start, restart and stop, verbatim: two gunicorns behind nginx,
    writes through nginx while each instance is restarted in turn: no client error, and every
    201 is in the database."""
    documented_blocks = {block.strip() for block in bash_blocks(DEPLOYMENT_DOC)
                         if "docker" not in block}
    assert documented_blocks == {documented(name).strip() for name in (
        "WEB_CONCURRENCY=2 gunicorn", "local.sh start", "local.sh restart", "local.sh stop")}, \
        "a command in docs/deployment.md that no test runs"
    # nginx's workers (nobody, when the tests run as root) need to reach their temp folders.
    run_dir = Path(tempfile.mkdtemp(prefix="flask-tour-test-"))
    run_dir.chmod(0o755)
    nginx_port, ports = free_port(), [free_port(), free_port()]
    env = shell_environment(tmp_path, RUN_DIR=str(run_dir), NGINX_LISTEN=f"127.0.0.1:{nginx_port}",
                            APP1_PORT=str(ports[0]), APP2_PORT=str(ports[1]))
    url = f"http://127.0.0.1:{nginx_port}"
    try:
        run_documented("local.sh start", env)
        pids = {port: (run_dir / f"app-{port}.pid").read_text() for port in ports}
        bearer = token_for(url)
        with WriteLoad(url, bearer) as load:
            wait_for(lambda: len(load.replies) >= 50, "the first writes")
            started = time.monotonic()
            run_documented("local.sh restart", env)
            restart_seconds = time.monotonic() - started
            during = len(load.replies)
            wait_for(lambda: len(load.replies) >= during + 50, "writes after the restart")
        assert {port: (run_dir / f"app-{port}.pid").read_text() for port in ports}.keys() == \
            pids.keys()
        assert all((run_dir / f"app-{port}.pid").read_text() != pids[port] for port in ports)
        assert load.errors == []
        assert [reply for reply in load.replies if reply[1] != 201] == []
        with contextlib.closing(sqlite3.connect(env["FLASK_DATABASE"])) as db:
            stored = dict(db.execute("SELECT id, title FROM notes"))
        assert {note_id: title for title, _, note_id in load.replies} == stored
        upstreams = re.findall(r"upstream=127\.0\.0\.1:(\d+)", (run_dir / "access.log").read_text())
        assert {int(port) for port in upstreams} == set(ports)
        for port in ports:
            log = (run_dir / f"app-{port}.log").read_text()
            assert "Control socket" not in log and "Control server" not in log
        print(f"rolling restart: {len(load.replies)} POSTs, {len(stored)} stored, 0 errors; "
              f"restart took {restart_seconds:.1f} s")
    finally:
        subprocess.run(["bash", "-c", documented("local.sh stop")], cwd=ROOT, env=env,
                       capture_output=True, timeout=60)
        shutil.rmtree(run_dir, ignore_errors=True)


# README, .ci/run, compose, Dockerfile, nginx.conf kept in step ----------------

def test_readme_first_screen_has_a_virtualenv_and_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:40])
    blocks = bash_blocks(ROOT / "README.md")
    run, test = blocks[0], blocks[1]
    assert "python3 -m venv .venv" in run and ". .venv/bin/activate" in run
    assert run.strip().endswith("python -m pip install -r requirements.txt && flask run")
    assert test.strip() == "python -m pip install -r requirements.txt && python -m pytest"
    assert run in first_screen and test in first_screen
    assert "sudo" not in readme and "sudo" not in DEPLOYMENT_DOC.read_text()
    assert "docs/deployment.md" in readme and "docs/performance.md" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.rstrip().splitlines()[-1] == test.strip()  # .ci/run runs the README's command


def test_compose_reads_env_file_in_the_form_every_version_knows():
    compose = (ROOT / "docker-compose.yml").read_text()
    assert re.search(r"^  env_file: \.env$", compose, re.M)
    assert not re.search(r"^\s+required:", compose, re.M)
    assert "test -f .env || cp .env.example .env" in DEPLOYMENT_DOC.read_text()


def test_the_image_installs_runtime_packages_only():
    dockerfile = (ROOT / "Dockerfile").read_text()
    install = re.search(r"^RUN pip install .*$", dockerfile, re.M).group(0)
    assert "$(grep -v '^pytest==' requirements.txt)" in install
    requirements = (ROOT / "requirements.txt").read_text().split()
    kept = [line for line in requirements if not line.startswith("pytest==")]
    assert [line.split("==")[0] for line in kept] == ["flask", "python-dotenv", "gunicorn"]


def test_nginx_conf_headers_equal_the_apps():
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    added = re.findall(r'^\s*add_header ([\w-]+) "?(.*?)"? always;$', nginx, re.M)
    assert added == list(tour.SECURITY_HEADERS)  # once, at server level, on every response
    directives = re.findall(r"^\s*#?\s*add_header .*$", nginx, re.M)
    assert len(directives) == len(added)  # none without `always`, none in a location
    hidden = re.findall(r"^\s*proxy_hide_header ([\w-]+);$", nginx, re.M)
    assert hidden == [name for name, _ in tour.SECURITY_HEADERS]  # the app's copies
    cleared = {"X-Forwarded-Ssl", "X-Forwarded-Protocol", "X-Forwarded-Scheme", "X-Url-Scheme",
               "Forwarded", "X-Forwarded-Port", "X-Forwarded-Prefix"}
    server = nginx.split("location /static/")[0]
    for block in (server, nginx.split("# location /tour/ {")[1]):
        set_headers = set(re.findall(r'proxy_set_header ([\w-]+) ""?;', block))
        assert cleared - {"X-Forwarded-Prefix"} <= set_headers, block
