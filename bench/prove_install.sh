#!/usr/bin/env bash
# Proves, without a Docker daemon, what can be proved here of the images and the compose stack (issue 16):
#  1. the Dockerfile's install command (its `RUN sh docker/install.sh ...` line, read from the Dockerfile) in a
#     fresh `python -m venv`;
#  2. PostgreSQL and Redis started as compose.yaml starts them (its user, password, database and redis-server
#     arguments, read from compose.yaml), here as local processes on free ports;
#  3. the dashboard's command (the Dockerfile's CMD) and the worker's (compose.yaml's worker `command`), run from the
#     venv with compose.yaml's environment, the host names `postgres` and `redis` pointed at the local servers;
#  4. the Dockerfile's HEALTHCHECK command answers (GET /_stcore/health is 200);
#  5. a job submitted through the store API (core.jobs.submit_job) is claimed and run by that worker through Redis,
#     and its row in PostgreSQL says so;
# then stops everything and prints what was PROVED and what was NOT PROVED (and why).
#
#   bash bench/prove_install.sh                              # install torch from the Dockerfile's CPU index
#   bash bench/prove_install.sh --torch-from-requirements    # that index unreachable: torch from requirements.txt
#   bash bench/prove_install.sh --venv DIR                   # install into DIR and keep it (a rerun is quick)
#
# Needs root (PostgreSQL refuses to run as root, so its server runs as the `postgres` user), PostgreSQL's server
# binaries (/usr/lib/postgresql/*/bin), redis-server, and PyPI (or this machine's mirror of it) for the install.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
TORCH_FROM_REQUIREMENTS=0
VENV=
while [ $# -gt 0 ]; do
    case "$1" in
        --torch-from-requirements) TORCH_FROM_REQUIREMENTS=1; shift ;;
        --venv) VENV=${2:?--venv needs a folder}; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "prove_install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

fail() { echo "NOT PROVED: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run as root (PostgreSQL's server then runs as the postgres user)"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PG_BIN/initdb" ] || fail "PostgreSQL's server binaries are missing (apt-get install postgresql)"
command -v redis-server >/dev/null || fail "redis-server is missing (apt-get install redis-server)"
id postgres >/dev/null 2>&1 || fail "there is no postgres user (apt-get install postgresql creates it)"

# The host's python reads the Dockerfile and compose.yaml (PyYAML); the venv's runs the app.
HOST_PYTHON=$(command -v python3)
"$HOST_PYTHON" -c "import yaml" 2>/dev/null || fail "the host's python3 needs PyYAML to read compose.yaml"
WORK=$(mktemp -d /tmp/prove-install.XXXXXX)
chmod 755 "$WORK"
[ -n "$VENV" ] || VENV="$WORK/venv"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done
    if [ -f "$WORK/pg/postmaster.pid" ]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$HOST_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

# --- 1. The Dockerfile's install, in a fresh venv -----------------------------------------------------------------
install_line=$(grep -E '^RUN sh docker/install\.sh' Dockerfile) || fail "the Dockerfile has no 'RUN sh docker/install.sh' line"
read -r -a install_args <<<"${install_line#RUN sh docker/install.sh}"
torch_index=
for ((i = 0; i < ${#install_args[@]}; i++)); do
    [ "${install_args[$i]}" = --torch-index ] && torch_index=${install_args[$((i + 1))]}
done
torch_note="torch and torchvision from the Dockerfile's index $torch_index"
if [ -n "$torch_index" ] && ! "$HOST_PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=10)" "$torch_index" 2>/dev/null; then
    [ "$TORCH_FROM_REQUIREMENTS" = 1 ] || fail "$torch_index is unreachable from here; rerun with --torch-from-requirements"
    install_args=()  # the same script without --torch-index: torch at requirements.txt's pin from PyPI
    torch_note="torch and torchvision from requirements.txt's pins through PyPI (--torch-from-requirements: $torch_index is unreachable here), not the CPU index"
fi
step "install: python -m venv $VENV; sh docker/install.sh ${install_args[*]:-} (the Dockerfile's: $install_line)"
"$HOST_PYTHON" -m venv "$VENV"
export PATH="$VENV/bin:$PATH"
started=$SECONDS
sh docker/install.sh "${install_args[@]}"
install_seconds=$((SECONDS - started))
[ "$(command -v python)" = "$VENV/bin/python" ] || fail "the venv's python is not the one on PATH"
echo "install took ${install_seconds} s"

# --- 2. PostgreSQL and Redis as compose.yaml starts them ------------------------------------------------------------
# compose.yaml's settings, with ${VAR:-default} as compose substitutes them when VAR is unset.
eval "$("$HOST_PYTHON" - <<'EOF'
import re, shlex, yaml

compose = yaml.safe_load(open("compose.yaml"))
def substitute(value):
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), str(value))
services = compose["services"]
pg = {k: substitute(v) for k, v in services["postgres"]["environment"].items()}
print(f"PG_USER={shlex.quote(pg['POSTGRES_USER'])} PG_PASSWORD={shlex.quote(pg['POSTGRES_PASSWORD'])}"
      f" PG_DB={shlex.quote(pg['POSTGRES_DB'])}")
redis = services["redis"]["command"]
assert redis[0] == "redis-server", redis
print("REDIS_ARGS=(" + " ".join(shlex.quote(a) for a in redis[1:]) + ")")
print("WORKER_COMMAND=(" + " ".join(shlex.quote(a) for a in services["worker"]["command"]) + ")")
env = {k: substitute(v) for k, v in services["dashboard"]["environment"].items()}
assert env == {k: substitute(v) for k, v in services["worker"]["environment"].items()}, "dashboard and worker differ"
print("COMPOSE_ENV=(" + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()) + ")")
volumes = services["worker"]["volumes"]
omniglot = [v for v in volumes if ":/data/omniglot" in v]
assert omniglot and omniglot[0].endswith(":ro"), f"Omniglot is not mounted read-only: {volumes}"
EOF
)"
PG_PORT=$(free_port)
REDIS_PORT=$(free_port)
step "PostgreSQL on 127.0.0.1:$PG_PORT (user $PG_USER, database $PG_DB), as the postgres user"
mkdir -p "$WORK/pg" "$WORK/pgsock" "$WORK/pglog" "$WORK/redis"
chown postgres "$WORK/pg" "$WORK/pgsock" "$WORK/pglog"
printf '%s\n' "$PG_PASSWORD" >"$WORK/pgpass" && chown postgres "$WORK/pgpass" && chmod 600 "$WORK/pgpass"
runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg" -U "$PG_USER" --pwfile="$WORK/pgpass" -A scram-sha-256 >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pglog/server.log" -w \
    -o "-p $PG_PORT -k $WORK/pgsock -c listen_addresses=127.0.0.1" start >/dev/null
PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "CREATE DATABASE $PG_DB"
"$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB"  # compose.yaml's health check

step "redis-server ${REDIS_ARGS[*]} on 127.0.0.1:$REDIS_PORT"
redis-server "${REDIS_ARGS[@]}" --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" --save "" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.2; done
redis-cli -p "$REDIS_PORT" ping  # compose.yaml's health check

# --- 3. The dashboard and the worker, with compose.yaml's environment ---------------------------------------------
OMNIGLOT_HOST=$(cd "$REPO" && OMP_NUM_THREADS=1 python -c "from core import settings; print(settings.omniglot_root())")
APP_ENV=()
for pair in "${COMPOSE_ENV[@]}"; do
    pair=${pair//@postgres:5432/@127.0.0.1:$PG_PORT}
    pair=${pair//redis:\/\/redis:6379/redis://127.0.0.1:$REDIS_PORT}
    # compose mounts the host's Omniglot at /data/omniglot; here the host's folder is used where it lies
    pair=${pair//=\/data\/omniglot/=$OMNIGLOT_HOST}
    APP_ENV+=("$pair")
done
APP_ENV+=(OMP_NUM_THREADS=1 HOME="$WORK")
echo "environment: ${APP_ENV[*]}"
DASHBOARD_PORT=$(free_port)
read -r -a DASHBOARD_COMMAND <<<"$("$HOST_PYTHON" - "$DASHBOARD_PORT" <<'EOF'
import json, shlex, sys

lines = [line for line in open("Dockerfile") if line.startswith("CMD ")]
command = json.loads(lines[-1][4:])
command = [a.replace("--server.port=8501", f"--server.port={sys.argv[1]}") for a in command]
print(" ".join(shlex.quote(a) for a in command))
EOF
)"
step "dashboard: ${DASHBOARD_COMMAND[*]} (the Dockerfile's CMD, port 8501 -> $DASHBOARD_PORT)"
env "${APP_ENV[@]}" "${DASHBOARD_COMMAND[@]}" >"$WORK/dashboard.log" 2>&1 &
PIDS+=($!)
DASHBOARD_PID=$!
step "worker: ${WORKER_COMMAND[*]} (compose.yaml's worker command)"
env "${APP_ENV[@]}" "${WORKER_COMMAND[@]}" >"$WORK/worker.log" 2>&1 &
PIDS+=($!)
WORKER_PID=$!

# --- 4. The Dockerfile's HEALTHCHECK command -----------------------------------------------------------------------
HEALTH_CODE=$("$HOST_PYTHON" - "$DASHBOARD_PORT" <<'EOF'
import json, re, sys

text = open("Dockerfile").read().replace("\\\n", " ")
command = json.loads(re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", text, re.M).group(1))
assert command[:2] == ["python", "-c"], command
print(command[2].replace(":8501/", f":{sys.argv[1]}/"))
EOF
)
step "health check: python -c \"$HEALTH_CODE\" (the Dockerfile's HEALTHCHECK, port -> $DASHBOARD_PORT)"
healthy=0
started=$SECONDS
while [ $((SECONDS - started)) -lt 300 ]; do
    kill -0 "$DASHBOARD_PID" 2>/dev/null || { tail -20 "$WORK/dashboard.log"; fail "the dashboard exited"; }
    if python -c "$HEALTH_CODE" 2>/dev/null; then healthy=1; break; fi
    sleep 1
done
[ "$healthy" = 1 ] || { tail -20 "$WORK/dashboard.log"; fail "no answer from /_stcore/health within 300 s"; }
status=$(python -c "import sys, urllib.request; print(urllib.request.urlopen(f'http://127.0.0.1:{sys.argv[1]}/_stcore/health').status)" "$DASHBOARD_PORT")
echo "GET /_stcore/health: $status after $((SECONDS - started)) s"
[ "$status" = 200 ] || fail "/_stcore/health answered $status"

# --- 5. A job through the store API, run by the worker -------------------------------------------------------------
step "a job: submit_job('evaluate', shipped conv4_maml checkpoint, 20 episodes) against PostgreSQL and Redis"
env "${APP_ENV[@]}" WORKER_PID="$WORKER_PID" python - <<'EOF'
import os
import time

from core.jobs import EvaluateJobArguments, get_job, submit_job
from core.settings import database_url

job_id = submit_job(
    "evaluate", EvaluateJobArguments("assets/checkpoints/conv4_maml.safetensors", episodes=20, device="cpu"),
    "prove_install",
)
print(f"submitted job {job_id} to {os.environ['FEWSHOT_JOBS_REDIS_URL']}, store {database_url()}")
deadline = time.monotonic() + 300
while not get_job(job_id).finished:
    if time.monotonic() > deadline:
        raise SystemExit(f"job {job_id} did not finish within 300 s: {get_job(job_id).status}")
    time.sleep(0.5)
job = get_job(job_id)
print(f"job {job_id}: {job.status}, worker {job.worker}, result {job.result}, error {job.error}")
assert job.status == "succeeded", job.error
assert job.worker.endswith(f":{os.environ['WORKER_PID']}"), f"run by {job.worker}, not the started worker"
EOF
PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" \
    -c "SELECT id, kind, status, worker, started_by FROM jobs" \
    -c "SELECT job_id, mean, ci95, episodes FROM evaluations"

step "stopping the dashboard, the worker, Redis and PostgreSQL"
kill "$WORKER_PID" "$DASHBOARD_PID"
wait "$WORKER_PID" "$DASHBOARD_PID" 2>/dev/null || true
echo "worker log (last lines):"
tail -5 "$WORK/worker.log"

torch_version=$(python -c "import torch; print(torch.__version__)")
index_unproved=
[ ${#install_args[@]} -gt 0 ] || index_unproved="  - that PyTorch's CPU index ($torch_index) serves the pinned torch and torchvision: it is unreachable here
"
cat <<EOF

PROVED here ($(date -u +%Y-%m-%dT%H:%MZ), $(python --version), pip $(python -m pip --version | cut -d' ' -f2)):
  - the images' install script docker/install.sh, called as the Dockerfile calls it, installs every requirement in a
    fresh venv (${install_seconds} s): torch $torch_version; $torch_note
  - compose.yaml's PostgreSQL (user, password, database) and Redis (its redis-server arguments) settings serve the app
  - the dashboard's command (the Dockerfile's CMD) starts with compose.yaml's environment and the Dockerfile's
    HEALTHCHECK command succeeds: GET /_stcore/health = 200
  - the worker's command (compose.yaml's) takes a job submitted through core.jobs.submit_job from Redis and runs it
    against PostgreSQL: the job succeeded, its row and its evaluation are in the database (above)
  - the job found Omniglot through compose.yaml's FEWSHOT_OMNIGLOT_ROOT (here the host's $OMNIGLOT_HOST, which
    compose mounts read-only at /data/omniglot)
NOT PROVED here (no Docker daemon, no GPU):
  - that the images build: their base images ($(grep -h '^FROM ' Dockerfile Dockerfile.cuda | cut -d' ' -f2 | paste -sd' '))
    and the CUDA image's apt install of python3.11 were not pulled or run
$index_unproved  - the CUDA runtime, the driver requirement and compose.gpu.yaml's GPU reservations
  - the non-root user (uid 10001): its permissions on /app, /app/data and the runs volume
  - compose's networking, volumes, depends_on ordering and restart policies; the health checks run by Docker
EOF
