#!/bin/sh
# Serve taskman's ASGI app under uvicorn, as `taskman serve --asgi` does, with uvicorn's own CLI.
#
# The protocol is taskman's (taskman.uvicorn_protocol:H11Protocol): strict framing, problem+json
# refusals, idle, head and body timeouts, and a head size that follows the app's own limits.
# Same variables as `taskman serve` for the address, the workers, the graceful timeout, the
# keep-alive and the trusted proxies (APP_SERVER__*; this script does not read taskman.toml), plus:
#   UVICORN_LIMIT_CONCURRENCY              connections + tasks per worker before uvicorn answers 503 (1000)
#   UVICORN_H11_MAX_INCOMPLETE_EVENT_SIZE  bytes of an incomplete request head uvicorn buffers
#                                          (default: derived from the limits plugin's settings)
# Extra arguments go to uvicorn.  See docs/deploy.md and docs/security.md.
set -eu

# Several workers share one folder of metric files, which must start empty:
# the metrics plugin's own function empties it; its setting wins, as under `taskman serve`.
PROMETHEUS_MULTIPROC_DIR="${APP_METRICS__MULTIPROCESS_DIR:-${PROMETHEUS_MULTIPROC_DIR:-/tmp/taskman-metrics}}"
export PROMETHEUS_MULTIPROC_DIR
python -c 'import os
from taskman_plugins.metrics.multiprocess import prepare_directory
prepare_directory(os.environ["PROMETHEUS_MULTIPROC_DIR"])'

# One setting decides which proxies may name the client, for both servers: none unless it is set.
if [ -n "${APP_SERVER__FORWARDED_ALLOW_IPS:-}" ]; then
    set -- --proxy-headers --forwarded-allow-ips "$APP_SERVER__FORWARDED_ALLOW_IPS" "$@"
else
    set -- --no-proxy-headers "$@"
fi
if [ -n "${UVICORN_H11_MAX_INCOMPLETE_EVENT_SIZE:-}" ]; then
    set -- --h11-max-incomplete-event-size "$UVICORN_H11_MAX_INCOMPLETE_EVENT_SIZE" "$@"
fi

# --lifespan on: start-up runs there.
exec python -m uvicorn taskman.asgi:app \
    --host "${APP_SERVER__HOST:-127.0.0.1}" \
    --port "${APP_SERVER__PORT:-8000}" \
    --workers "${APP_SERVER__WORKERS:-1}" \
    --http taskman.uvicorn_protocol:H11Protocol \
    --lifespan on \
    --timeout-graceful-shutdown "${APP_SERVER__GRACEFUL_TIMEOUT:-30}" \
    --timeout-keep-alive "${APP_SERVER__KEEPALIVE:-5}" \
    --limit-concurrency "${UVICORN_LIMIT_CONCURRENCY:-1000}" \
    --no-access-log \
    "$@"
