#!/usr/bin/env bash
# registry-server.sh: `berth registry serve` against Debian's docker-registry
# (distribution 2.8), side by side in one run, both on loopback with fresh
# storage.
#
# Usage (as root; no network beyond 127.0.0.1):
#   make bench-registry-server   # builds bin/berth, then runs this script
#   RUNS=3 bench/registry-server.sh
#
# Environment:
#   RUNS         timed runs per registry and series (default 5, at least 3)
#   WARMUP       untimed runs before them (default 1)
#   SIZE_MB      the layer's random bytes, in MB of 10^6 bytes (default 200)
#   LOAD_N       small pulls per load run (default 1000)
#   LOAD_C       concurrent clients of the load runs (default 16)
#   LOAD_TAGS    small images the load runs cycle through (default 100)
#   CLIENT_TMPFS 1 (default): pulls write their OCI layout to a tmpfs
#                mounted in the temp dir, so the client's disk writes (skopeo
#                fsyncs the blobs) are not in the registry's time; 0: the
#                layout goes to the temp dir's file system
#   BUSY_MAX     wait until the CPUs are at most this % busy over 3 s of
#                /proc/stat before measuring (default 20) ...
#   WAIT_S       ... for at most this many seconds, then measure anyway and
#                say so (default 300)
#   PREWARM_MIB  before every timed run, write and delete this many MiB of
#                page cache (default 0: off; see bench/load.sh)
#   BERTH        berth binary (default bin/berth of this checkout); copied
#                into the temp dir first, so that a rebuild of bin/berth
#                during the run does not change the registry under test
#   CRANE        crane binary (default `crane` on PATH, else
#                $(go env GOPATH)/bin/crane; its rows are left out if there
#                is none: go install
#                github.com/google/go-containerregistry/cmd/crane@v0.20.2)
#   GO           go, to build bench/regload (default `go` on PATH, else
#                /usr/local/go/bin/go)
#   KEEP=1       keep the temp dir (the processes are stopped all the same)
#
# The image: SIZE_MB MB of /dev/urandom in one file, in a layer tar, gzip -1
# (random bytes do not compress: the blob is as large, and clients pass a
# gzip layer through instead of compressing it on push), with an OCI config
# and manifest, written by hand as an OCI layout ($tmp/src/oci, tag 1).
#
# The registries, each on 127.0.0.1:<random free port>, plain HTTP:
#   berth         $BERTH registry serve --addr ... --root STORAGE, plus
#                 --access-log=false --log-level error when this berth has
#                 those flags (its defaults otherwise, /metrics included)
#   distribution  /usr/bin/docker-registry serve config.yml, the config as
#                 internal/registry/registrytest writes it (filesystem
#                 driver, no cache, access log off, log level error)
# Per kind, one "source" registry holds the image (pushed once by skopeo,
# untimed, then its blob read once so that it is in the page cache) and
# LOAD_TAGS small images (regload -setup); pulls and loads hit it. Every
# push goes to a registry of that kind started for that run on a new,
# empty storage dir, and stopped and removed after it.
#
# The series, each RUNS timed runs (+WARMUP), berth and distribution
# interleaved; odd runs start with berth, even runs with distribution:
#   push          skopeo copy oci:$tmp/src/oci:1 docker://REG/bench/big:1;
#                 crane push $tmp/src/oci REG/bench/big:1. After each, the
#                 manifest and every blob are checked to be in the registry.
#   pull          skopeo copy docker://REG/bench/big:1 oci:DIR:1; crane pull
#                 --format oci REG/bench/big:1 DIR; DIR fresh every run (on
#                 the tmpfs unless CLIENT_TMPFS=0) and checked to hold the
#                 image. Both clients verify every blob's digest.
#   curl          curl -o /dev/null of the layer blob from each registry;
#                 and the ceiling, the same file (hard-linked) served as a
#                 plain file by busybox httpd (sendfile, a fork per
#                 connection) and by python3 -m http.server (read/write
#                 through user space), on 127.0.0.1 too.
#   small pulls   bench/regload (built here with $GO): LOAD_N pulls by
#                 LOAD_C clients of LOAD_TAGS small images (see its doc
#                 comment): once GETting only the manifest by tag (with
#                 docker's Accept header), once the manifest, the config
#                 and the layer. requests/s (pulls/s), p50 and p99 latency
#                 as regload measures them.
# Before each timed run: sync (and PREWARM_MIB).
#
# Measured:
#   wall time     date +%s%N around the client (skopeo copy -q, crane,
#                 curl, regload's own clock for the load runs); MB/s is the
#                 layer blob's size (10^6 bytes) over the median wall time
#   peak RSS      of the registry process, from VmHWM in /proc/PID/status:
#                 for a push, the fresh registry's peak over its life
#                 (start, push, checks); for pulls and loads, the source
#                 registry's peak during the run (reset before it with
#                 echo 5 > /proc/PID/clear_refs). Median of the runs.
#   registry CPU  utime + stime of the registry process during the run
#                 (/proc/PID/stat), median; shows where the 2 vCPUs went
# The goals of issue 6, printed as PASS/MISS for information (the exit
# status is 0 either way): berth's push and pull MB/s at least 1.5x
# distribution's, per client; berth's pulls and its curl of the blob at
# least 80% of the curl-of-a-file ceiling (the faster file server); the
# registry's peak RSS at most distribution's, per series. A last line
# gives distribution's registry CPU over berth's, per series: the clients'
# own work bounds several wall times, the registry's CPU is what it costs. Everything started here is stopped by PID; the tmpfs is
# unmounted and the temp dir removed on exit, failure or not.
#
# skopeo runs as `unshare -m sh -c 'mount --bind ...; exec skopeo'` so that
# its blob-info cache is the temp dir's (emptied before every run), not the
# host's /var/lib/containers/cache.
#
# Layout of the temp dir:
#
#   $tmp/
#   ├── src/oci/                 the image, an OCI layout
#   ├── www/blob                 the layer blob, hard link, for the file
#   │                            servers
#   ├── berth-src/{storage,log}  the source registries
#   ├── dist-src/{config.yml,storage,log}
#   ├── berth-push/<n>/ dist-push/<n>/  a push registry per run
#   ├── dst/                     pull destinations (a tmpfs by default)
#   ├── skopeo-cache/ policy.json  skopeo's blob-info cache, policy
#   ├── berth regload            the berth under test (a copy), the load
#   │                            generator (built from bench/regload)
#   └── out/                     timings, RSS, CPU, logs
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
SIZE_MB=${SIZE_MB:-200}
LOAD_N=${LOAD_N:-1000}
LOAD_C=${LOAD_C:-16}
LOAD_TAGS=${LOAD_TAGS:-100}
CLIENT_TMPFS=${CLIENT_TMPFS:-1}
BUSY_MAX=${BUSY_MAX:-20}
WAIT_S=${WAIT_S:-300}
PREWARM_MIB=${PREWARM_MIB:-0}
BERTH=${BERTH:-$repo/bin/berth}
REGISTRY=/usr/bin/docker-registry
GOAL_X=1.5   # berth's push and pull MB/s over distribution's, at least
GOAL_CEIL=80 # berth's pull MB/s, % of the curl-of-a-file ceiling, at least

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root: the tmpfs and skopeo's private cache mount (try: sudo $0)"
[ -x "$BERTH" ] || die "no berth binary at $BERTH: run make build first"
[ -x "$REGISTRY" ] || die "needs $REGISTRY (Debian package docker-registry)"
for c in skopeo curl jq ss unshare busybox python3 gzip sha256sum; do
	command -v "$c" >/dev/null || die "needs $c (Debian packages skopeo, curl, jq, iproute2, busybox, python3)"
