#!/usr/bin/env bash
# interop-docker.sh: berth and a real Docker engine exchange images.
#
# Usage (as root; no network needed):
#   make interop-docker          # builds bin/berth, then runs this script
#
# Starts a private containerd and dockerd (Debian's docker.io) that touch
# nothing of the host's: each has its own root, state and sockets in a temp
# dir, dockerd gets --iptables=false --ip-masq=false --ip-forward=false
# --bridge=none (so it leaves the network alone) and its own cgroup parent.
# Both are stopped by PID and the temp dir removed on exit, failure or not.
# Then, one step per line, PASS or FAIL:
#
#   1. go test -run TestDockerInterop ./internal/image/ against that dockerd
#   2. berth import of a busybox rootfs tar, berth save -o x.tar
#   3. docker load -i x.tar: Docker sees the image ID berth gave it
#   4. docker run --rm --network none <img> sh -c 'echo ...' prints it
#   5. docker save -> berth load into a fresh root: same image ID
#      (berth images -q --no-trunc vs docker images -q --no-trunc)
#   6. skopeo copy docker-archive:x.tar oci-archive:y.tar -> berth load
#
# Exit status: 0 if every step passed, 1 otherwise.
#
# Environment: BERTH (default bin/berth of this checkout), DOCKER (the
# docker client, default `docker` on PATH), BUSYBOX (default /bin/busybox),
# KEEP=1 keeps the temp dir (the daemons are stopped all the same).
#
# Layout of the temp dir:
#
#   $work/
#   ├── containerd/{config.toml,root/,state/,opt/,containerd.sock,log}
#   ├── docker/{daemon.json,data/,exec/,docker.pid,key.json,log}
#   ├── docker.sock               dockerd's only API socket
#   ├── client/                   DOCKER_CONFIG: the client's config
#   ├── rootfs/ rootfs.tar        busybox: sh echo cat ls
#   ├── berth-{import,docker,oci}/ one --root per berth direction
#   └── x.tar d.tar y.tar         berth save, docker save, skopeo's OCI archive
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
BERTH=${BERTH:-$repo/bin/berth}
DOCKER=${DOCKER:-docker}
BUSYBOX=${BUSYBOX:-/bin/busybox}

die() { echo "interop-docker: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root: dockerd needs it (try: sudo $0)"
[ -x "$BERTH" ] || die "no berth binary at $BERTH: run make build first"
[ -x "$BUSYBOX" ] || die "no busybox at $BUSYBOX: install busybox-static or set BUSYBOX"
for c in dockerd containerd containerd-shim-runc-v2 runc "$DOCKER" skopeo go; do
	command -v "$c" >/dev/null || die "needs $c (Debian packages docker.io, skopeo, golang)"
done

work=$(mktemp -d /tmp/berth-docker.XXXXXX)
cgparent=berth-interop-$$
. "$repo/scripts/private-dockerd.sh"
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ "$rc" != 0 ] && [ -f "$work/dockerd.log" ]; then
		echo "--- last lines of dockerd's log:" >&2
		tail -n 15 "$work/dockerd.log" >&2
	fi
	private_dockerd_stop "$work" "$cgparent"
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fails=0
result() { # result NAME STATUS [DETAIL]
	if [ "$2" = 0 ]; then echo "PASS  $1${3:+  ($3)}"; else echo "FAIL  $1${3:+  ($3)}"; fails=$((fails + 1)); fi
}
# quiet CMD...: run, and on failure show what it printed.
quiet() {
	local out
	out=$("$@" 2>&1) && return 0
	local rc=$?
	printf '  $ %s\n%s\n' "$*" "$out" | sed 's/^/  /' >&2
	return "$rc"
}

# --- the daemons --------------------------------------------------------
up=0
private_dockerd_start "$work" "$cgparent" || up=1
result "dockerd up (pid $dpid, $("$DOCKER" version -f '{{.Server.Version}}' 2>/dev/null), containerd pid $cpid)" "$up"
[ "$up" = 0 ] || exit 1

