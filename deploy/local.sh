#!/usr/bin/env bash
# Flask Tour in production shape without Docker: two gunicorn instances and nginx in front,
# all on this machine, run as you (no root needed: nginx listens on a high port).
#
#   deploy/local.sh start     start both instances and nginx
#   deploy/local.sh restart   rolling restart, one instance at a time: no request fails
#   deploy/local.sh stop      stop nginx, then both instances (each finishes its requests)
#
# Settings, from the environment (the defaults in brackets):
#   NGINX_LISTEN       where nginx listens [127.0.0.1:8080]; 80 needs root
#   APP1_PORT APP2_PORT the instances' ports on 127.0.0.1 [8001 8002]
#   RUN_DIR            pid files, logs, nginx's config and temp files [/tmp/flask-tour]
#   WEB_CONCURRENCY    workers per instance [2]
#   FLASK_*            the app's settings (.env.example); FLASK_TRUSTED_PROXIES defaults to 1
#                      here, as the app sits behind exactly one proxy, this nginx
set -euo pipefail
cd "$(dirname "$0")/.."

NGINX_LISTEN=${NGINX_LISTEN:-127.0.0.1:8080}
APP1_PORT=${APP1_PORT:-8001}
APP2_PORT=${APP2_PORT:-8002}
RUN_DIR=${RUN_DIR:-/tmp/flask-tour}
export WEB_CONCURRENCY=${WEB_CONCURRENCY:-2}
export FLASK_TRUSTED_PROXIES=${FLASK_TRUSTED_PROXIES:-1}
export FLASK_ACCESS_LOG=${FLASK_ACCESS_LOG:-false}  # nginx logs every request (access.log)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)   # Debian keeps it in /usr/sbin

# Wait up to 20 s for a URL to answer 200 (python, since curl may not be installed); given a
# gunicorn pid file as $2, give up as soon as that gunicorn has stopped.
wait_for_url() {
    python3 - "$@" <<'PY'
import os, sys, time, urllib.error, urllib.request
url, pid_file = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None
deadline, pid, answer = time.monotonic() + 20, None, "nothing"
while True:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                break
    except urllib.error.HTTPError as error:
        answer = f"{error.code} {error.read().decode(errors='replace').strip()}"
    except OSError:
        pass
    try:
        pid = pid or int(open(pid_file).read())
        os.kill(pid, 0)
    except (TypeError, OSError, ValueError):  # no pid file given, or not written yet
        if pid:
            sys.exit(f"{url}: gunicorn (pid {pid}) stopped before it answered")
    if time.monotonic() > deadline:
        sys.exit(f"{url} did not answer 200 within 20 s; its last answer: {answer}")
    time.sleep(0.1)
PY
}

# Wait until the process `$1` has exited (up to 60 s).
wait_for_exit() {
    for _ in $(seq 600); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "process $1 did not exit within 60 s" >&2
    return 1
}

# One gunicorn instance on 127.0.0.1:$1, as a daemon, with the settings in gunicorn.conf.py.
# If it stops or stays unhealthy, the end of its log says why (a daemon prints nothing).
start_app() {
    GUNICORN_BIND=127.0.0.1:$1 gunicorn -c deploy/gunicorn.conf.py app:app --daemon \
        --pid "$RUN_DIR/app-$1.pid" --error-logfile "$RUN_DIR/app-$1.log"
    if ! wait_for_url "http://127.0.0.1:$1/healthz" "$RUN_DIR/app-$1.pid"; then
        echo "The end of $RUN_DIR/app-$1.log:" >&2
        tail -n 20 "$RUN_DIR/app-$1.log" >&2
        return 1
    fi
}

# Stop an instance gracefully: SIGTERM lets each worker finish its request (graceful_timeout).
stop_app() {
    local pid
    pid=$(cat "$RUN_DIR/app-$1.pid" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    wait_for_exit "$pid"
}

# deploy/nginx.conf with this machine's addresses; `$1` is the port of an instance to mark
# `down` (no new requests), if any. Temp files and logs go to RUN_DIR, so no root is needed.
write_nginx_conf() {
    local down1="" down2=""
    [ "${1:-}" = "$APP1_PORT" ] && down1=" down"
    [ "${1:-}" = "$APP2_PORT" ] && down2=" down"
    sed -e "s/server app1:8000;/server 127.0.0.1:$APP1_PORT$down1;/" \
        -e "s/server app2:8000;/server 127.0.0.1:$APP2_PORT$down2;/" \
        -e "s/listen 80;/listen $NGINX_LISTEN;/" \
        -e "s#/srv/flask-tour/static/#$PWD/static/#" \
        -e "s#/var/log/nginx/#$RUN_DIR/#" \
        -e "s#^http {#http {\n    client_body_temp_path $RUN_DIR/client_body;\n    proxy_temp_path $RUN_DIR/proxy;\n    fastcgi_temp_path $RUN_DIR/fastcgi;\n    uwsgi_temp_path $RUN_DIR/uwsgi;\n    scgi_temp_path $RUN_DIR/scgi;#" \
        deploy/nginx.conf > "$RUN_DIR/nginx.conf"
}

nginx_cmd() {
    "$NGINX" -p "$RUN_DIR/" -c "$RUN_DIR/nginx.conf" -e "$RUN_DIR/error.log" -g "pid $RUN_DIR/nginx.pid;" "$@"
}

# Load the new nginx.conf and wait until every old nginx worker has exited. The old workers
# finish the requests they hold, including those waiting on an instance now marked down; once
# they are gone, no request is on its way to that instance and none will be.
reload_nginx() {
    local master old
    nginx_cmd -t -q
    master=$(cat "$RUN_DIR/nginx.pid")
    old=$(pgrep -P "$master" || true)
    kill -HUP "$master"
    for pid in $old; do wait_for_exit "$pid"; done
}

case "${1:-}" in
start)
    mkdir -p "$RUN_DIR"
    start_app "$APP1_PORT"
    start_app "$APP2_PORT"
    write_nginx_conf
    nginx_cmd -t -q
    nginx_cmd
    wait_for_url "http://$NGINX_LISTEN/healthz"
    echo "Flask Tour: http://$NGINX_LISTEN/ (logs in $RUN_DIR)"
    ;;
restart)
    # Take each instance out of nginx, let its requests finish, restart it (new code, new
    # settings), check its health, and only then do the same with the next one.
    for port in "$APP1_PORT" "$APP2_PORT"; do
        write_nginx_conf "$port"
        reload_nginx
        stop_app "$port"
        start_app "$port"
    done
    write_nginx_conf
    reload_nginx
    echo "restarted both instances"
    ;;
stop)
    if [ -f "$RUN_DIR/nginx.pid" ]; then
        pid=$(cat "$RUN_DIR/nginx.pid")
        kill -QUIT "$pid" 2>/dev/null && wait_for_exit "$pid"  # graceful: open requests finish
    fi
    stop_app "$APP1_PORT"
    stop_app "$APP2_PORT"
    ;;
*)
    echo "usage: $0 start|restart|stop" >&2
    exit 2
    ;;
esac