done
[ "$RUNS" -ge 3 ] || die "RUNS=$RUNS: use at least 3 runs"
if [ -z "${GO:-}" ]; then
	GO=$(command -v go || echo /usr/local/go/bin/go)
fi
[ -x "$GO" ] || command -v "$GO" >/dev/null || die "needs go to build bench/regload (set GO)"
if [ -z "${CRANE:-}" ]; then
	CRANE=$(command -v crane || echo "$("$GO" env GOPATH)/bin/crane")
fi
if [ ! -x "$CRANE" ]; then
	note "no crane at $CRANE: its rows are left out (go install github.com/google/go-containerregistry/cmd/crane@v0.20.2)"
	CRANE=
fi
# python3 may be a shim (pyenv) that execs the interpreter later: start
# the interpreter itself, so the PID is the server's.
PYTHON=$(python3 -c 'import sys; print(sys.executable)')

tmp=$(mktemp -d /tmp/berth-bench-registry-server.XXXXXX)
out=$tmp/out
# pids: the long-lived servers; reg_pid: the registry started last (a push
# registry is stopped after its run, and reg_pid cleared, so that cleanup
# never signals a PID the system may have reused).
pids=()
reg_pid=
. "$repo/scripts/private-dockerd.sh" # for stop PID
cleanup() {
	local rc=$? p m
	trap - EXIT INT TERM
	set +e
	stop "$reg_pid"
	for p in "${pids[@]}"; do stop "$p"; done
	awk -v w="$tmp" 'index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do umount "$m" || umount -l "$m"; done
	if [ "${KEEP:-0}" = 1 ]; then echo "bench: kept $tmp" >&2; else rm -rf "$tmp"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$out" "$tmp/skopeo-cache" "$tmp/dst" "$tmp/www"
cp "$BERTH" "$tmp/berth"
BERTH=$tmp/berth
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$tmp/policy.json"

note "building bench/regload"
(cd "$repo" && CGO_ENABLED=0 "$GO" build -o "$tmp/regload" ./bench/regload) || die "go build ./bench/regload failed"

# sk: skopeo with the temp dir's blob-info cache and our policy.
if [ -d /var/lib/containers/cache ]; then
	sk=(unshare -m sh -c 'c=$1 p=$2; shift 2; mount --make-rprivate / && mount --bind "$c" /var/lib/containers/cache && exec skopeo --policy "$p" "$@"'
		sh "$tmp/skopeo-cache" "$tmp/policy.json")
else
	sk=(skopeo --policy "$tmp/policy.json")
fi

# --- the image --------------------------------------------------------------
note "writing $SIZE_MB MB of random bytes, tar, gzip -1"
mkdir -p "$tmp/src/layer/data" "$tmp/src/oci/blobs/sha256"
head -c $((SIZE_MB * 1000000)) /dev/urandom >"$tmp/src/layer/data/random.bin"
tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$tmp/src/layer" -cf "$tmp/src/layer.tar" data
rm -rf "$tmp/src/layer"
diffid=$(sha256sum "$tmp/src/layer.tar" | cut -c1-64)
gzip -1 -c "$tmp/src/layer.tar" >"$tmp/src/layer.tar.gz"
rm -f "$tmp/src/layer.tar"
ldig=$(sha256sum "$tmp/src/layer.tar.gz" | cut -c1-64)
lsize=$(stat -c %s "$tmp/src/layer.tar.gz")
mv "$tmp/src/layer.tar.gz" "$tmp/src/oci/blobs/sha256/$ldig"
ln "$tmp/src/oci/blobs/sha256/$ldig" "$tmp/www/blob"
# blob FILE: move FILE into the layout; prints "digest size".
blob() {
	local d s
	d=$(sha256sum "$1" | cut -c1-64)
	s=$(stat -c %s "$1")
	mv "$1" "$tmp/src/oci/blobs/sha256/$d"
	echo "$d $s"
}
case $(uname -m) in
x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;;
esac
printf '{"architecture":"%s","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Cmd":["true"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"bench/registry-server.sh"}]}' \
	"$arch" "$diffid" >"$tmp/src/config.json"
read -r cdig csize < <(blob "$tmp/src/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
	"$cdig" "$csize" "$ldig" "$lsize" >"$tmp/src/manifest.json"
read -r mdig msize < <(blob "$tmp/src/manifest.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"1"}}]}\n' \
	"$mdig" "$msize" >"$tmp/src/oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$tmp/src/oci/oci-layout"

# --- the servers ------------------------------------------------------------
# Logging as distribution is configured: no access log, errors only.
serve_flags=()
serve_help=$("$BERTH" registry serve --help 2>&1)
grep -q -- '--access-log' <<<"$serve_help" && serve_flags+=(--access-log=false)
grep -q -- '--log-level' <<<"$serve_help" && serve_flags+=(--log-level error)
# free_port: a random port nobody listens on (yet).
free_port() {
	local p
	while :; do
		p=$(shuf -i 20000-60999 -n 1)
		[ -n "$(ss -Hltn "sport = :$p")" ] || { echo "$p"; return; }
	done
}
# up PID PORT URL: wait until PID listens on PORT and URL answers.
up() {
	for _ in $(seq 400); do
		kill -0 "$1" 2>/dev/null || return 1
		# Ours, not another process that took the port meanwhile.
		if ss -Hltnp "sport = :$2" | grep -q "pid=$1," && curl -fsS -o /dev/null "$3"; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}
# reg_start KIND DIR: a registry of KIND (berth or dist) with storage
# DIR/storage, logging to DIR/log; sets reg_pid and reg_addr.
reg_start() {
	local kind=$1 dir=$2 port
	mkdir -p "$dir/storage"
	for _ in 1 2 3 4 5; do
		port=$(free_port)
		case $kind in
		berth)
			"$BERTH" registry serve --addr "127.0.0.1:$port" --root "$dir/storage" "${serve_flags[@]}" >"$dir/log" 2>&1 &
			;;
		dist)
			cat >"$dir/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YML
			"$REGISTRY" serve "$dir/config.yml" >"$dir/log" 2>&1 &
			;;
		esac
		reg_pid=$!
		if up "$reg_pid" "$port" "http://127.0.0.1:$port/v2/"; then
			reg_addr=127.0.0.1:$port
			return 0
		fi
		stop "$reg_pid"
		reg_pid=
		grep -q "address already in use" "$dir/log" || break
	done
	tail -n 15 "$dir/log" >&2
	return 1
}
# reg_check ADDR NAME TAG: the manifest and every blob are there.
reg_check() {
	local m d
	m=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$1/v2/$2/manifests/$3") || return 1
	[ "$(printf %s "$m" | sha256sum | cut -c1-64)" = "$mdig" ] || return 1
	for d in $(jq -r '.config.digest, .layers[].digest' <<<"$m"); do
		curl -fsS -o /dev/null -I "http://$1/v2/$2/blobs/$d" || return 1
	done
}
# kib PID FIELD: a VmXXX field of /proc/PID/status, in KiB.
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
# ticks PID: utime + stime of PID, in clock ticks.
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

declare -A src_pid src_addr name
name[berth]=berth
name[dist]=distribution
for k in berth dist; do
	reg_start "$k" "$tmp/$k-src" || die "the ${name[$k]} source registry did not start"
	pids+=("$reg_pid")
	reg_pid=
	src_pid[$k]=${pids[-1]}
	src_addr[$k]=$reg_addr
	note "${name[$k]} source registry: pid ${src_pid[$k]}, $reg_addr; pushing the image (skopeo) and $LOAD_TAGS small images (regload)"
	"${sk[@]}" copy -q --dest-tls-verify=false "oci:$tmp/src/oci:1" "docker://$reg_addr/bench/big:1" >>"$out/setup.log" 2>&1 ||
		{ tail -n 5 "$out/setup.log" >&2; die "skopeo copy to the ${name[$k]} source registry failed"; }
	reg_check "$reg_addr" bench/big 1 || die "bench/big:1 is not in the ${name[$k]} source registry after the push"
	"$tmp/regload" -addr "$reg_addr" -repo bench/small -setup "$LOAD_TAGS" >>"$out/setup.log" 2>&1 ||
		{ tail -n 5 "$out/setup.log" >&2; die "regload -setup against ${name[$k]} failed"; }
	# The blob in the page cache, as a registry serving it often has it.
	curl -fsS -o /dev/null "http://$reg_addr/v2/bench/big/blobs/sha256:$ldig" || die "GET of the blob from ${name[$k]} failed"
done
bb_port=$(free_port)
busybox httpd -f -p "127.0.0.1:$bb_port" -h "$tmp/www" &
pids+=($!)
up $! "$bb_port" "http://127.0.0.1:$bb_port/blob" || die "busybox httpd did not start"
py_port=$(free_port)
"$PYTHON" -m http.server --bind 127.0.0.1 --directory "$tmp/www" "$py_port" >"$out/python.log" 2>&1 &
pids+=($!)
up $! "$py_port" "http://127.0.0.1:$py_port/blob" || die "python3 -m http.server did not start"
if [ "$CLIENT_TMPFS" = 1 ]; then
	mount -t tmpfs -o "size=$((SIZE_MB * 3 + 64))m,mode=0700" berth-bench "$tmp/dst"
fi

# --- one run of each kind ----------------------------------------------------
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }'; }
settle() {
	if [ "$PREWARM_MIB" -gt 0 ]; then
		dd if=/dev/zero of="$tmp/prewarm" bs=1M count="$PREWARM_MIB" status=none
		rm -f "$tmp/prewarm"
	fi
	sync
}
# timed NAME PID CMD...: run CMD; its wall time to $out/NAME.s, PID's VmHWM
# (KiB) after it to $out/NAME.rss, PID's CPU seconds during it to
# $out/NAME.cpu. NAME "warm" is thrown away. PID's peak is reset first
# unless NOCLEAR=1 (a fresh push registry: its whole life counts).
timed() {
	local name=$1 pid=$2 t0 t1 c0 c1
	shift 2
	[ "${NOCLEAR:-0}" = 1 ] || echo 5 >"/proc/$pid/clear_refs"
	rm -rf "$tmp/skopeo-cache" && mkdir "$tmp/skopeo-cache"
	settle
	c0=$(ticks "$pid")
	t0=$(now)
	"$@" >>"$out/$name.log" 2>&1 || { tail -n 5 "$out/$name.log" >&2; die "$name: $* failed"; }
	t1=$(now)
	c1=$(ticks "$pid")
	[ "$name" = warm ] && return 0
	secs "$t0" "$t1" >>"$out/$name.s"
	kib "$pid" VmHWM >>"$out/$name.rss"
	awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN { printf "%.2f\n", (b - a) / hz }' >>"$out/$name.cpu"
}
tag() { [ "$1" = warm ] && echo warm || echo "$2"; }

