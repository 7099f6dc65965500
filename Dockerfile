# Flask Tour in a container: gunicorn serving app:app on port 8000, as a non-root user.
#   docker build -t flask-tour . && docker run --rm -p 127.0.0.1:8000:8000 --stop-timeout 35 flask-tour
# That is for trying it out: gunicorn's sync workers, exposed directly, can be tied up by a
# few slow clients. docker-compose.yml runs two of these behind nginx, which buffers clients,
# with the instance folder on a volume.

# A slim Debian image with a pinned Python version: it changes only when you change this line.
FROM python:3.11.11-slim-bookworm

# No .pyc files in the image, log lines out at once, and no pip cache or version check.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes, not on
# every change to the code. Only what runs the app, at the pinned versions: the test runner
# (pytest) stays out of the image. Through a file, not $(grep …): no word splitting.
COPY requirements.txt .
RUN grep -v '^pytest==' requirements.txt > /tmp/runtime.txt \
    && pip install --no-cache-dir -r /tmp/runtime.txt \
    && rm /tmp/runtime.txt

# An unprivileged user. The code stays owned by root (the app cannot change it); only the
# instance folder, where the SQLite file and the generated secret key live, is the app's.
# A named volume mounted there starts with this folder's owner and mode.
RUN groupadd --system --gid 10001 flask \
    && useradd --no-log-init --system --uid 10001 --gid flask flask \
    && mkdir instance \
    && chown flask:flask instance

COPY app.py ./
COPY templates/ templates/
COPY static/ static/
# The tour's topic pages show each lesson and offer it as a download.
COPY lessons/ lessons/
# The list of the app's own settings: /config hides every setting it does not name.
COPY .env.example ./
COPY deploy/gunicorn.conf.py deploy/

# Numeric, so that a platform can check it is not root without reading /etc/passwd.
USER 10001:10001

# deploy/gunicorn.conf.py listens where GUNICORN_BIND says: every interface of the container,
# so that Docker can publish the port. Change HEALTHCHECK's port with it.
ENV GUNICORN_BIND=0.0.0.0:8000
EXPOSE 8000

# Docker (and compose's depends_on) ask the app itself whether it can reach its database;
# the first check runs one interval after the start. Python's urllib fails on any status
# but 2xx, so no curl is needed in the image.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# The cheat sheet's `gunicorn app:app`, with the settings every deployment shares
# (deploy/gunicorn.conf.py: workers from WEB_CONCURRENCY, no control socket, no forwarded
# headers trusted by gunicorn itself). More options: GUNICORN_CMD_ARGS. Exec form: gunicorn
# is PID 1 and gets docker stop's SIGTERM; it then waits up to 30 s (graceful_timeout) for
# requests in progress, so give docker stop more than that (--stop-timeout 35, or compose's
# stop_grace_period).
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "app:app"]
