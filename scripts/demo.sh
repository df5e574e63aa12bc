#!/bin/sh
# berth's demo: run a busybox container with berth's own OCI runtime and
# show that it is isolated: PID 1, its own hostname, only a loopback
# interface, a memory and pids limit, dropped capabilities, masked paths.
set -eu
cd "$(dirname "$0")/.."
BERTH=${BERTH:-$PWD/bin/berth}
work=$(mktemp -d /tmp/berth-demo.XXXXXX)
# On any exit: containers and networks of the demo's root go first (a
# network's bridge and rules live in the kernel, not under $work).
cleanup() {
	if [ -d "$work/root" ]; then
		ids=$("$BERTH" --root "$work/root" --run-root "$work/run" ps -aq 2>/dev/null || true)
		# shellcheck disable=SC2086
		[ -z "$ids" ] || "$BERTH" --root "$work/root" --run-root "$work/run" rm -f $ids >/dev/null 2>&1 || true
		"$BERTH" --root "$work/root" --run-root "$work/run" network prune -f >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/proc" "$work/bundle/rootfs/sys" \
	"$work/bundle/rootfs/dev" "$work/bundle/rootfs/tmp" "$work/bundle/rootfs/etc"
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
for a in sh ps hostname ip cat grep id echo ls sleep head wc httpd wget; do ln -s busybox "$work/bundle/rootfs/bin/$a"; done
mkdir -p "$work/bundle/rootfs/www"
echo "hello from a berth container" > "$work/bundle/rootfs/www/index.html"
cd "$work/bundle"
"$BERTH" runtime spec
# Non-interactive, with limits: 64 MiB of memory, 32 processes.
sed -i -e 's/"terminal": true/"terminal": false/' \
	-e 's/"hostname": "berth"/"hostname": "demo-container"/' config.json
cat > cmd.sh <<'SH'
echo "== processes (PID 1 is the container's own shell)"; ps -o pid,user,args
echo "== hostname: $(hostname)"
echo "== network interfaces:"; ip -o link | cut -d: -f2
echo "== memory limit: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
echo "== pids limit: $(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"
echo "== capabilities: $(grep CapEff /proc/self/status)"
echo "== /proc/timer_list (masked): $(cat /proc/timer_list | wc -c) bytes readable; /sys/firmware (masked): $(ls /sys/firmware | wc -l) entries"
SH
cp cmd.sh rootfs/cmd.sh
# 64 MiB of memory and 32 processes at most; run the script above.
sed -i -e 's|"resources": {|"resources": {"memory": {"limit": 67108864}, "pids": {"limit": 32},|' \
	-e 's|^\(\s*\)"sh"$|\1"sh", "/cmd.sh"|' config.json
echo "\$ berth runtime run demo"
"$BERTH" runtime --root "$work/state" run demo

# The image side: the same rootfs becomes an image, is listed, saved as a
# docker-archive (what `docker load` reads) and removed again.
echo
cd "$work"
tar -C bundle/rootfs -cf rootfs.tar .
echo "\$ berth import rootfs.tar demo/busybox:1"
"$BERTH" --root "$work/root" import -m "demo rootfs" --change 'CMD ["sh"]' rootfs.tar demo/busybox:1
echo "\$ berth images"
"$BERTH" --root "$work/root" images
echo "\$ berth save -o demo.tar demo/busybox:1"
"$BERTH" --root "$work/root" save -o demo.tar demo/busybox:1

# Containers, Docker's verbs, no daemon: each container has its own small
# monitor; the CLI exits.
b() { echo "\$ berth $*"; "$BERTH" --root "$work/root" --run-root "$work/run" "$@"; }
bq() { echo "\$ berth $*"; "$BERTH" --root "$work/root" --run-root "$work/run" "$@" >/dev/null; } # shown; its output (an ID) not
links_before=$(ls /sys/class/net)
b run --rm -m 64m --hostname demo demo/busybox:1 sh -c 'echo "hello from $(hostname), PID $$, memory limit $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"'
bq run -d --name ticker --init demo/busybox:1 sh -c 'i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.2; done'
sleep 1
b ps
b logs --tail 3 ticker
bq stop -t 2 ticker
b ps -a --format '{{.Names}}: {{.Status}}'
bq rm ticker

# Networking: a user network with DNS by name, a port published on
# 127.0.0.1 (DNAT, no proxy process), and nothing left after rm.
echo
bq network create demo-net
bq run -d --name web --network demo-net -p 127.0.0.1::80 demo/busybox:1 httpd -f -p 80 -h /www
port=$("$BERTH" --root "$work/root" --run-root "$work/run" port web 80)
b port web
echo "\$ busybox wget -qO- http://$port/    # from the host"
for _ in 1 2 3 4 5 6 7 8 9 10; do busybox wget -qO- "http://$port/" 2>/dev/null && break; sleep 0.2; done
b run --rm --network demo-net demo/busybox:1 wget -qO- http://web/
bq rm -f web
bq network rm demo-net
bq network prune -f
b rmi demo/busybox:1
# The kernel deletes a removed container's veth pair as its namespace
# dies, a moment after rm returns.
for _ in 1 2 3 4 5 6 7 8 9 10; do [ "$(ls /sys/class/net)" = "$links_before" ] && break; sleep 0.2; done
if [ "$(ls /sys/class/net)" = "$links_before" ] && ! grep -qs "$work" /proc/self/mountinfo; then
	echo "(checked: no network interface, bridge or mount of the demo's is left)"
else
	echo "demo: something was left behind: interfaces now: $(ls /sys/class/net | tr '\n' ' ')" >&2
	exit 1
fi