# --- 1. the Go test -------------------------------------------------------
out=$(cd "$repo" && BERTH_TEST_DOCKER_HOST=$DOCKER_HOST go test -count=1 -run TestDockerInterop -v ./internal/image/ 2>&1)
rc=$?
echo "$out" | sed 's/^/  | /'
if [ "$rc" = 0 ] && ! grep -q -- '--- PASS: TestDockerInterop' <<<"$out"; then rc=1; fi
result "go test -run TestDockerInterop ./internal/image/" "$rc"

# --- 2. berth import, berth save ----------------------------------------
img=localhost/berth-cli:1
mkdir -p "$work/rootfs/bin"
cp "$BUSYBOX" "$work/rootfs/bin/busybox"
for a in sh echo cat ls; do ln -s busybox "$work/rootfs/bin/$a"; done
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
b1=(--root "$work/berth-import")
quiet "$BERTH" "${b1[@]}" import -c 'CMD ["sh"]' "$work/rootfs.tar" "$img" &&
	quiet "$BERTH" "${b1[@]}" save -o "$work/x.tar" "$img"
rc=$?
id=$("$BERTH" "${b1[@]}" images -q --no-trunc "$img" 2>/dev/null)
result "berth import rootfs.tar $img; berth save -o x.tar" "$rc" "${id:-no image}"

# --- 3. docker load ---------------------------------------------------------
quiet "$DOCKER" load -i "$work/x.tar"
rc=$?
did=$("$DOCKER" image inspect -f '{{.Id}}' "$img" 2>/dev/null)
[ "$rc" = 0 ] && [ -n "$id" ] && [ "$did" = "$id" ] || rc=1
result "docker load -i x.tar: same image ID" "$rc" "docker: ${did:-none}"

# --- 4. docker run ------------------------------------------------------------
got=$("$DOCKER" run --rm --network none "$img" sh -c 'echo hello from a berth image' 2>&1)
rc=$?
[ "$got" = "hello from a berth image" ] || rc=1
result "docker run --rm --network none $img sh -c 'echo ...'" "$rc" "printed: $got"

# --- 5. docker save -> berth load ---------------------------------------------
b2=(--root "$work/berth-docker")
quiet "$DOCKER" save -o "$work/d.tar" "$img" &&
	quiet "$BERTH" "${b2[@]}" load -i "$work/d.tar"
rc=$?
bid=$("$BERTH" "${b2[@]}" images -q --no-trunc 2>/dev/null)
did=$("$DOCKER" images -q --no-trunc "$img" 2>/dev/null)
[ "$rc" = 0 ] && [ -n "$bid" ] && [ "$bid" = "$did" ] || rc=1
result "docker save | berth load (fresh root): same image ID" "$rc" "berth: ${bid:-none}, docker: ${did:-none}"

# --- 6. skopeo's OCI archive -> berth load ----------------------------------
b3=(--root "$work/berth-oci")
quiet skopeo copy -q "docker-archive:$work/x.tar" "oci-archive:$work/y.tar:localhost/berth-cli:oci" &&
	quiet "$BERTH" "${b3[@]}" load -i "$work/y.tar"
rc=$?
oid=$("$BERTH" "${b3[@]}" images -q --no-trunc localhost/berth-cli:oci 2>/dev/null)
[ "$rc" = 0 ] && [ -n "$oid" ] || rc=1
same="same ID as the berth image"
[ "$oid" = "$id" ] || same="ID differs from the berth image ($id): skopeo rewrote the config"
result "skopeo copy docker-archive:x.tar oci-archive:y.tar; berth load -i y.tar" "$rc" "${oid:-no image}; $same"

echo
if [ "$fails" = 0 ]; then echo "interop-docker: all steps passed"; else echo "interop-docker: $fails step(s) failed"; fi
[ "$fails" = 0 ]