# push TOOL KIND RUN: TOOL (skopeo, crane) pushes the image into a fresh
# registry of KIND.
p=0
push() {
	local tool=$1 k=$2 run=$3 dir pid addr
	p=$((p + 1))
	dir=$tmp/$k-push/$p
	reg_start "$k" "$dir" || die "a ${name[$k]} push registry did not start"
	pid=$reg_pid addr=$reg_addr
	[ -z "$(find "$dir/storage" -type f)" ] || die "the ${name[$k]} push registry's storage is not empty"
	case $tool in
	skopeo) NOCLEAR=1 timed "$(tag "$run" "push-$tool-$k")" "$pid" "${sk[@]}" copy -q --dest-tls-verify=false "oci:$tmp/src/oci:1" "docker://$addr/bench/big:1" ;;
	crane) NOCLEAR=1 timed "$(tag "$run" "push-$tool-$k")" "$pid" "$CRANE" push --insecure "$tmp/src/oci" "$addr/bench/big:1" ;;
	esac
	reg_check "$addr" bench/big 1 || die "$tool: bench/big:1 is not in the ${name[$k]} registry after the push"
	stop "$pid"
	reg_pid=
	rm -rf "$dir"
}
# pull TOOL KIND RUN: TOOL pulls the image from KIND's source registry into
# a fresh OCI layout.
n=0
pull() {
	local tool=$1 k=$2 run=$3 d
	n=$((n + 1))
	d=$tmp/dst/$n
	case $tool in
	skopeo) timed "$(tag "$run" "pull-$tool-$k")" "${src_pid[$k]}" "${sk[@]}" copy -q --src-tls-verify=false "docker://${src_addr[$k]}/bench/big:1" "oci:$d:1" ;;
	crane) timed "$(tag "$run" "pull-$tool-$k")" "${src_pid[$k]}" "$CRANE" pull --insecure --format oci "${src_addr[$k]}/bench/big:1" "$d" ;;
	esac
	[ "$(jq -r '.manifests[0].digest' "$d/index.json")" = "sha256:$mdig" ] || die "$tool: the layout pulled from ${name[$k]} does not hold the image"
	[ "$(stat -c %s "$d/blobs/sha256/$ldig")" = "$lsize" ] || die "$tool: the layer pulled from ${name[$k]} is not whole"
	rm -rf "$d"
}
# curl_blob KIND RUN; curl_file SERVER PORT RUN
curl_blob() { timed "$(tag "$2" "curl-$1")" "${src_pid[$1]}" curl -fsS -o /dev/null "http://${src_addr[$1]}/v2/bench/big/blobs/sha256:$ldig"; }
curl_file() { NOCLEAR=1 timed "$(tag "$3" "curl-$1")" "$$" curl -fsS -o /dev/null "http://127.0.0.1:$2/blob"; }
# load KIND RUN [-blobs]
load() {
	local k=$1 run=$2 name
	shift 2
	name=$(tag "$run" "load${1:-}-$k")
	timed "$name" "${src_pid[$k]}" "$tmp/regload" -addr "${src_addr[$k]}" -repo bench/small -tags "$LOAD_TAGS" -n "$LOAD_N" -c "$LOAD_C" "$@"
	[ "$name" = warm ] || tail -n 1 "$out/$name.log" >>"$out/$name.kv"
}

