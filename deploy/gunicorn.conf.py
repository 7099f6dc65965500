# gunicorn settings for Flask Tour, in one place for every way the app is deployed:
#   gunicorn -c deploy/gunicorn.conf.py app:app
# (README.md, docs/deployment.md, deploy/local.sh, the Dockerfile and docker-compose.yml all
# run exactly this). Options on the command line win over this file, and this file reads
# the environment, so nothing here needs editing per machine. gunicorn imports this file
# before the app, so .env does not reach it: export these variables in the shell instead
# (docker compose passes .env to the containers, so there .env works too).
import os

# Where to listen: GUNICORN_BIND, e.g. 127.0.0.1:8001 behind an nginx on the same machine
# (the default port is gunicorn's own), 0.0.0.0:8000 in a container (the Dockerfile sets it).
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")

# Worker processes: WEB_CONCURRENCY, the variable gunicorn and hosting platforms already
# use; about two per CPU core. Each sync worker serves one request at a time.
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))

# A worker silent for 30 s is killed and replaced. deploy/nginx.conf gives up on a request
# sooner (proxy_read_timeout), so a stalled instance is noticed there first.
timeout = 30

# On SIGTERM (docker stop, deploy/local.sh stop) and SIGHUP (reload), workers get 30 s to
# finish the requests they have. Keep `stop_grace_period` in docker-compose.yml above it,
# or Docker kills gunicorn with SIGKILL before the requests are done.
graceful_timeout = 30

# Trust no client's X-Forwarded-Proto, X-Forwarded-Ssl or X-Forwarded-Protocol. gunicorn's
# default trusts them from 127.0.0.1, so any local program could make the app believe a
# plain-http request came over https (HSTS, Secure cookies). The app's ProxyFix, switched
# on by FLASK_TRUSTED_PROXIES (topic 14), is the one place that trusts forwarded headers,
# and only as many proxies as you say; gunicorn leaves them all to it.
forwarded_allow_ips = ""

# Which header values mean https to gunicorn: none. Without this, a client on a Unix socket
# (gunicorn trusts every one) could still set the scheme; the app's ProxyFix decides alone.
secure_scheme_headers = {}

# Headers that may set SCRIPT_NAME or PATH_INFO directly: none (the default is to let a
# trusted client do it). A prefix comes from X-Forwarded-Prefix, through ProxyFix.
forwarder_headers = ""

# gunicorn 25.1+ opens a control socket for `gunicornc` at ~/.gunicorn/gunicorn.ctl, one path
# for every instance of a user: two instances fight over it (stopping one deletes the
# other's) and the image's user has no home to create it in. Nothing here uses gunicornc,
# so it is off; signals do the same work (HUP reloads, TERM stops gracefully).
control_socket_disable = True
