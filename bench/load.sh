#!/usr/bin/env bash
# load.sh: time `berth load` against `docker load` of the same archive,
# side by side in one run.
#
# Usage (as root; no network needed):
#   make bench-load             # builds bin/berth, then runs this script
#   RUNS=3 bench/load.sh
#
# Environment:
#   RUNS      timed runs per tool and image (default 5, at least 3)
#   WARMUP    untimed runs before them (default 1)
#   LAYER_MIB size of each of the 5 layers (default 60)
#   BUSY_MAX  wait until the CPUs are at most this % busy (user, system,
#             irq, steal; over 3 s of /proc/stat) before measuring
#             (default 20). Not the load average: on this Firecracker VM
#             it stays at 1.5-2.5 with the CPUs idle.
#   WAIT_S    ... for at most this many seconds, then measure anyway and say
#             so (default 300)
#   PREWARM_MIB  before every timed run, write and delete this many MiB
#             of page cache (default 0: off). On a VM whose host takes back
#             the guest's free memory within seconds (Firecracker's balloon
#             here), the first write to such a page faults on the host:
#             600 MiB of page-cache writes take 0.13 s into memory freed
#             just now and 0.4 s into memory freed 5 s ago. Both loads write
#             ~600 MiB; with PREWARM_MIB=1024 they write into warm memory,
#             as on bare metal.
#   BERTH     berth binary (default bin/berth of this checkout)
#   DOCKER    docker client (default `docker` on PATH)
#
# The archives are docker-archives as `docker save` (20.10) writes them:
# uncompressed <id>/layer.tar members, <config-hex>.json, manifest.json.
# Two images of the same random bytes (/dev/urandom): bench/load:5 has 5
# layers of LAYER_MIB MiB (layer k holds k files of LAYER_MIB/k MiB),
# bench/load:1 has all of them in one layer (the unpack throughput of one
# large layer).
#
# Each tool loads each archive RUNS times, interleaved (berth, docker,
# berth, docker ...), the archive warm in the page cache, after a `sync` so
# one run's writeback does not land in the next (and PREWARM_MIB, below). berth loads into a fresh
# --root every time; docker's image is removed after every run (docker rmi)
# and the script checks dockerd's layer store (overlay2/, layerdb) is empty
# before each load, so every docker load really unpacks.
#
# Wall time: date +%s%N around the client (berth load, docker load).
# Peak RSS:
#   berth   GNU time's %M (ru_maxrss) of the berth process, every timed run;
#           the median is shown.
#   docker  the work happens in the daemon, so the client's RSS says
#           little. One extra, untimed run per image: the daemon's high
#           water mark is reset (echo 5 > /proc/PID/clear_refs), and after
#           the load VmHWM - VmRSS(before) is its growth; meanwhile the
#           children dockerd re-executes to untar each layer
#           (docker-untar) are sampled every 10 ms for their VmHWM. The
#           table shows dockerd's growth; the lines under it give the
#           daemon's absolute peak, the largest untar child, the client.
#
# A private containerd and dockerd are started as in
# scripts/interop-docker.sh: their own roots, sockets and cgroup parent
# under the temp dir, --iptables=false --ip-masq=false --ip-forward=false
# --bridge=none; stopped by PID and removed on exit. Goals are printed as
# PASS/MISS for information: the exit status is 0 either way.
#
# Layout of the temp dir:
#
#   $tmp/
#   ├── src/l{1..5}/data/l<k>/f<i>.bin   the random files
#   ├── src/all/data/...                  hard links to all of them
#   ├── load-5.tar load-1.tar             the two docker-archives
#   ├── berth/                            one fresh --root per berth run
#   ├── containerd/ docker/ docker.sock client/   the private daemons
#   └── out/                              timings, RSS samples, logs
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
LAYER_MIB=${LAYER_MIB:-60}
BUSY_MAX=${BUSY_MAX:-20}
WAIT_S=${WAIT_S:-300}
PREWARM_MIB=${PREWARM_MIB:-0}
BERTH=${BERTH:-$repo/bin/berth}
DOCKER=${DOCKER:-docker}
GOAL=2.5

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root: dockerd needs it (try: sudo $0)"
[ -x "$BERTH" ] || die "no berth binary at $BERTH: run make build first"
[ -x /usr/bin/time ] || die "needs GNU time at /usr/bin/time (Debian package time)"
for c in dockerd containerd containerd-shim-runc-v2 runc "$DOCKER" sha256sum; do
	command -v "$c" >/dev/null || die "needs $c (Debian package docker.io)"
