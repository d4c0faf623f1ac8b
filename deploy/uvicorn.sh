#!/bin/sh
# Serve taskman's ASGI app under uvicorn with the server-level limits `taskman serve --asgi` does not set.
#
# Same variables as `taskman serve` for the address, the workers and the
# graceful timeout (APP_SERVER__*), plus:
#   UVICORN_LIMIT_CONCURRENCY              connections + tasks per worker before uvicorn answers 503 (200)
#   UVICORN_H11_MAX_INCOMPLETE_EVENT_SIZE  bytes of request line + headers uvicorn buffers, else 400 (16384)
#   FORWARDED_ALLOW_IPS                    proxies trusted for X-Forwarded-* (uvicorn's default: 127.0.0.1)
# Extra arguments go to uvicorn.  See docs/deploy.md.
set -eu

# Several workers share one folder of metric files, which must start empty:
# the metrics plugin's own function empties it; its setting wins, as under `taskman serve`.
PROMETHEUS_MULTIPROC_DIR="${APP_METRICS__MULTIPROCESS_DIR:-${PROMETHEUS_MULTIPROC_DIR:-/tmp/taskman-metrics}}"
export PROMETHEUS_MULTIPROC_DIR
python -c 'import os
from taskman_plugins.metrics.multiprocess import prepare_directory
prepare_directory(os.environ["PROMETHEUS_MULTIPROC_DIR"])'

# --http h11: the incomplete-event limit is h11's; --lifespan on: start-up runs there.
exec python -m uvicorn taskman.asgi:app \
    --host "${APP_SERVER__HOST:-127.0.0.1}" \
    --port "${APP_SERVER__PORT:-8000}" \
    --workers "${APP_SERVER__WORKERS:-1}" \
    --http h11 \
    --lifespan on \
    --timeout-graceful-shutdown "${APP_SERVER__GRACEFUL_TIMEOUT:-30}" \
    --limit-concurrency "${UVICORN_LIMIT_CONCURRENCY:-200}" \
    --h11-max-incomplete-event-size "${UVICORN_H11_MAX_INCOMPLETE_EVENT_SIZE:-16384}" \
    --no-access-log \
    --proxy-headers \
    "$@"
