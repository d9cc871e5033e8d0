#!/usr/bin/env bash
# A local cluster for lstm-digits: munge, a one-node SLURM, PostgreSQL and an MLflow server
# backed by it (artifacts served through the server) that lets in only its users (MLflow's
# basic-auth app), for the tests and for trying `hydra/launcher=slurm` on one machine.
#
#   cluster/cluster.sh up              start what is not running (as root; installs missing
#                                      Debian packages) and print the MLFLOW_TRACKING_URI
#   cluster/cluster.sh down [--purge]  stop it all; --purge also drops the databases and removes
#                                      the state directory and the rendered slurm.conf
#   cluster/cluster.sh status          one line per service; exit 0 when all run, 3 otherwise
#   cluster/cluster.sh user NAME       add a teammate NAME to the server (a new password for
#                                      NAME if they are one): the password goes to users/NAME
#
# Environment:
#   LSTM_DIGITS_CLUSTER_DIR     state directory (default /tmp/lstm-digits-cluster)
#   LSTM_DIGITS_CLUSTER_PORT    the MLflow server's port on 127.0.0.1 (default 5055)
#   LSTM_DIGITS_CLUSTER_PYTHON  the Python that runs `mlflow server` (default the checkout's .venv)
#
# The state directory holds cluster.env (KEY=VALUE lines, written by `up`, removed by `down`:
# MLFLOW_TRACKING_URI=http://127.0.0.1:PORT), the secrets,
# each generated once, mode 0600, and never printed or put on a command line (db-password,
# admin-password, secret-key: the server's key for its forms' CSRF tokens; users/NAME),
# basic_auth.ini (the auth app's settings, no secret), slurm.conf (a copy of
# /etc/slurm/slurm.conf, which slurm and every sbatch read), artifacts/, log/, run/ (pid files)
# and lock (held by `up`, `down` and `user`).
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
auth_db=mlflow_auth                              # its users and permissions (the auth app's)
admin=admin                                      # the server's first user, its administrator
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

