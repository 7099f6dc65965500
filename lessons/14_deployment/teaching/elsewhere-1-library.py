# gunicorn.conf.py, run with: gunicorn -c gunicorn.conf.py app:app
import multiprocessing
import os

bind = "0.0.0.0:8000"  # -b 0.0.0.0:8000
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))  # -w
timeout = 30  # a worker silent this long is replaced