done
[ "$RUNS" -ge 3 ] || die "RUNS=$RUNS: use at least 3 runs"
[ $((LAYER_MIB % 60)) = 0 ] || die "LAYER_MIB=$LAYER_MIB: want a multiple of 60 (split into 1..5 files)"

tmp=$(mktemp -d /tmp/berth-bench-load.XXXXXX)
out=$tmp/out
cgparent=berth-bench-load-$$
. "$repo/scripts/private-dockerd.sh"
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	stop "${spid:-}"
	private_dockerd_stop "$tmp" "$cgparent"
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$out" "$tmp/berth"

# --- the archives ------------------------------------------------------------
case $(uname -m) in
x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;;
esac
mib=$((1024 * 1024))
note "writing $((5 * LAYER_MIB)) MiB of random files"
for k in 1 2 3 4 5; do
	mkdir -p "$tmp/src/l$k/data/l$k" "$tmp/src/all/data"
	for i in $(seq "$k"); do
		head -c $((LAYER_MIB / k * mib)) /dev/urandom >"$tmp/src/l$k/data/l$k/f$i.bin"
	done
	cp -al "$tmp/src/l$k/data/l$k" "$tmp/src/all/data/"
done

# layer DIR OUT: a layer tar of DIR's contents, owned by root, mtime 0.
layer() {
	tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 \
		-C "$1" -cf "$2" data
}
join() { local IFS=,; echo "$*"; }
# archive OUT TAG LAYER.tar...: a docker-archive of one image, docker
# save's legacy layout (<diffid-hex>/layer.tar, <config-hex>.json,
# manifest.json). The layer tars are moved into it.
archive() {
	local dst=$1 tag=$2 d=$tmp/arch l h i=0 cfg
	shift 2
	local diffs=() members=() hist=()
	rm -rf "$d"
	mkdir "$d"
	for l; do
		i=$((i + 1))
		h=$(sha256sum "$l" | cut -c1-64)
		mkdir "$d/$h"
		mv "$l" "$d/$h/layer.tar"
		echo 1.0 >"$d/$h/VERSION"
		diffs+=("\"sha256:$h\"")
		members+=("\"$h/layer.tar\"")
		hist+=("{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"bench/load.sh: layer $i\"}")
	done
	printf '{"architecture":"%s","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[%s]}' \
		"$arch" "$(join "${diffs[@]}")" "$(join "${hist[@]}")" >"$d/config.json"
	cfg=$(sha256sum "$d/config.json" | cut -c1-64)
	mv "$d/config.json" "$d/$cfg.json"
	printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":[%s]}]\n' \
		"$cfg" "$tag" "$(join "${members[@]}")" >"$d/manifest.json"
	(cd "$d" && tar --sort=name --numeric-owner --owner=0 --group=0 -cf "$dst" -- *)
	rm -rf "$d"
}
note "building the docker-archives"
tars=()
for k in 1 2 3 4 5; do
	layer "$tmp/src/l$k" "$tmp/l$k.tar"
	tars+=("$tmp/l$k.tar")
done
archive "$tmp/load-5.tar" bench/load:5 "${tars[@]}"
layer "$tmp/src/all" "$tmp/all.tar"
archive "$tmp/load-1.tar" bench/load:1 "$tmp/all.tar"
rm -rf "$tmp/src"
size5=$(stat -c %s "$tmp/load-5.tar")
size1=$(stat -c %s "$tmp/load-1.tar")

# --- the private daemons -------------------------------------------------
private_dockerd_start "$tmp" "$cgparent" || die "the private dockerd did not start"
docker_version=$("$DOCKER" version -f '{{.Server.Version}}')
driver=$("$DOCKER" info -f '{{.Driver}}')

# --- one run of each kind --------------------------------------------------
# docker_clean: no image, and nothing in dockerd's layer store.
docker_clean() {
	[ -z "$("$DOCKER" images -aq)" ] &&
		[ -z "$(find "$data/$driver" -mindepth 1 -maxdepth 1 ! -name l 2>/dev/null)" ] &&
		[ -z "$(ls -A "$data/$driver/l" 2>/dev/null)" ] &&
		[ -z "$(ls -A "$data/image/$driver/layerdb/sha256" 2>/dev/null)" ]
}
now() { date +%s%N; }
# settle: what runs untimed before every timed load.
settle() {
	if [ "$PREWARM_MIB" -gt 0 ]; then
		dd if=/dev/zero of="$tmp/prewarm" bs=1M count="$PREWARM_MIB" status=none
		rm -f "$tmp/prewarm"
	fi
	sync
}
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }'; }

