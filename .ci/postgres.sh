# Sourced by .ci/run: starts a throwaway PostgreSQL server for the tests and exports
# SHOAL_TEST_POSTGRES=postgres://shoal:PASSWORD@127.0.0.1:PORT/shoal?sslmode=disable, which the
# run store's tests (store, store/postgres, cmd/shoal) use instead of starting clusters of their
# own. Installs Debian's postgresql if it is missing (as root). PostgreSQL refuses to run as
# root: as root, the cluster runs as the user 'postgres' that the package creates. The server
# is stopped and its directory removed when the sourcing shell exits (an EXIT trap).

shoal_pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ ! -x "$(shoal_pg_bindir)/initdb" ]; then
	if [ "$(id -u)" = 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
	else
		echo "PostgreSQL is missing and this is not root: apt-get install -y postgresql" >&2
		exit 1
	fi
fi
SHOAL_PG_BIN=$(shoal_pg_bindir)
SHOAL_PG_DIR=$(mktemp -d /tmp/shoal-ci-pg.XXXXXX)
SHOAL_PG_RUNAS=()
if [ "$(id -u)" = 0 ]; then
	id postgres >/dev/null 2>&1 || { echo "no user 'postgres' to run PostgreSQL as (it refuses root)" >&2; exit 1; }
	SHOAL_PG_RUNAS=(runuser -u postgres --)
	chown postgres: "$SHOAL_PG_DIR"
fi
shoal_pg() { (cd "$SHOAL_PG_DIR" && "${SHOAL_PG_RUNAS[@]}" "$SHOAL_PG_BIN/$1" "${@:2}"); }
shoal_pg_stop() {
	shoal_pg pg_ctl -D "$SHOAL_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
	rm -rf "$SHOAL_PG_DIR"
}
trap shoal_pg_stop EXIT

SHOAL_PG_PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$SHOAL_PG_PASSWORD" >"$SHOAL_PG_DIR/pw"
[ "$(id -u)" = 0 ] && chown postgres: "$SHOAL_PG_DIR/pw"
shoal_pg initdb -D "$SHOAL_PG_DIR/data" -U shoal --pwfile="$SHOAL_PG_DIR/pw" --auth-host=scram-sha-256 \
	--auth-local=trust --locale=C -E UTF8 --no-sync >"$SHOAL_PG_DIR/initdb.log" 2>&1 ||
	{ cat "$SHOAL_PG_DIR/initdb.log" >&2; exit 1; }
rm -f "$SHOAL_PG_DIR/pw"
# A random port; another program may hold it, so a failed start tries another.
for try in 1 2 3 4 5; do
	SHOAL_PG_PORT=$((20000 + RANDOM % 40000))
	if shoal_pg pg_ctl -D "$SHOAL_PG_DIR/data" -l "$SHOAL_PG_DIR/log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -c port=$SHOAL_PG_PORT -c unix_socket_directories=$SHOAL_PG_DIR -c max_connections=100" \
		start >/dev/null; then
		break
	fi
	[ "$try" = 5 ] && { cat "$SHOAL_PG_DIR/log" >&2; exit 1; }
done
shoal_pg psql -X -q -h "$SHOAL_PG_DIR" -p "$SHOAL_PG_PORT" -U shoal -d postgres -c 'CREATE DATABASE shoal'
export SHOAL_TEST_POSTGRES="postgres://shoal:$SHOAL_PG_PASSWORD@127.0.0.1:$SHOAL_PG_PORT/shoal?sslmode=disable"
echo "PostgreSQL $("$SHOAL_PG_BIN/postgres" --version | awk '{print $3}') for the tests on 127.0.0.1:$SHOAL_PG_PORT (SHOAL_TEST_POSTGRES)"