# --- measure -----------------------------------------------------------------
# busy: how busy the CPUs were over 3 s, in %, from /proc/stat.
busy() {
	local a b
	a=$(head -n 1 /proc/stat)
	sleep 3
	b=$(head -n 1 /proc/stat)
	printf '%s\n%s\n' "$a" "$b" | awk '{ idle[NR] = $5 + $6; tot[NR] = 0; for (i = 2; i <= 9 && i <= NF; i++) tot[NR] += $i }
		END { d = tot[2] - tot[1]; printf "%.0f", (d > 0 ? 100 * (d - (idle[2] - idle[1])) / d : 0) }'
}
wait_idle() {
	local waited=0 b
	while b=$(busy) && [ "$b" -gt "$BUSY_MAX" ]; do
		if [ "$waited" -ge "$WAIT_S" ]; then
			note "CPUs still $b% busy after ${WAIT_S}s: measuring anyway"
			break
		fi
		[ "$waited" = 0 ] && note "CPUs $b% busy (> $BUSY_MAX%): waiting up to ${WAIT_S}s"
		sleep 7
		waited=$((waited + 10))
	done
	echo "$b"
}
# pair RUN FN ARGS...: FN ARGS berth RUN and FN ARGS dist RUN, berth first
# in odd runs, distribution first in even ones (and in warmups).
pair() {
	local run=$1 fn=$2
	shift 2
	if [ "$run" != warm ] && [ $((run % 2)) = 1 ]; then
		"$fn" "$@" berth "$run"
		"$fn" "$@" dist "$run"
	else
		"$fn" "$@" dist "$run"
		"$fn" "$@" berth "$run"
	fi
}
loadpair() { # loadpair RUN [-blobs]: load takes KIND first
	local run=$1
	shift
	if [ "$run" != warm ] && [ $((run % 2)) = 1 ]; then
		load berth "$run" "$@"
		load dist "$run" "$@"
	else
		load dist "$run" "$@"
		load berth "$run" "$@"
	fi
}
tools=(skopeo)
[ -n "$CRANE" ] && tools+=(crane)
last() { tail -n 1 "$out/$1.s"; }

