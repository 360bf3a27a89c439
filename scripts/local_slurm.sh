#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, with accounting (sacct), for trying and testing the SLURM launchers:
#   scripts/local_slurm.sh up      install slurm-wlm, slurmdbd, munge and mariadb-server where missing (apt-get, as
#                                  root or with sudo), configure this host as one node of partition "debug", start
#                                  the daemons and wait until the node is idle
#   scripts/local_slurm.sh down    stop exactly the daemons `up` started and remove what it wrote
#   scripts/local_slurm.sh status  whether the cluster is up
#   scripts/local_slurm.sh install only install the packages (make test does, where apt-get can; its SLURM tests
#                                  then start the cluster, and stop it after if they started it)
# `make slurm-up` / `make slurm-down` run it. Everything it writes is in $EXPERIMENTS_SLURM_DIR (default
# outputs/slurm/) but /etc/slurm/slurm.conf, a link to its configuration there (where the SLURM commands look for
# one), which `up` refuses to write over and `down` removes.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${EXPERIMENTS_SLURM_DIR:-$ROOT/outputs/slurm}
CONF=/etc/slurm/slurm.conf
STARTED=$STATE/started          # one line per daemon this script started: name pidfile
PACKAGES="slurm-wlm slurmdbd munge mariadb-server"

fail() { echo "error: $*" >&2; exit 2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

install_packages() {
    local missing=()
    for command in slurmctld slurmd slurmdbd munged mariadbd; do
        command -v "$command" >/dev/null 2>&1 || [ -x "/usr/sbin/$command" ] || missing+=("$command")
    done
    [ ${#missing[@]} = 0 ] && return
    command -v apt-get >/dev/null || fail "SLURM is not installed (${missing[*]} missing) and apt-get is not here: install $PACKAGES"
    [ "$(id -u)" = 0 ] || command -v sudo >/dev/null || fail "installing $PACKAGES needs root or sudo"
    echo "installing $PACKAGES"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PACKAGES >/dev/null
}

is_up() { [ -f "$STARTED" ] && [ -L "$CONF" ] && sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }

write_configuration() {
    local host cpus memory
    host=$(hostname -s)
    cpus=$(nproc --all)
    memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))  # MB, a tenth left to the system
    mkdir -p "$STATE"/{ctld,spool,db}
    cat > "$STATE/slurm.conf" <<EOF
# A one-node cluster for trying the SLURM launchers (scripts/local_slurm.sh); partition debug is the default.
ClusterName=experiments
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat > "$STATE/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$STATE/slurmdbd.conf"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    fail "$what did not come up within $seconds s (logs in $STATE)"
}

started() { echo "$1 $2" >> "$STARTED"; }

start_munge() {
    if pgrep -x munged >/dev/null; then return; fi  # the machine's own: left as it is
    mkdir -p /run/munge && chown munge:munge /run/munge
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    started munged /run/munge/munged.pid
}

start_database() {
    [ -d "$STATE/db/mysql" ] || mariadb-install-db --user=root --datadir="$STATE/db" --auth-root-authentication-method=normal >"$STATE/db-install.log" 2>&1
    /usr/sbin/mariadbd --user=root --datadir="$STATE/db" --socket="$STATE/db.sock" --pid-file="$STATE/db.pid" \
        --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve --log-error="$STATE/db.log" 2>>"$STATE/db.log" &
    started mariadbd "$STATE/db.pid"
    wait_for 30 "mariadb" mariadb --socket="$STATE/db.sock" -u root -e "select 1"
}

up() {
    if is_up; then echo "the local SLURM cluster is up: $(sinfo -h -o '%P %N %T')"; return; fi
    install_packages
    if [ -e "$CONF" ] && [ "$(readlink "$CONF")" != "$STATE/slurm.conf" ]; then
        fail "$CONF exists: this machine has a SLURM configuration of its own; use that cluster (hydra.launcher.partition=...)"
    fi
    [ "$(id -u)" = 0 ] || fail "starting SLURM's daemons needs root (sudo make slurm-up)"
    mkdir -p "$STATE"
    : > "$STARTED"
    DB_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    write_configuration
    ln -sfn "$STATE/slurm.conf" "$CONF"
    start_munge
    start_database
    SLURM_CONF=$STATE/slurm.conf /usr/sbin/slurmdbd  # its slurmdbd.conf: beside the slurm.conf it is given
    started slurmdbd "$STATE/slurmdbd.pid"
    wait_for 30 "slurmdbd" sacctmgr -i list cluster
    sacctmgr -i add cluster experiments >/dev/null 2>&1 || true
    /usr/sbin/slurmctld
    started slurmctld "$STATE/slurmctld.pid"
    /usr/sbin/slurmd
    started slurmd "$STATE/slurmd.pid"
    wait_for 60 "the node" sh -c "sinfo -h -o %T | grep -qx idle"
    echo "the local SLURM cluster is up: $(sinfo -h -o '%P %N %T %c CPUs %m MB')"
}

down() {
    if [ -f "$STARTED" ]; then
        tac "$STARTED" | while read -r name pidfile; do  # the last started first
            [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
            for _ in $(seq 100); do pgrep -x "$name" >/dev/null || break; sleep 0.1; done
        done
    fi
    [ -L "$CONF" ] && [ "$(readlink "$CONF")" = "$STATE/slurm.conf" ] && rm -f "$CONF"
    rm -rf "$STATE"
    echo "the local SLURM cluster is down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    install) install_packages ;;
    status) if is_up; then sinfo -h -o '%P %N %T'; else echo "down"; exit 1; fi ;;
    *) echo "usage: $0 up|down|status|install" >&2; exit 2 ;;
esac