# secret FILE: FILE made once with 24 random bytes in hex, mode 0600; its path printed. One
# that is a link, or not ours alone, is refused: someone else may know what it holds.
secret() {
	if [[ -L $1 ]] || { [[ -e $1 ]] && { [[ ! -O $1 ]] || [[ $(stat -c %a "$1") != 600 ]]; }; }; then
		die "$1 is not a file of ours alone (mode 0600): remove it, then try again"
	fi
	if [[ ! -s $1 ]]; then
		mkdir -p "$(dirname "$1")"
		(umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$1")
	fi
	echo "$1"
}

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

	local password
	password=$(secret "$state/db-password")
	# The password goes through stdin, never a command line; the file is its one source.
	[[ $(pg_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$db'") == 1 ]] ||
		pg_admin -c "CREATE ROLE $db LOGIN"
	printf "ALTER ROLE %s PASSWORD '%s';\n" "$db" "$(cat "$password")" | pg_admin
	local name
	for name in "$db" "$auth_db"; do # the runs; the server's users and their permissions
		[[ $(pg_admin -c "SELECT 1 FROM pg_database WHERE datname = '$name'") == 1 ]] ||
			pg_admin -c "CREATE DATABASE $name OWNER $db"
	done
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
		pg_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
			-c "DROP DATABASE IF EXISTS $auth_db WITH (FORCE)" -c "DROP ROLE IF EXISTS $db"
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

# The HTTP status of an API request to the server: api PATH [USER PASSWORD-FILE [METHOD JSON]].
# The credentials and the body reach curl through its config on stdin, never a command line.
api() {
	local path=$1 user=${2:-} password_file=${3:-} method=${4:-GET} json=${5:-}
	{
		[[ -n $user ]] && printf 'user = "%s:%s"\n' "$user" "$(cat "$password_file")"
		[[ -n $json ]] && printf 'header = "Content-Type: application/json"\ndata = "%s"\n' \
			"${json//\"/\\\"}"
		printf 'request = "%s"\nurl = "%s"\n' "$method" "$uri/api/2.0/mlflow/$path"
	} | curl -sS -m 10 -o /dev/null -w '%{http_code}' -K - 2>/dev/null || true # 000: no answer
}

# Whether the server that answers is ours: it lets in no one without credentials.
mlflow_guarded() { [[ $(api "experiments/search?max_results=1") == 401 ]]; }

start_mlflow() {
	if mlflow_ok && ! mlflow_guarded && pid_alive "$state/run/mlflow.pid"; then
		stop_pid "$state/run/mlflow.pid" # ours from before the auth app: started again with it
	fi
	if ! mlflow_ok; then
		if curl -s -m 2 -o /dev/null "$uri/" 2>/dev/null; then
			die "port $port answers but is no MLflow server of ours: set LSTM_DIGITS_CLUSTER_PORT"
		fi
		launch_mlflow
	fi
	mlflow_guarded || die "the MLflow server on port $port lets in anyone: it is not ours" \
		"(stop it, or set LSTM_DIGITS_CLUSTER_PORT)"
	[[ $(api "users/get?username=$admin" "$admin" "$state/admin-password") == 200 ]] ||
		die "the server's admin does not take the password in $state/admin-password (its users" \
			"are in PostgreSQL's $auth_db): \`cluster.sh down --purge\` starts afresh"
}

launch_mlflow() {
	[[ -x $python ]] || die "no $python: run \`make install\` (or set LSTM_DIGITS_CLUSTER_PYTHON)"
	if ! "$python" -c 'import psycopg, flask_wtf' 2>/dev/null; then
		# SQLAlchemy maps postgresql:// to psycopg 3; the auth app needs Flask-WTF.
		"$python" -m pip install --quiet -e "${checkout}[postgres,auth]" >"$state/log/pip.log" 2>&1 ||
			die "installing the postgres and auth extras failed (log: $state/log/pip.log)"
	fi
	mkdir -p "$state/artifacts"
	# MLflow's basic-auth app: users and their permissions in PostgreSQL; a user may read every
	# experiment and model, and writes only to those they made or were given. Checking a
	# password is a PBKDF2 hash, on every request: a checked one is cached for a minute. One
	# worker: a password changed or a user deleted through the API is dropped from it at once.
	cat >"$state/basic_auth.ini" <<-EOF
		[mlflow]
		default_permission = READ
		database_uri = postgresql://$db@127.0.0.1:$pg_port/$auth_db
		admin_username = $admin
		authorization_function = mlflow.server.auth:authenticate_request_basic_auth
		auth_cache_ttl_seconds = 60
	EOF
	secret "$state/admin-password" >/dev/null
	secret "$state/secret-key" >/dev/null
	# Its own session, so that it outlives make and `down` can end its worker with it. The
	# secrets go through the environment, not the command line that `ps` shows: the store's
	# URI, the database password (PGPASSWORD, for the users' database), the admin's first
	# password (used once, when the users' database is new) and the forms' key.
	(
		cd "$state"
		exec 9>&- # the lock stays with this script (see `locked`)
		MLFLOW_BACKEND_STORE_URI="postgresql://$db:$(cat "$state/db-password")@127.0.0.1:$pg_port/$db" \
			PGPASSWORD=$(cat "$state/db-password") \
			MLFLOW_AUTH_CONFIG_PATH="$state/basic_auth.ini" \
			MLFLOW_AUTH_ADMIN_PASSWORD=$(cat "$state/admin-password") \
			MLFLOW_FLASK_SERVER_SECRET_KEY=$(cat "$state/secret-key") \
			MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
			setsid "$python" -m mlflow server --app-name basic-auth \
			--artifacts-destination "$state/artifacts" \
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

# user NAME: add NAME to the server with a new password (a user already: a new password), kept
# in users/NAME, mode 0600, for the admin to hand over. The file changes only once the server
# has taken the password: a refusal leaves the one that works.
user() {
	local name=${1:-}
	[[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._@-]*$ ]] ||
		die "usage: $0 user NAME (letters, digits and . _ @ -)"
	[[ $name != "$admin" ]] || die "$admin is the server's administrator (its password: $state/admin-password)"
	mlflow_ok || die "the MLflow server is not running: cluster.sh up first"
	local file=$state/users/$name new=$state/users/.$name.new
	rm -f "$new"
	secret "$new" >/dev/null
	local body code
	body="{\"username\": \"$name\", \"password\": \"$(cat "$new")\"}"
	code=$(api users/create "$admin" "$state/admin-password" POST "$body")
	if [[ $code == 400 ]]; then # a user already: a new password
		code=$(api users/update-password "$admin" "$state/admin-password" PATCH "$body")
	fi
	if [[ $code != 200 ]]; then
		rm -f "$new"
		die "the server refused to add $name (HTTP ${code:-000}; log: $state/log/mlflow.log)"
	fi
	mv -f "$new" "$file"
	echo "user $name can sign in to $uri: their password is in $file (mode 0600); hand it" \
		"over privately. They write to the experiments and models they create; they read all."
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
	echo "export MLFLOW_TRACKING_USERNAME=$admin" \
		"MLFLOW_TRACKING_PASSWORD=\$(cat $state/admin-password)  # the server's admin"
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
	line=$uri
	mlflow_ok && mlflow_guarded && line+=", sign-in: basic-auth"
	run mlflow "$line" mlflow_ok
	return "$all"
}

# One `up` or `down` at a time (two test sessions, two shells): each holds the state
# directory's lock, so that neither starts a second server whose pid file the other overwrites.
locked() {
	mkdir -p -m 0755 "$state"
	# In /tmp by default: one another user made first could hold secrets they chose.
	if [[ -L $state || ! -O $state ]] || [[ -n $(find "$state" -maxdepth 0 -perm /022) ]]; then
		die "$state is not a directory of ours that only we write: remove it, or set LSTM_DIGITS_CLUSTER_DIR"
	fi
	exec 9>"$state/lock"
	flock 9
	"$@"
}

case ${1:-} in
up) locked up ;;
down) locked down "${2:-}" ;;
status) status ;;
user) locked user "${2:-}" ;;
*)
	echo "usage: $0 up | down [--purge] | status | user NAME" >&2
	exit 2
	;;
esac
