#!/usr/bin/env bash
# A local cluster for lstm-digits: munge, a one-node SLURM, PostgreSQL and an MLflow server
# backed by it (artifacts served through the server), for the tests and for trying
# `hydra/launcher=slurm` on one machine.
#
#   cluster/cluster.sh up              start what is not running (as root; installs missing
#                                      Debian packages) and print the MLFLOW_TRACKING_URI
#   cluster/cluster.sh down [--purge]  stop it all; --purge also drops the database and removes
#                                      the state directory and the rendered slurm.conf
#   cluster/cluster.sh status          one line per service; exit 0 when all run, 3 otherwise
#
# Environment:
#   LSTM_DIGITS_CLUSTER_DIR     state directory (default /tmp/lstm-digits-cluster)
#   LSTM_DIGITS_CLUSTER_PORT    the MLflow server's port on 127.0.0.1 (default 5055)
#   LSTM_DIGITS_CLUSTER_PYTHON  the Python that runs `mlflow server` (default the checkout's .venv)
#
# The state directory holds cluster.env (KEY=VALUE lines, written by `up`, removed by `down`:
# MLFLOW_TRACKING_URI=http://127.0.0.1:PORT), db-password (mode 0600), slurm.conf (a copy of
# /etc/slurm/slurm.conf, which slurm and every sbatch read), artifacts/, log/, run/ (pid files)
# and lock (held by `up` and `down`).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
checkout=$(dirname "$here")
state=${LSTM_DIGITS_CLUSTER_DIR:-/tmp/lstm-digits-cluster}
port=${LSTM_DIGITS_CLUSTER_PORT:-5055}
python=${LSTM_DIGITS_CLUSTER_PYTHON:-$checkout/.venv/bin/python}
uri=http://127.0.0.1:$port
slurm_conf=/etc/slurm/slurm.conf
conf_marker="# A one-node SLURM for lstm-digits"  # the template's first line: a slurm.conf of ours
db=mlflow                                        # PostgreSQL role and database of the server
PATH=$PATH:/usr/sbin:/sbin                       # slurmd, munged for a non-root status

die() {
	echo "cluster: $*" >&2
	exit 1
}

# wait_for SECONDS WHAT COMMAND...: poll COMMAND until it succeeds, or fail naming WHAT.
wait_for() {
	local seconds=$1 what=$2
	local deadline=$((SECONDS + seconds))
	shift 2
	until "$@"; do
		((SECONDS < deadline)) || die "$what did not come up within $seconds s; logs in $state/log"
		sleep 0.2
	done
}

# Through /proc rather than kill -0, which a non-root status may not send to root's daemons.
pid_alive() { [[ -s $1 && -d /proc/$(cat "$1") ]]; }

# stop_pid FILE: SIGTERM the process of a pid file (and its process group when it leads one),
# SIGKILL after 10 s.
stop_pid() {
	local file=$1 pid target
	pid_alive "$file" || {
		rm -f "$file"
		return 0
	}
	pid=$(cat "$file")
	target=$pid
	[[ $(ps -o pgid= -p "$pid" | tr -d ' ') == "$pid" ]] && target=-$pid
	kill -TERM -- "$target" 2>/dev/null || true
	for _ in {1..50}; do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "$target" 2>/dev/null || true; fi
	rm -f "$file"
}

require_root() { [[ $EUID -eq 0 ]] || die "$1"; }

# daemon COMMAND...: start a service without the lock `locked` holds on fd 9, which it would
# otherwise inherit and keep for its whole life, blocking every later `up` and `down`.
daemon() { "$@" 9>&-; }

# --- packages ---------------------------------------------------------------------------------

missing_packages() {
	local missing=()
	[[ -x /usr/sbin/slurmctld && -x /usr/sbin/slurmd && -x /usr/bin/sbatch ]] || missing+=(slurm-wlm)
	[[ -x /usr/sbin/munged ]] || missing+=(munge)
	[[ -x /usr/bin/pg_ctlcluster ]] && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null ||
		missing+=(postgresql)
	echo "${missing[@]}"
}