busy_before=$(wait_idle)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u)
for t in "${tools[@]}"; do
	note "push ($t) into a fresh registry: warmup $WARMUP, then $RUNS interleaved runs"
	for _ in $(seq "$WARMUP"); do pair warm push "$t"; done
	for i in $(seq "$RUNS"); do
		pair "$i" push "$t"
		note "  run $i: berth $(last "push-$t-berth") s, distribution $(last "push-$t-dist") s"
	done
done
for t in "${tools[@]}"; do
	note "pull ($t) to a fresh OCI layout: warmup $WARMUP, then $RUNS interleaved runs"
	for _ in $(seq "$WARMUP"); do pair warm pull "$t"; done
	for i in $(seq "$RUNS"); do
		pair "$i" pull "$t"
		note "  run $i: berth $(last "pull-$t-berth") s, distribution $(last "pull-$t-dist") s"
	done
done
note "curl of the blob (both registries) and of the file (busybox httpd, python3 http.server): warmup $WARMUP, then $RUNS interleaved runs"
for i in $(seq "$((WARMUP + RUNS))"); do
	run=$((i - WARMUP))
	[ "$run" -ge 1 ] || run=warm
	pair "$run" curl_blob
	curl_file busybox "$bb_port" "$run"
	curl_file python "$py_port" "$run"
	[ "$run" = warm ] || note "  run $run: berth $(last curl-berth) s, distribution $(last curl-dist) s, busybox httpd $(last curl-busybox) s, python3 $(last curl-python) s"
