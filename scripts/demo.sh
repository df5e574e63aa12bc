#!/bin/sh
# berth's demo: run a busybox container with berth's own OCI runtime and
# show that it is isolated: PID 1, its own hostname, only a loopback
# interface, a memory and pids limit, dropped capabilities, masked paths.
set -eu
cd "$(dirname "$0")/.."
BERTH=${BERTH:-$PWD/bin/berth}
work=$(mktemp -d /tmp/berth-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/proc" "$work/bundle/rootfs/sys" \
	"$work/bundle/rootfs/dev" "$work/bundle/rootfs/tmp" "$work/bundle/rootfs/etc"
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
for a in sh ps hostname ip cat grep id echo ls sleep head wc; do ln -s busybox "$work/bundle/rootfs/bin/$a"; done
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
b run --rm -m 64m --hostname demo demo/busybox:1 sh -c 'echo "hello from $(hostname), PID $$, memory limit $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"'
b run -d --name ticker --init demo/busybox:1 sh -c 'i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.2; done' >/dev/null
sleep 1
b ps
b logs --tail 3 ticker
b stop -t 2 ticker >/dev/null
b ps -a --format '{{.Names}}: {{.Status}}'
b rm ticker >/dev/null
b rmi demo/busybox:1
echo "(after rm: no container directory, mount, cgroup or process is left)"