install_packages() {
	local missing
	missing=$(missing_packages)
	[[ -z $missing ]] && return 0
	if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
		die "install $missing (apt-get install, as root) to run the local cluster"
	fi
	mkdir -p "$state/log"
	# shellcheck disable=SC2086  # one word per package
	if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing; } \
		>"$state/log/apt.log" 2>&1; then
		tail -n 20 "$state/log/apt.log" >&2
		die "installing $missing failed (log: $state/log/apt.log)"
	fi
}

# --- munge ------------------------------------------------------------------------------------

munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
	munge_ok && return 0
	local key=/etc/munge/munge.key
	if [[ ! -s $key ]]; then
		install -d -o munge -g munge -m 0700 /etc/munge
		mungekey --create --keyfile="$key"
	fi
	chown munge:munge "$key"
	chmod 0400 "$key"
	install -d -o munge -g munge -m 0755 /run/munge
	daemon runuser -u munge -- /usr/sbin/munged
	touch "$state/run/munged.started"
	wait_for 10 munged munge_ok
}

stop_munge() {
	# Only a munged that `up` started: another SLURM on this machine may rely on its own.
	[[ -e $state/run/munged.started ]] || return 0
	stop_pid /run/munge/munged.pid
	rm -f "$state/run/munged.started"
}

# --- SLURM ------------------------------------------------------------------------------------

ctld_ok() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

node_usable() {
	local node_state
	node_state=$(sinfo -h -o %T 2>/dev/null | head -n 1)
	[[ $node_state =~ ^(idle|mixed|allocated|completing)$ ]]
}

# The node line of slurm.conf as slurmd measures this machine: NodeName=... CPUs=... RealMemory=...
render_slurm_conf() {
	local node cpus mem
	node=$(slurmd -C | head -n 1)
	cpus=$(sed -E 's/.* CPUs=([0-9]+).*/\1/' <<<"$node")
	mem=$(sed -E 's/.* RealMemory=([0-9]+).*/\1/' <<<"$node")
	((mem >= 4096)) || echo "cluster: this node has ${mem} MB; the slurm launcher asks for" \
		"mem_gb: 4 (override hydra.launcher.mem_gb)" >&2
	sed -e "s|@STATE@|$state|g" -e "s|@HOST@|$(hostname -s)|g" -e "s|@NODE@|$node|" \
		-e "s|@DEF_MEM_PER_CPU@|$((mem / cpus))|" "$here/slurm.conf.in" >"$state/slurm.conf"
	cmp -s "$state/slurm.conf" "$slurm_conf" && return 0
	if [[ -e $slurm_conf ]] && ! grep -qF "$conf_marker" "$slurm_conf"; then
		die "$slurm_conf was not written by cluster.sh: this machine has a SLURM of its own"
	fi
	if ctld_ok && ! pid_alive "$state/run/slurmctld.pid"; then
		die "SLURM runs with another $slurm_conf (another LSTM_DIGITS_CLUSTER_DIR?):" \
			"run cluster.sh down with that one first"
	fi
	install -D -m 0644 "$state/slurm.conf" "$slurm_conf"
	# A template edited while up: the daemons reread it (a new node line needs down and up).
	if ctld_ok; then scontrol reconfigure; fi
}

start_slurm() {
	render_slurm_conf
	install -d -m 0755 /var/spool/slurmctld /var/spool/slurmd
	if ! ctld_ok; then
		daemon slurmctld
		wait_for 30 slurmctld ctld_ok
	fi
	pid_alive "$state/run/slurmd.pid" || daemon slurmd
	local deadline=$((SECONDS + 30))
	until node_usable; do
		# A node left down or drained by an earlier run comes back on request.
		[[ $(sinfo -h -o %T | head -n 1) =~ ^(down|drained|draining) ]] &&
			scontrol update NodeName="$(hostname -s)" State=RESUME 2>/dev/null
		((SECONDS < deadline)) || die "the SLURM node is $(sinfo -h -o %T); logs in $state/log"
		sleep 0.2
	done
}