done
note "$LOAD_N small pulls by $LOAD_C clients: manifests only, then manifest + config + layer; warmup $WARMUP, then $RUNS interleaved runs each"
for mode in "" -blobs; do
	for _ in $(seq "$WARMUP"); do loadpair warm $mode; done
	for i in $(seq "$RUNS"); do loadpair "$i" $mode; done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
busy_after=$(busy)

# --- report -----------------------------------------------------------------------
# stat3 FILE: median min max of the numbers in FILE.
stat3() {
	sort -n "$1" | awk '{ v[NR] = $1 } END {
		m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.3f %.3f %.3f\n", m, v[1], v[NR] }'
}
median() { stat3 "$1" | cut -d' ' -f1; }
mibs() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
mbs() { awk -v b="$lsize" -v s="$1" 'BEGIN { printf "%.0f", b / 1e6 / s }'; }
declare -A rate
row() { # row LABEL NAME [no-registry]
	local m lo hi r rss cpu
	read -r m lo hi < <(stat3 "$out/$2.s")
	r=$(mbs "$m")
	rate[$2]=$r
	if [ "${3:-}" = file ]; then
		rss=- cpu=-
	else
		rss=$(mibs "$(median "$out/$2.rss")")
		cpu=$(median "$out/$2.cpu")
	fi
	printf '%-34s | %8.3f | %6.3f | %6.3f | %6s | %8s | %7s\n' "$1" "$m" "$lo" "$hi" "$r" "$rss" "$cpu"
}
declare -A lrate
lrow() { # lrow LABEL NAME: from regload's key=value lines
	local rps p50 p99 rss cpu
	rps=$(grep -o "${3:-rps}=[0-9.]*" "$out/$2.kv" | cut -d= -f2 >"$out/$2.rps"; median "$out/$2.rps")
	grep -o "${4:-p50_ms}=[0-9.]*" "$out/$2.kv" | cut -d= -f2 >"$out/$2.p50"
	grep -o "${5:-p99_ms}=[0-9.]*" "$out/$2.kv" | cut -d= -f2 >"$out/$2.p99"
	p50=$(median "$out/$2.p50")
	p99=$(median "$out/$2.p99")
	lrate[$2]=$rps
	rss=$(mibs "$(median "$out/$2.rss")")
	cpu=$(median "$out/$2.cpu")
	printf '%-34s | %8.0f | %6.2f | %6.2f | %8s | %7s\n' "$1" "$rps" "$p50" "$p99" "$rss" "$cpu"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
berth_version=$("$BERTH" version 2>/dev/null | sed -n 's/^ *Version: *//p' | head -n 1)
dst_fs=ext4
[ "$CLIENT_TMPFS" = 1 ] && dst_fs=tmpfs
prewarm=
[ "$PREWARM_MIB" -gt 0 ] && prewarm=", $PREWARM_MIB MiB of page cache written and freed before each run"
echo
echo "registry servers side by side on 127.0.0.1, fresh storage: $RUNS runs each (+$WARMUP warmup), interleaved (berth first in odd runs)$prewarm; started $started"
echo "  berth ${berth_version:-?} registry serve${serve_flags[*]:+ ${serve_flags[*]}}; docker-registry $("$REGISTRY" --version | awk '{ print $NF }') (distribution); $(skopeo --version)${CRANE:+; crane $("$CRANE" version)}; $(curl --version | head -n 1 | cut -d' ' -f1-2); $(busybox | head -n 1 | cut -d' ' -f1-2) httpd; $("$PYTHON" --version) http.server"
echo "  $(uname -r), $(nproc) CPUs; CPUs $busy_before% busy before, $busy_after% after; load average $load_before before, $load_after after"
echo "  image: 1 layer, $SIZE_MB MB of random bytes, gzip -1: blob $lsize bytes ($(awk -v b="$lsize" 'BEGIN { printf "%.1f", b / 1e6 }') MB); pulls write to $dst_fs; MB/s = blob MB / median s"
echo
printf '%-34s | %8s | %6s | %6s | %6s | %8s | %7s\n' "" "median s" "min s" "max s" "MB/s" "reg. RSS" "reg. CPU"
printf '%-34s | %8s | %6s | %6s | %6s | %8s | %7s\n' "" "" "" "" "" "peak MiB" "s"
for t in "${tools[@]}"; do
	case $t in
	skopeo) echo "push: skopeo copy oci: -> docker://, into an empty registry" ;;
	crane) echo "push: crane push (OCI layout), into an empty registry" ;;
	esac
	row "  berth" "push-$t-berth"
	row "  distribution" "push-$t-dist"
