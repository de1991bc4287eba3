#!/bin/sh
# First run: install what is missing (Debian), build, start scardd with two
# ifd-virtual readers (a card in the first) on a socket in a runtime
# directory, and show `scard list`. Run it again to restart; --stop stops it.
#
#   scripts/first-run-virtual.sh [--stop]
#
# Environment: SCARDD_BUILD (build dir, default <repo>/build),
#              SCARDD_RUNDIR (default $XDG_RUNTIME_DIR/scardd or /tmp/scardd-<uid>).
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${SCARDD_BUILD:-$REPO/build}
if [ -n "${SCARDD_RUNDIR:-}" ]; then
	RUNDIR=$SCARDD_RUNDIR
elif [ -n "${XDG_RUNTIME_DIR:-}" ] && [ -d "$XDG_RUNTIME_DIR" ]; then
	RUNDIR=$XDG_RUNTIME_DIR/scardd
else
	RUNDIR=/tmp/scardd-$(id -u)
fi
SOCKET=$RUNDIR/pcscd.comm
PIDFILE=$RUNDIR/scardd.pid

say() { printf '%s\n' "$*"; }
die() { printf 'first-run: %s\n' "$*" >&2; exit 1; }

# Stops the scardd this script started, if it still runs (by its pid, checked).
stop_ours() {
	[ -f "$PIDFILE" ] || return 0
	pid=$(cat "$PIDFILE")
	if [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = scardd ]; then
		kill "$pid"
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	fi
	rm -f "$PIDFILE"
}

if [ "${1:-}" = --stop ]; then
	stop_ours
	say "scardd stopped."
	exit 0
fi

# 1. Packages (Debian 12): build tools, test tools, and PC/SC programs to try.
PKGS="meson ninja-build gcc pkg-config libexpat1-dev libcmocka-dev clang
      libpcsclite1 pcsc-tools python3-pyscard python3-pytest opensc"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	say "Installing:$missing"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

# 2. Build.
if [ ! -f "$BUILD/build.ninja" ]; then
	meson setup "$BUILD" "$REPO" >/dev/null
fi
ninja -C "$BUILD" >/dev/null || die "build failed: run 'ninja -C $BUILD' to see why"
SCARDD=$BUILD/src/daemon/scardd
SCARD=$BUILD/src/tools/scard
DRIVER=$BUILD/src/drivers/virtual/libifd-virtual.so

# 3. Configuration: two virtual readers, the built-in demo card in the first.
mkdir -p "$RUNDIR/reader.conf.d"
chmod 700 "$RUNDIR"
cat >"$RUNDIR/virtual.conf" <<EOF
# ifd-virtual (see src/drivers/virtual/CARD-FORMAT.md)
readers = 2
control = $RUNDIR/virtual.sock
card.0 = builtin
card.1 = none
EOF
cat >"$RUNDIR/reader.conf.d/ifd-virtual" <<EOF
FRIENDLYNAME "Virtual Reader"
DEVICENAME $RUNDIR/virtual.conf
LIBPATH $DRIVER
EOF

# 4. Start scardd (replacing one this script started before).
stop_ours
"$SCARDD" --foreground --socket "$SOCKET" --config-dir "$RUNDIR/reader.conf.d" \
	>"$RUNDIR/scardd.log" 2>&1 &
echo $! >"$PIDFILE"
export PCSCLITE_CSOCK_NAME="$SOCKET"
i=0
until "$SCARD" list >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -ge 50 ] || ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
		cat "$RUNDIR/scardd.log" >&2
		die "scardd did not start (log above, also in $RUNDIR/scardd.log)"
	fi
	sleep 0.1
done

# 5. Show it.
say "scardd is running (pid $(cat "$PIDFILE"), log $RUNDIR/scardd.log) on $SOCKET"
say ""
say "\$ scard list"
"$SCARD" list
cat <<EOF

Point any PC/SC application (pcsc_scan, opensc-tool, pyscard, ...) at it with
    export PCSCLITE_CSOCK_NAME=$SOCKET
then for example:
    $SCARD status
    $SCARD send 0 00A4040007F0736361726464 00B0810000
    $SCARD virtual insert "Virtual Reader 00 01" builtin
    $SCARD watch            # in another terminal, then insert/remove cards
    pcsc_scan -n
Stop it with: $0 --stop
EOF