stop_slurm() {
	if ctld_ok; then
		local jobs
		jobs=$(squeue -h -o %A)
		if [[ -n $jobs ]]; then
			# shellcheck disable=SC2086  # one word per job id
			scancel $jobs || true
			local deadline=$((SECONDS + 30))
			while [[ -n $(squeue -h -o %A) ]] && ((SECONDS < deadline)); do sleep 0.5; done
		fi
		scontrol shutdown >/dev/null || true
	fi
	# scontrol shutdown ends slurmctld and slurmd; the pid files catch what it could not reach.
	for daemon in slurmd slurmctld; do
		for _ in {1..50}; do
			pid_alive "$state/run/$daemon.pid" || break
			sleep 0.2
		done
		stop_pid "$state/run/$daemon.pid"
	done
}

# --- PostgreSQL -------------------------------------------------------------------------------

# The first cluster pg_lsclusters lists: "VERSION NAME PORT STATUS" (Debian's 15 main 5432 ...).
pg_cluster() { { pg_lsclusters -h 2>/dev/null || true; } | awk 'NR == 1 {print $1, $2, $3, $4}'; }

pg_admin() { (cd / && runuser -u postgres -- psql -qAtX -v ON_ERROR_STOP=1 -p "$pg_port" "$@"); }

start_postgres() {
	if [[ -z $(pg_cluster) ]]; then
		local version
		version=$(basename "$(dirname "$(dirname "$(compgen -G '/usr/lib/postgresql/*/bin/postgres' |
			sort -V | tail -n 1)")")")
		pg_createcluster "$version" main >/dev/null
	fi
	read -r pg_version pg_name pg_port pg_status <<<"$(pg_cluster)"
	if [[ $pg_status != online ]]; then
		daemon pg_ctlcluster "$pg_version" "$pg_name" start
		touch "$state/run/postgresql.started"
	fi
	wait_for 30 PostgreSQL pg_isready -q -h 127.0.0.1 -p "$pg_port"

	local password=$state/db-password
	if [[ ! -s $password ]]; then
		(umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$password")
	fi
	# The password goes through stdin, never a command line; the file is its one source.
	[[ $(pg_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$db'") == 1 ]] ||
		pg_admin -c "CREATE ROLE $db LOGIN"
	printf "ALTER ROLE %s PASSWORD '%s';\n" "$db" "$(cat "$password")" | pg_admin
	[[ $(pg_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'") == 1 ]] ||
		pg_admin -c "CREATE DATABASE $db OWNER $db"
}

stop_postgres() {
	local purge=$1 cluster
	cluster=$(pg_cluster)
	[[ -n $cluster ]] || return 0
	read -r pg_version pg_name pg_port pg_status <<<"$cluster"
	if [[ $purge == 1 ]]; then
		if [[ $pg_status != online ]]; then
			daemon pg_ctlcluster "$pg_version" "$pg_name" start
			touch "$state/run/postgresql.started"
			wait_for 30 PostgreSQL pg_isready -q -h 127.0.0.1 -p "$pg_port"
		fi
		pg_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "DROP ROLE IF EXISTS $db"
	fi
	# Only a PostgreSQL that `up` started: others on this machine may use it.
	if [[ -e $state/run/postgresql.started ]]; then
		if [[ $(pg_cluster | awk '{print $4}') == online ]]; then
			pg_ctlcluster "$pg_version" "$pg_name" stop
		fi
		rm -f "$state/run/postgresql.started"
	fi
}

# --- MLflow server ----------------------------------------------------------------------------

mlflow_ok() { curl -fsS -m 2 "$uri/health" >/dev/null 2>&1; }

start_mlflow() {
	mlflow_ok && return 0
	if curl -s -m 2 -o /dev/null "$uri/" 2>/dev/null; then
		die "port $port answers but is no MLflow server of ours: set LSTM_DIGITS_CLUSTER_PORT"
	fi
	[[ -x $python ]] || die "no $python: run \`make install\` (or set LSTM_DIGITS_CLUSTER_PYTHON)"
	if ! "$python" -c 'import psycopg' 2>/dev/null; then
		# SQLAlchemy maps postgresql:// to psycopg 3: the checkout's postgres extra.
		"$python" -m pip install --quiet -e "${checkout}[postgres]" >"$state/log/pip.log" 2>&1 ||
			die "installing the postgres extra failed (log: $state/log/pip.log)"
	fi
	mkdir -p "$state/artifacts"
	# Its own session, so that it outlives make and `down` can end its worker with it. The
	# store URI goes through the environment, not the command line that `ps` shows.
	(
		cd "$state"
		exec 9>&- # the lock stays with this script (see `locked`)
		MLFLOW_BACKEND_STORE_URI="postgresql://$db:$(cat "$state/db-password")@127.0.0.1:$pg_port/$db" \
			MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
			setsid "$python" -m mlflow server --artifacts-destination "$state/artifacts" \
			--host 127.0.0.1 --port "$port" --workers 1 </dev/null >"$state/log/mlflow.log" 2>&1 &
		echo $! >"$state/run/mlflow.pid"
	)
	local deadline=$((SECONDS + 120))
	until mlflow_ok; do
		pid_alive "$state/run/mlflow.pid" || {
			tail -n 20 "$state/log/mlflow.log" >&2
			die "the MLflow server exited (log: $state/log/mlflow.log)"
		}
		((SECONDS < deadline)) || die "the MLflow server did not answer within 120 s (log: $state/log/mlflow.log)"
		sleep 0.2
	done
}

# --- commands ---------------------------------------------------------------------------------

up() {
	install_packages
	require_root "cluster up needs root: it writes $slurm_conf and starts munged, SLURM and PostgreSQL"
	mkdir -p "$state/log" "$state/run"
	start_munge
	start_slurm
	start_postgres
	start_mlflow
	printf '# Written by cluster/cluster.sh up, removed by down.\nMLFLOW_TRACKING_URI=%s\n' "$uri" \
		>"$state/cluster.env"
	local name cpus mem
	read -r name cpus mem <<<"$(sinfo -h -N -o '%N %c %m' | head -n 1)"
	echo "cluster up: SLURM node $name ($cpus CPUs, $mem MB, partition debug)," \
		"PostgreSQL $pg_version/$pg_name, MLflow server on it"
	echo "export MLFLOW_TRACKING_URI=$uri  # also in $state/cluster.env"
}

down() {
	local purge=0
	case ${1:-} in
	--purge) purge=1 ;;
	"") ;;
	*) die "unknown option $1 (allowed: --purge)" ;;
	esac
	require_root "cluster down needs root: it stops munged, SLURM and PostgreSQL"
	mkdir -p "$state/run"
	rm -f "$state/cluster.env"
	stop_pid "$state/run/mlflow.pid"
	if [[ -x /usr/bin/scontrol ]]; then stop_slurm; fi
	if [[ -x /usr/bin/pg_lsclusters ]]; then stop_postgres "$purge"; fi
	if [[ -x /usr/sbin/munged ]]; then stop_munge; fi
	if [[ $purge == 1 ]]; then
		if grep -qsF "$conf_marker" "$slurm_conf"; then rm -f "$slurm_conf"; fi
		rm -rf "$state" /var/spool/slurmctld /var/spool/slurmd
	fi
}

status() {
	local all=0 line
	say() { printf '%-11s %s\n' "$1" "$2"; }
	# run NAME DETAIL COMMAND...: one line, running or not.
	run() {
		local name=$1 detail=$2
		shift 2
		if "$@"; then say "$name" "running${detail:+ ($detail)}"; else
			say "$name" "not running"
			all=3
		fi
	}
	run munged "" munge_ok
	if [[ -x /usr/bin/scontrol ]]; then
		run slurmctld "" ctld_ok
		line=""
		ctld_ok && line=$(sinfo -h -N -o '%N %T, %c CPUs, %m MB' 2>/dev/null | head -n 1 || true)
		run slurmd "$line" pid_alive "$state/run/slurmd.pid"
	else
		say slurm "not installed"
		all=3
	fi
	line=$(pg_cluster)
	run postgresql "$(awk '{print $1 "/" $2 ", port " $3}' <<<"$line")" \
		[ "$(awk '{print $4}' <<<"$line")" == online ]
	run mlflow "$uri" mlflow_ok
	return "$all"
}

# One `up` or `down` at a time (two test sessions, two shells): each holds the state
# directory's lock, so that neither starts a second server whose pid file the other overwrites.
locked() {
	mkdir -p "$state"
	exec 9>"$state/lock"
	flock 9
	"$@"
}

case ${1:-} in
up) locked up ;;
down) locked down "${2:-}" ;;
status) status ;;
*)
	echo "usage: $0 up | down [--purge] | status" >&2
	exit 2
	;;
esac
