# gunicorn's settings, read by: gunicorn -c gunicorn.conf.py deployment:app
import os

# Listen on this machine only, where nginx (nginx.conf) forwards requests to it.
# The Dockerfile sets GUNICORN_BIND=0.0.0.0:8000, so that Docker can publish the port.
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")

# How many processes serve requests at once; hosting platforms set WEB_CONCURRENCY.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

# One line per request, to standard output, where `docker logs` and systemd look.
accesslog = "-"

# A worker that has not answered for 30 seconds is stopped and replaced.
timeout = 30

# Trust no X-Forwarded-* header in gunicorn itself (by default it believes X-Forwarded-Proto
# from this machine): ProxyFix in deployment.py is the one place that reads them.
forwarded_allow_ips = ""

# No control socket in the home folder: this app does not use gunicornc.
control_socket_disable = True