done
for t in "${tools[@]}"; do
	case $t in
	skopeo) echo "pull: skopeo copy docker:// -> oci: ($dst_fs)" ;;
	crane) echo "pull: crane pull --format oci ($dst_fs)" ;;
	esac
	row "  berth" "pull-$t-berth"
	row "  distribution" "pull-$t-dist"
done
echo "curl of the layer blob to /dev/null"
row "  berth" curl-berth
row "  distribution" curl-dist
row "  a file: busybox httpd (sendfile)" curl-busybox file
row "  a file: python3 -m http.server" curl-python file
echo
printf '%-34s | %8s | %6s | %6s | %8s | %7s\n' "$LOAD_N small pulls, $LOAD_C clients" "req/s" "p50 ms" "p99 ms" "reg. RSS" "reg. CPU"
echo "manifest GET by tag (1 request per pull)"
lrow "  berth" load-berth
lrow "  distribution" load-dist
echo "manifest + config + layer (3 requests), per request"
lrow "  berth" load-blobs-berth
lrow "  distribution" load-blobs-dist
echo "the same, per pull (pulls/s, latency of the 3)"
lrow "  berth" load-blobs-berth pulls_per_s pull_p50_ms pull_p99_ms
lrow "  distribution" load-blobs-dist pulls_per_s pull_p50_ms pull_p99_ms
echo