# berth_run NAME ARCHIVE TAG: one load into a fresh root; appends the wall
# time to $out/NAME.s and the peak RSS (KiB) to $out/NAME.rss.
n=0
berth_run() {
	local root=$tmp/berth/$n t0 t1
	n=$((n + 1))
	settle
	t0=$(now)
	/usr/bin/time -o "$out/time" -f %M "$BERTH" --root "$root" load -q -i "$2" >>"$out/berth.log" 2>&1 ||
		{ tail -n 5 "$out/berth.log" >&2; die "berth load -i $2 failed"; }
	t1=$(now)
	[ -n "$("$BERTH" --root "$root" images -q "$3")" ] || die "berth: $3 not there after the load"
	secs "$t0" "$t1" >>"$out/$1.s"
	tail -n 1 "$out/time" >>"$out/$1.rss"
	rm -rf "$root"
}
# docker_run NAME ARCHIVE TAG: one load into an empty layer store.
docker_run() {
	local t0 t1
	docker_clean || die "dockerd's layer store is not empty before a load: $(ls "$data/$driver")"
	settle
	t0=$(now)
	"$DOCKER" load -q -i "$2" >>"$out/docker.log" 2>&1 ||
		{ tail -n 5 "$out/docker.log" >&2; die "docker load -i $2 failed"; }
	t1=$(now)
	"$DOCKER" image inspect "$3" >/dev/null 2>&1 || die "docker: $3 not there after the load"
	secs "$t0" "$t1" >>"$out/$1.s"
	"$DOCKER" rmi "$3" >/dev/null
	docker_clean || die "docker rmi $3 left layers behind: $(ls "$data/$driver")"
}
# kib PID FIELD: a VmXXX field of /proc/PID/status, in KiB.
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
# sample_children: the largest VmHWM of any child of dockerd, every 10 ms,
# written to $out/child.hwm whenever it grows.
sample_children() {
	local max=0 f c k v _ arg0 darg0
	local -a kids
	read -r -d '' darg0 <"/proc/$dpid/cmdline" || true
	trap - EXIT INT TERM
	while :; do
		for f in /proc/"$dpid"/task/*/children; do
			read -r -a kids <"$f" 2>/dev/null || true
			for c in "${kids[@]}"; do
				# Between Go's vfork and exec the child shares dockerd's
				# memory and shows its RSS: count it only once it runs as
				# docker-untar (or another re-exec name), not as dockerd.
				read -r -d '' arg0 <"/proc/$c/cmdline" 2>/dev/null || true
				[ "${arg0:-}" != "$darg0" ] || continue
				while read -r k v _; do
					if [ "$k" = VmHWM: ] && [ "$v" -gt "$max" ]; then max=$v; echo "$max" >"$out/child.hwm"; fi
				done <"/proc/$c/status" 2>/dev/null || true
			done
		done
		sleep 0.01
	done
}
# docker_rss NAME ARCHIVE TAG: the untimed memory run (see the header).
docker_rss() {
	local before
	docker_clean || die "dockerd's layer store is not empty before a load"
	echo 0 >"$out/child.hwm"
	before=$(kib "$dpid" VmRSS)
	echo 5 >"/proc/$dpid/clear_refs"
	sample_children &
	spid=$!
	/usr/bin/time -o "$out/time" -f %M "$DOCKER" load -q -i "$2" >>"$out/docker.log" 2>&1 ||
		die "docker load -i $2 failed"
	stop "$spid"
	spid=
	echo "$before $(kib "$dpid" VmHWM) $(cat "$out/child.hwm") $(tail -n 1 "$out/time")" >"$out/$1.mem"
	"$DOCKER" rmi "$3" >/dev/null
}

# --- measure --------------------------------------------------------------
cat "$tmp/load-5.tar" "$tmp/load-1.tar" >/dev/null # warm in the page cache
sync
# busy: how busy the CPUs were over 3 s, in %, from /proc/stat.
busy() {
	local a b
	a=$(head -n 1 /proc/stat)
	sleep 3
	b=$(head -n 1 /proc/stat)
	printf '%s\n%s\n' "$a" "$b" | awk '{ idle[NR] = $5 + $6; tot[NR] = 0; for (i = 2; i <= 9 && i <= NF; i++) tot[NR] += $i }
		END { d = tot[2] - tot[1]; printf "%.0f", (d > 0 ? 100 * (d - (idle[2] - idle[1])) / d : 0) }'
}
waited=0
while b=$(busy) && [ "$b" -gt "$BUSY_MAX" ]; do
	if [ "$waited" -ge "$WAIT_S" ]; then
		note "CPUs still $b% busy after ${WAIT_S}s: measuring anyway"
		break
	fi
	[ "$waited" = 0 ] && note "CPUs $b% busy (> $BUSY_MAX%): waiting up to ${WAIT_S}s"
	sleep 7
	waited=$((waited + 10))
done
busy_before=$b
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

note "warmup: $WARMUP run(s) of each"
for _ in $(seq "$WARMUP"); do
	berth_run warm "$tmp/load-5.tar" bench/load:5
	docker_run warm "$tmp/load-5.tar" bench/load:5
done
note "$RUNS timed runs of each, interleaved"
for i in $(seq "$RUNS"); do
	berth_run berth5 "$tmp/load-5.tar" bench/load:5
	docker_run docker5 "$tmp/load-5.tar" bench/load:5
	berth_run berth1 "$tmp/load-1.tar" bench/load:1
	docker_run docker1 "$tmp/load-1.tar" bench/load:1
	note "  run $i: berth $(tail -n 1 "$out/berth5.s") s, docker $(tail -n 1 "$out/docker5.s") s (5 layers); berth $(tail -n 1 "$out/berth1.s") s, docker $(tail -n 1 "$out/docker1.s") s (1 layer)"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
note "docker memory runs (untimed)"
docker_rss docker5 "$tmp/load-5.tar" bench/load:5
docker_rss docker1 "$tmp/load-1.tar" bench/load:1

# --- report -----------------------------------------------------------------
# stat FILE: median min max of the numbers in FILE.
stat3() {
	sort -n "$1" | awk '{ v[NR] = $1 } END {
		m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.3f %.3f %.3f\n", m, v[1], v[NR] }'
}
mibs() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
declare -A med
row() { # row LABEL NAME RSS-MiB
	local m lo hi
	read -r m lo hi < <(stat3 "$out/$2.s")
	med[$2]=$m
	printf '%-22s | %8.2f | %5.2f | %5.2f | %12s\n' "$1" "$m" "$lo" "$hi" "$3"
}
berth_version=$("$BERTH" version 2>/dev/null | sed -n 's/^ *Version: *//p' | head -n 1)
echo
prewarm=
[ "$PREWARM_MIB" -gt 0 ] && prewarm=", $PREWARM_MIB MiB of page cache written and freed before each run"
echo "load of a docker-archive, $((5 * LAYER_MIB)) MiB of random files: $RUNS runs each (+$WARMUP warmup), interleaved, archive in page cache$prewarm"
echo "  berth ${berth_version:-?}; dockerd $docker_version ($driver); $(uname -r), $(nproc) CPUs; CPUs $busy_before% busy before; load average $load_before before, $load_after after"
echo "  bench/load:5  5 layers, archive $(mibs $((size5 / 1024))) MiB"
echo "  bench/load:1  1 layer,  archive $(mibs $((size1 / 1024))) MiB"
echo
printf '%-22s | %8s | %5s | %5s | %12s\n' tool "median s" "min s" "max s" "peak RSS MiB"
for k in 5 1; do
	layers="$k layers"
	[ "$k" = 1 ] && layers="1 layer"
	rss=$(mibs "$(sort -n "$out/berth$k.rss" | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')")
	row "berth load ($layers)" "berth$k" "$rss"
	read -r before hwm child client <"$out/docker$k.mem"
	row "docker load ($layers)" "docker$k" "+$(mibs $((hwm - before)))"
done
echo
for k in 5 1; do
	read -r before hwm child client <"$out/docker$k.mem"
	echo "docker load ($k): dockerd VmRSS $(mibs "$before") MiB before, VmHWM $(mibs "$hwm") MiB during the load (+$(mibs $((hwm - before)))); largest untar child $(mibs "$child") MiB; docker client $(mibs "$client") MiB"
done
awk -v s="$size1" -v b="${med[berth1]}" -v d="${med[docker1]}" 'BEGIN {
	printf "unpack throughput, one %.0f MiB layer (archive size / median): berth %.0f MiB/s, docker %.0f MiB/s\n",
		s / 1048576, s / 1048576 / b, s / 1048576 / d }'
awk -v b="${med[berth5]}" -v d="${med[docker5]}" -v g="$GOAL" 'BEGIN {
	r = d / b
	printf "berth at least %sx faster than docker load: %s (ratio %.2fx: docker %.2f s / berth %.2f s)\n",
		g, (r >= g ? "PASS" : "MISS"), r, d, b }'
exit 0