# ceiling: the faster of the two file servers.
ceil=${rate[curl-busybox]} ceil_by="busybox httpd"
if [ "${rate[curl-python]}" -gt "$ceil" ]; then ceil=${rate[curl-python]} ceil_by="python3 http.server"; fi
goal() { # goal TEXT VALUE LIMIT (VALUE >= LIMIT passes)
	awk -v v="$2" -v l="$3" 'BEGIN { exit !(v >= l) }' && echo "PASS  $1" || echo "MISS  $1"
}
for t in "${tools[@]}"; do
	r=$(ratio "${rate[push-$t-berth]}" "${rate[push-$t-dist]}")
	goal "push ($t) at least ${GOAL_X}x distribution's: ${r}x (berth ${rate[push-$t-berth]} MB/s, distribution ${rate[push-$t-dist]} MB/s)" "$r" "$GOAL_X"
	r=$(ratio "${rate[pull-$t-berth]}" "${rate[pull-$t-dist]}")
	goal "pull ($t) at least ${GOAL_X}x distribution's: ${r}x (berth ${rate[pull-$t-berth]} MB/s, distribution ${rate[pull-$t-dist]} MB/s)" "$r" "$GOAL_X"
done
for t in "${tools[@]}"; do
	r=$(awk -v a="${rate[pull-$t-berth]}" -v c="$ceil" 'BEGIN { printf "%.0f", 100 * a / c }')
	goal "pull ($t) from berth at least ${GOAL_CEIL}% of the curl-of-a-file ceiling ($ceil MB/s, $ceil_by): $r%" "$r" "$GOAL_CEIL"
done
r=$(awk -v a="${rate[curl-berth]}" -v c="$ceil" 'BEGIN { printf "%.0f", 100 * a / c }')
goal "curl of the blob from berth at least ${GOAL_CEIL}% of the curl-of-a-file ceiling: $r% (${rate[curl-berth]} MB/s)" "$r" "$GOAL_CEIL"
for s in "${tools[@]/#/push-}" "${tools[@]/#/pull-}" curl load load-blobs; do
	b=$(median "$out/$s-berth.rss")
	d=$(median "$out/$s-dist.rss")
	goal "registry peak RSS, $s: berth $(mibs "$b") MiB <= distribution $(mibs "$d") MiB" "$d" "$b"
done
r=$(ratio "${lrate[load-berth]}" "${lrate[load-dist]}")
echo "small manifest GETs: berth/distribution requests/s ${r}x; with blobs $(ratio "${lrate[load-blobs-berth]}" "${lrate[load-blobs-dist]}")x"
# The clients' own work bounds the wall times above; the registry's CPU
# per run is what the server costs.
line=
for s in "${tools[@]/#/push-}" "${tools[@]/#/pull-}" curl load load-blobs; do
	r=$(ratio "$(median "$out/$s-dist.cpu")" "$(median "$out/$s-berth.cpu")")
	[ "$r" = - ] && r="- (berth under 1 tick)" || r=${r}x
	line+="${line:+, }$s $r"
done
echo "registry CPU per run, distribution/berth: $line"
exit 0
