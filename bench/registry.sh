#!/usr/bin/env bash
# registry.sh: berth pull and push against docker's and skopeo's, side by
# side in one run, with Debian's docker-registry on loopback.
#
# Usage (as root; no network beyond 127.0.0.1):
#   make bench-registry          # builds bin/berth, then runs this script
#   RUNS=3 bench/registry.sh
#
# Environment:
#   RUNS        timed runs per tool and series (default 5, at least 3)
#   WARMUP      untimed runs before them (default 1)
#   LAYER_MIB   size of each layer (default 60)
#   BUSY_MAX    wait until the CPUs are at most this % busy over 3 s of
#               /proc/stat before measuring (default 20) ...
#   WAIT_S      ... for at most this many seconds, then measure anyway and
#               say so (default 300)
#   PREWARM_MIB before every timed run, write and delete this many MiB of
#               page cache (default 0: off; see bench/load.sh and "This
#               VM's memory" in docs/benchmarks.md)
#   BERTH       berth binary (default bin/berth of this checkout)
#   DOCKER      docker client (default `docker` on PATH)
#   BUSYBOX     static busybox put in the first layer (default /bin/busybox)
#   KEEP=1      keep the temp dir (the registries' storage, berth-warm/...;
#               the daemons are stopped all the same)
#
# The images. Two images of random bytes (/dev/urandom), built as
# docker-archives the way bench/load.sh builds them, loaded into the
# private dockerd and pushed by it to a "source" docker-registry, so the
# registry holds them as docker push leaves them: gzip-compressed layers
# (random bytes do not compress) and a Docker v2 schema 2 manifest.
#   bench/img:5   layers l1..l5, LAYER_MIB MiB each (layer k holds k files);
#                 l1 also holds a static busybox (sh, true) so the image
#                 runs: `run --rm IMG true` proves a pull left it runnable
#   bench/img:6   l1..l4 shared with bench/img:5, plus l6, a new layer of
#                 LAYER_MIB MiB
# Then dockerd's copies are removed (docker rmi) and its layer store is
# checked empty.
#
# The series, each RUNS timed runs (+WARMUP) interleaved across the tools
# (berth, docker, skopeo oci, skopeo c/s, berth, ...):
#   pull cold    nothing local: berth pulls bench/img:5 into a fresh --root
#                each run; docker pulls it after `docker rmi` with its layer
#                store checked empty; skopeo copies it to a fresh OCI layout
#                dir (download and verify, no unpack) and to a fresh
#                containers-storage (overlay driver, which unpacks)
#   pull 4 of 5  bench/img:5 is present (pulled once, untimed), bench/img:6
#                is pulled; after each run only bench/img:6 is removed
#                (berth rmi, docker rmi, skopeo delete; for the OCI layout a
#                new dir with bench/img:5's blobs hard-linked) and the
#                store is checked to hold bench/img:5's 5 layers only
#   push         bench/img:5, as each tool holds it after its pull (berth's
#                and skopeo's the registry's gzip blobs; dockerd's the
#                unpacked layers, which docker push compresses again), into
#                an empty registry: a second docker-registry restarted on a
#                fresh storage dir before every run; after the push the
#                manifest and every layer are checked to be there
# After the first timed berth pull of each pull series, `berth run --rm IMG
# true` runs (untimed) and the script checks it left no mount behind.
#
# Wall time: date +%s%N around the client (berth pull -q, docker pull -q,
# skopeo copy -q, berth push, docker push).
# Peak RSS:
#   berth, skopeo  GNU time's %M (ru_maxrss) of the client, every timed run;
#                  the median is shown. skopeo runs as `unshare -m sh -c
#                  'mount --bind ...; exec skopeo'` so that its blob-info
#                  cache is the temp dir's, not the host's
#                  /var/lib/containers/cache (the sh and mount cost ~1 ms).
#   docker         the work is in the daemon, so one extra untimed run per
#                  series: dockerd's and containerd's high-water marks are
#                  reset (echo 5 > /proc/PID/clear_refs) and VmHWM - VmRSS
#                  (before) is their growth; dockerd's children (docker-untar)
#                  are sampled every 10 ms for their VmHWM. The table shows
#                  dockerd's growth; the lines under it give the rest.
# For reference the script also times curl fetching the 5 blobs of
# bench/img:5 in parallel to /dev/null: what the registry alone can serve.
#
# Registries: /usr/bin/docker-registry (Debian's docker-registry,
# distribution 2.8) on 127.0.0.1, config.yml written here as
# internal/registry/registrytest writes it, plain HTTP (127.0.0.0/8 is
# insecure by default for berth, dockerd and, with --*-tls-verify=false,
# skopeo). A private containerd and dockerd are started through
# scripts/private-dockerd.sh. Everything is stopped by PID and removed on
# exit, failure or not: the registries, the daemons, mounts under the temp
# dir, the temp dir (berth roots included). Goals are printed as PASS/MISS
# for information: the exit status is 0 either way.
#
# Layout of the temp dir:
#
#   $tmp/
#   ├── src/ img-5.tar img-6.tar           the random files, the archives
#   ├── reg-src/{config.yml,storage/,log}  the source registry
#   ├── reg-push/{config.yml,<n>/storage}  the push registry, a fresh
#   │                                      storage dir every run
#   ├── berth/<n>/  berth-warm/ berth-push/  --root per run, for 4 of 5,
#   │                                      for push
#   ├── oci/<n>/ oci-base/ cs/<n>/ cs-warm/  skopeo's destinations
#   ├── skopeo-cache/ policy.json          skopeo's blob-info cache, policy
#   ├── containerd/ docker/ docker.sock client/   the private daemons
#   └── out/                               timings, RSS, logs
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
BUSYBOX=${BUSYBOX:-/bin/busybox}
REGISTRY=/usr/bin/docker-registry
GOAL=2.5

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root: dockerd needs it (try: sudo $0)"
[ -x "$BERTH" ] || die "no berth binary at $BERTH: run make build first"
[ -x /usr/bin/time ] || die "needs GNU time at /usr/bin/time (Debian package time)"
[ -x "$REGISTRY" ] || die "needs $REGISTRY (Debian package docker-registry)"
[ -x "$BUSYBOX" ] || die "no busybox at $BUSYBOX: install busybox-static or set BUSYBOX"
for c in dockerd containerd containerd-shim-runc-v2 runc "$DOCKER" skopeo sha256sum curl jq ss unshare; do
	command -v "$c" >/dev/null || die "needs $c (Debian packages docker.io, skopeo, curl, jq, iproute2)"
done
[ "$RUNS" -ge 3 ] || die "RUNS=$RUNS: use at least 3 runs"
[ $((LAYER_MIB % 60)) = 0 ] || die "LAYER_MIB=$LAYER_MIB: want a multiple of 60 (split into 1..5 files)"

tmp=$(mktemp -d /tmp/berth-bench-registry.XXXXXX)
out=$tmp/out
cgparent=berth-bench-registry-$$
reg_pids=()
spid=
. "$repo/scripts/private-dockerd.sh"
cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	set +e
	stop "${spid:-}"
	for p in "${reg_pids[@]}"; do stop "$p"; done
	private_dockerd_stop "$tmp" "$cgparent" # also unmounts anything left under $tmp
	if [ "${KEEP:-0}" = 1 ]; then echo "bench: kept $tmp" >&2; else rm -rf "$tmp"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$out" "$tmp/berth" "$tmp/oci" "$tmp/cs" "$tmp/skopeo-cache"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$tmp/policy.json"

# --- registries ---------------------------------------------------------
# reg_start DIR STORAGE [PORT]: a docker-registry serving STORAGE on
# 127.0.0.1:PORT (a free random port if none); sets reg_pid and reg_addr.
reg_start() {
	local dir=$1 storage=$2 want=${3:-} port try
	mkdir -p "$dir" "$storage"
	for try in 1 2 3 4 5; do
		port=${want:-$(shuf -i 20000-60999 -n 1)}
		if [ -n "$(ss -Hltn "sport = :$port")" ]; then
			[ -n "$want" ] && sleep 0.2
			continue
		fi
		cat >"$dir/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YML
		"$REGISTRY" serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
		reg_pid=$!
		reg_pids+=("$reg_pid")
		for _ in $(seq 400); do
			kill -0 "$reg_pid" 2>/dev/null || break
			# Ours, not another process that took the port meanwhile.
			if ss -Hltnp "sport = :$port" | grep -q "pid=$reg_pid,"; then
				if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/"; then
					reg_addr=127.0.0.1:$port
					return 0
				fi
			fi
			sleep 0.05
		done
		stop "$reg_pid"
		grep -q "address already in use" "$dir/registry.log" || break
	done
	tail -n 15 "$dir/registry.log" >&2
	return 1
}
# reg_check ADDR NAME TAG: the manifest and every layer blob are there.
reg_check() {
	local m d
	m=$(curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json' \
		"http://$1/v2/$2/manifests/$3") || return 1
	for d in $(jq -r '.config.digest, .layers[].digest' <<<"$m"); do
		curl -fsS -o /dev/null -I "http://$1/v2/$2/blobs/$d" || return 1
	done
}

# sk: the skopeo command: its blob-info cache in the temp dir (a bind mount
# in a private mount namespace) and our policy. An array, so GNU time can
# run it: "${sk[@]}" copy ...
if [ -d /var/lib/containers/cache ]; then
	sk=(unshare -m sh -c 'c=$1 p=$2; shift 2; mount --make-rprivate / && mount --bind "$c" /var/lib/containers/cache && exec skopeo --policy "$p" "$@"'
		sh "$tmp/skopeo-cache" "$tmp/policy.json")
else
	sk=(skopeo --policy "$tmp/policy.json")
fi

# --- the images -----------------------------------------------------------
case $(uname -m) in
x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;;
esac
mib=$((1024 * 1024))
note "writing $((6 * LAYER_MIB)) MiB of random files"
for k in 1 2 3 4 5 6; do
	n=$k
	[ "$k" = 6 ] && n=1
	mkdir -p "$tmp/src/l$k/data/l$k"
	for i in $(seq "$n"); do
		head -c $((LAYER_MIB / n * mib)) /dev/urandom >"$tmp/src/l$k/data/l$k/f$i.bin"
	done
done
mkdir -p "$tmp/src/l1/bin"
cp "$BUSYBOX" "$tmp/src/l1/bin/busybox"
for a in sh true; do ln -s busybox "$tmp/src/l1/bin/$a"; done

# layer DIR OUT: a layer tar of DIR's contents, owned by root, mtime 0.
layer() {
	# shellcheck disable=SC2046
	tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 \
		-C "$1" -cf "$2" $(cd "$1" && ls)
}
join() { local IFS=,; echo "$*"; }
# archive OUT TAG LAYER.tar...: a docker-archive of one image in docker
# save's legacy layout, as bench/load.sh writes it. The layer tars are
# copied into it.
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
		cp "$l" "$d/$h/layer.tar"
		echo 1.0 >"$d/$h/VERSION"
		diffs+=("\"sha256:$h\"")
		members+=("\"$h/layer.tar\"")
		hist+=("{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"bench/registry.sh: $(basename "$l" .tar)\"}")
	done
	printf '{"architecture":"%s","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[%s]}' \
		"$arch" "$(join "${diffs[@]}")" "$(join "${hist[@]}")" >"$d/config.json"
	cfg=$(sha256sum "$d/config.json" | cut -c1-64)
	mv "$d/config.json" "$d/$cfg.json"
	printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":[%s]}]\n' \
		"$cfg" "$tag" "$(join "${members[@]}")" >"$d/manifest.json"
	(cd "$d" && tar --sort=name --numeric-owner --owner=0 --group=0 -cf "$dst" -- *)
	rm -rf "$d"
}
note "building the docker-archives"
for k in 1 2 3 4 5 6; do layer "$tmp/src/l$k" "$tmp/l$k.tar"; done
rm -rf "$tmp/src"
archive "$tmp/img-5.tar" bench/img:5 "$tmp"/l{1,2,3,4,5}.tar
archive "$tmp/img-6.tar" bench/img:6 "$tmp"/l{1,2,3,4,6}.tar
rm -f "$tmp"/l?.tar

# --- the daemons ------------------------------------------------------------
reg_start "$tmp/reg-src" "$tmp/reg-src/storage" || die "the source docker-registry did not start"
src=$reg_addr
src_pid=$reg_pid
reg_start "$tmp/reg-push" "$tmp/reg-push/0/storage" || die "the push docker-registry did not start"
dst=$reg_addr
push_pid=$reg_pid
private_dockerd_start "$tmp" "$cgparent" || die "the private dockerd did not start"
docker_version=$("$DOCKER" version -f '{{.Server.Version}}')
driver=$("$DOCKER" info -f '{{.Driver}}')
img5=$src/bench/img:5
img6=$src/bench/img:6
pimg=$dst/bench/img:5

# docker_clean: no image, and nothing in dockerd's layer store.
docker_clean() {
	[ -z "$("$DOCKER" images -aq)" ] &&
		[ -z "$(find "$data/$driver" -mindepth 1 -maxdepth 1 ! -name l 2>/dev/null)" ] &&
		[ -z "$(ls -A "$data/$driver/l" 2>/dev/null)" ] &&
		[ -z "$(ls -A "$data/image/$driver/layerdb/sha256" 2>/dev/null)" ]
}
# docker_layers: how many layers dockerd's layer store holds.
docker_layers() { ls -A "$data/image/$driver/layerdb/sha256" 2>/dev/null | wc -l; }

note "docker load + docker push to the source registry ($src)"
for k in 5 6; do
	"$DOCKER" load -q -i "$tmp/img-$k.tar" >/dev/null
	"$DOCKER" tag "bench/img:$k" "$src/bench/img:$k"
	"$DOCKER" push -q "$src/bench/img:$k" >>"$out/setup.log" 2>&1 ||
		{ tail -n 5 "$out/setup.log" >&2; die "docker push $src/bench/img:$k failed"; }
	reg_check "$src" bench/img "$k" || die "$src/bench/img:$k is not in the registry after docker push"
done
rm -f "$tmp/img-5.tar" "$tmp/img-6.tar"
# shellcheck disable=SC2046
"$DOCKER" rmi bench/img:5 bench/img:6 "$img5" "$img6" >/dev/null
docker_clean || die "docker rmi left layers behind: $(ls "$data/$driver")"
accept='Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json'
man5=$(curl -fsS -H "$accept" "http://$src/v2/bench/img/manifests/5")
man6=$(curl -fsS -H "$accept" "http://$src/v2/bench/img/manifests/6")
jq -r '.layers[].mediaType' <<<"$man5$man6" | grep -qv 'tar.gzip$' &&
	die "a layer in the registry is not gzip: $(jq -r '.layers[].mediaType' <<<"$man5")"
blobs5=$(jq '[.layers[].size] | add' <<<"$man5")
shared=$(jq -n --argjson a "$man5" --argjson b "$man6" '[$a.layers[].digest] - ([$a.layers[].digest] - [$b.layers[].digest]) | length')
[ "$shared" = 4 ] || die "bench/img:6 shares $shared layers with bench/img:5 in the registry, not 4"
new6=$(jq -r '.layers[4].size' <<<"$man6")

# --- helpers ------------------------------------------------------------------
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }'; }
settle() {
	if [ "$PREWARM_MIB" -gt 0 ]; then
		dd if=/dev/zero of="$tmp/prewarm" bs=1M count="$PREWARM_MIB" status=none
		rm -f "$tmp/prewarm"
	fi
	sync
}
# timed NAME CMD...: run CMD under GNU time; wall time to $out/NAME.s, peak
# RSS (KiB) to $out/NAME.rss, output to $out/NAME.log. NAME "warm" is
# thrown away.
timed() {
	local name=$1 t0 t1
	shift
	settle
	t0=$(now)
	/usr/bin/time -o "$out/time" -f %M "$@" >>"$out/$name.log" 2>&1 ||
		{ tail -n 5 "$out/$name.log" >&2; die "$name: $* failed"; }
	t1=$(now)
	secs "$t0" "$t1" >>"$out/$name.s"
	tail -n 1 "$out/time" >>"$out/$name.rss"
}
# dtimed NAME CMD...: the same for a docker client command, without GNU
# time (the client's RSS says little; see docker_mem).
dtimed() {
	local name=$1 t0 t1
	shift
	settle
	t0=$(now)
	"$@" >>"$out/$name.log" 2>&1 || { tail -n 5 "$out/$name.log" >&2; die "$name: $* failed"; }
	t1=$(now)
	secs "$t0" "$t1" >>"$out/$name.s"
}
# no_mounts DIR: nothing is mounted under DIR.
no_mounts() { ! awk -v w="$1" 'index($5, w "/") == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; }
# ready ROOT IMG: berth runs the image it pulled, and leaves no mount.
ready() {
	"$BERTH" --root "$1" run --rm "$2" true >>"$out/run.log" 2>&1 ||
		{ tail -n 5 "$out/run.log" >&2; die "berth run --rm $2 true failed after the pull"; }
	no_mounts "$1" || die "berth run --rm left mounts under $1"
	[ -z "$("$BERTH" --root "$1" ps -aq)" ] || die "berth run --rm left a container in $1"
}
ran_cold=0
ran_warm=0
# berth_store ROOT: "<blobs> <layers>" in a berth root.
berth_store() {
	echo "$(find "$1/content/blobs" -type f | wc -l) $(find "$1/snapshots/layers" -mindepth 1 -maxdepth 1 -type d | wc -l)"
}
# cs_layers DIR: how many layers a containers-storage root holds.
cs_layers() { jq length "$1/root/overlay-layers/layers.json"; }
cs_ref() { echo "containers-storage:[overlay@$1/root+$1/run]$2"; }
# cs_rm DIR: remove a containers-storage root. Its overlay driver leaves
# root/overlay bind-mounted onto itself (private propagation), so unmount
# what lies under DIR, deepest first, before removing it.
cs_rm() {
	awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do umount "$m"; done
	rm -rf "$1"
}
# oci_from BASE NEW: a layout with BASE's blobs hard-linked and its index
# copied (skopeo rewrites index.json, never a blob).
oci_from() {
	mkdir -p "$2"
	cp -al "$1/blobs" "$2/"
	cp "$1/index.json" "$1/oci-layout" "$2/"
}

# kib PID FIELD: a VmXXX field of /proc/PID/status, in KiB.
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
# sample_children: the largest VmHWM of any child of dockerd once it has
# exec'd (see bench/load.sh), every 10 ms, into $out/child.hwm.
sample_children() {
	local max=0 f c k v _ arg0 darg0
	local -a kids
	read -r -d '' darg0 <"/proc/$dpid/cmdline" || true
	trap - EXIT INT TERM
	while :; do
		for f in /proc/"$dpid"/task/*/children; do
			read -r -a kids <"$f" 2>/dev/null || true
			for c in "${kids[@]}"; do
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
# docker_mem NAME CMD...: the untimed memory run of a docker command:
# "dockerd-before dockerd-hwm containerd-before containerd-hwm child-hwm"
# into $out/NAME.mem.
docker_mem() {
	local name=$1 db cb
	shift
	echo 0 >"$out/child.hwm"
	db=$(kib "$dpid" VmRSS)
	cb=$(kib "$cpid" VmRSS)
	echo 5 >"/proc/$dpid/clear_refs"
	echo 5 >"/proc/$cpid/clear_refs"
	sample_children &
	spid=$!
	"$@" >>"$out/$name.log" 2>&1 || { stop "$spid"; die "$name (memory run): $* failed"; }
	stop "$spid"
	spid=
	echo "$db $(kib "$dpid" VmHWM) $cb $(kib "$cpid" VmHWM) $(cat "$out/child.hwm")" >"$out/$name.mem"
}

# --- one run of each kind ---------------------------------------------------
n=0
# Cold pulls.
berth_cold() {
	local root=$tmp/berth/$n
	n=$((n + 1))
	timed "$1" "$BERTH" --root "$root" pull -q "$img5"
	[ -n "$("$BERTH" --root "$root" images -q "$img5")" ] || die "berth: $img5 not there after the pull"
	if [ "$1" != warm ] && [ "$ran_cold" = 0 ]; then ready "$root" "$img5"; ran_cold=1; fi
	rm -rf "$root"
}
docker_cold() {
	docker_clean || die "dockerd's layer store is not empty before a cold pull: $(ls "$data/$driver")"
	dtimed "$1" "$DOCKER" pull -q "$img5"
	"$DOCKER" image inspect "$img5" >/dev/null 2>&1 || die "docker: $img5 not there after the pull"
	"$DOCKER" rmi "$img5" >/dev/null
	docker_clean || die "docker rmi left layers behind: $(ls "$data/$driver")"
}
oci_cold() {
	local d=$tmp/oci/$n
	n=$((n + 1))
	timed "$1" "${sk[@]}" copy -q --src-tls-verify=false "docker://$img5" "oci:$d:5"
	[ "$(jq '.manifests | length' "$d/index.json")" = 1 ] || die "skopeo: no image in $d"
	rm -rf "$d"
}
cs_cold() {
	local d=$tmp/cs/$n
	n=$((n + 1))
	timed "$1" "${sk[@]}" copy -q --src-tls-verify=false "docker://$img5" "$(cs_ref "$d" "$img5")"
	[ "$(cs_layers "$d")" = 5 ] || die "skopeo: $d holds $(cs_layers "$d") layers, not 5"
	cs_rm "$d"
}
# 4 of 5 present.
bw=$tmp/berth-warm
berth_warm() {
	[ "$(berth_store "$bw")" = "7 5" ] || die "berth root before a 4-of-5 pull: blobs, layers $(berth_store "$bw"), want 7 5"
	timed "$1" "$BERTH" --root "$bw" pull -q "$img6"
	[ "$(berth_store "$bw")" = "10 6" ] || die "berth root after a 4-of-5 pull: blobs, layers $(berth_store "$bw"), want 10 6"
	if [ "$1" != warm ] && [ "$ran_warm" = 0 ]; then ready "$bw" "$img6"; ran_warm=1; fi
	"$BERTH" --root "$bw" rmi "$img6" >/dev/null
}
docker_warm() {
	[ "$(docker_layers)" = 5 ] || die "dockerd holds $(docker_layers) layers before a 4-of-5 pull, not 5"
	dtimed "$1" "$DOCKER" pull -q "$img6"
	[ "$(docker_layers)" = 6 ] || die "dockerd holds $(docker_layers) layers after a 4-of-5 pull, not 6"
	"$DOCKER" rmi "$img6" >/dev/null
}
oci_warm() {
	local d=$tmp/oci/$n
	n=$((n + 1))
	oci_from "$tmp/oci-base" "$d"
	timed "$1" "${sk[@]}" copy -q --src-tls-verify=false "docker://$img6" "oci:$d:6"
	[ "$(jq '.manifests | length' "$d/index.json")" = 2 ] || die "skopeo: bench/img:6 not in $d"
	rm -rf "$d"
}
cw=$tmp/cs-warm
cs_warm() {
	[ "$(cs_layers "$cw")" = 5 ] || die "skopeo: $cw holds $(cs_layers "$cw") layers before a 4-of-5 pull, not 5"
	timed "$1" "${sk[@]}" copy -q --src-tls-verify=false "docker://$img6" "$(cs_ref "$cw" "$img6")"
	[ "$(cs_layers "$cw")" = 6 ] || die "skopeo: $cw holds $(cs_layers "$cw") layers after a 4-of-5 pull, not 6"
	"${sk[@]}" delete "$(cs_ref "$cw" "$img6")" >>"$out/skopeo-delete.log" 2>&1 || die "skopeo delete $img6 failed"
}
# Push into an empty registry: a fresh storage dir every run.
p=0
push_fresh() {
	stop "$push_pid"
	rm -rf "$tmp/reg-push/$p"
	p=$((p + 1))
	reg_start "$tmp/reg-push" "$tmp/reg-push/$p/storage" "${dst#*:}" || die "the push registry did not restart"
	push_pid=$reg_pid
	[ -z "$(find "$tmp/reg-push/$p/storage" -type f)" ] || die "the push registry's storage is not empty"
}
pushed() { reg_check "$dst" bench/img 5 || die "$1: $pimg is not in the registry after the push"; }
bp=$tmp/berth-push
berth_push() { push_fresh; timed "$1" "$BERTH" --root "$bp" push "$pimg"; pushed "$1"; }
docker_push() { push_fresh; dtimed "$1" "$DOCKER" push -q "$pimg"; pushed "$1"; }
skopeo_push() {
	push_fresh
	timed "$1" "${sk[@]}" copy -q --dest-tls-verify=false "oci:$tmp/oci-base:5" "docker://$pimg"
	pushed "$1"
}

# --- measure --------------------------------------------------------------------
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
# The registry's blobs warm in the page cache, as a registry serving them
# often would have them.
cat "$tmp"/reg-src/storage/docker/registry/v2/blobs/sha256/*/*/data >/dev/null
sync
# curl_floor: the 5 layer blobs of bench/img:5 fetched in parallel.
curl_floor() {
	local t0 t1 d pids=()
	t0=$(now)
	for d in $(jq -r '.layers[].digest' <<<"$man5"); do
		curl -fsS -o /dev/null "http://$src/v2/bench/img/blobs/$d" &
		pids+=($!)
	done
	for d in "${pids[@]}"; do wait "$d" || die "curl of a blob failed"; done
	t1=$(now)
	secs "$t0" "$t1" >>"$out/curl.s"
}
for _ in 1 2 3 4 5; do curl_floor; done

busy_before=$(wait_idle)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

note "pull, cold: warmup $WARMUP, then $RUNS interleaved runs of each"
for _ in $(seq "$WARMUP"); do berth_cold warm; docker_cold warm; oci_cold warm; cs_cold warm; done
for i in $(seq "$RUNS"); do
	berth_cold berth-cold
	docker_cold docker-cold
	oci_cold oci-cold
	cs_cold cs-cold
	note "  run $i: berth $(tail -n 1 "$out/berth-cold.s") s, docker $(tail -n 1 "$out/docker-cold.s") s, skopeo oci $(tail -n 1 "$out/oci-cold.s") s, skopeo c/s $(tail -n 1 "$out/cs-cold.s") s"
done
note "docker memory run, cold (untimed)"
docker_clean || die "dockerd's layer store is not empty before a cold pull"
docker_mem docker-cold "$DOCKER" pull -q "$img5"

note "pull, 4 of 5 layers present: bench/img:5 in place (untimed), then warmup $WARMUP and $RUNS interleaved runs of each"
# dockerd has bench/img:5 from the memory run.
"$BERTH" --root "$bw" pull -q "$img5" >>"$out/setup.log" 2>&1 || die "berth pull $img5 failed"
"${sk[@]}" copy -q --src-tls-verify=false "docker://$img5" "oci:$tmp/oci-base:5" >>"$out/setup.log" 2>&1 || die "skopeo copy to oci-base failed"
"${sk[@]}" copy -q --src-tls-verify=false "docker://$img5" "$(cs_ref "$cw" "$img5")" >>"$out/setup.log" 2>&1 || die "skopeo copy to $cw failed"
for _ in $(seq "$WARMUP"); do berth_warm warm; docker_warm warm; oci_warm warm; cs_warm warm; done
for i in $(seq "$RUNS"); do
	berth_warm berth-warm
	docker_warm docker-warm
	oci_warm oci-warm
	cs_warm cs-warm
	note "  run $i: berth $(tail -n 1 "$out/berth-warm.s") s, docker $(tail -n 1 "$out/docker-warm.s") s, skopeo oci $(tail -n 1 "$out/oci-warm.s") s, skopeo c/s $(tail -n 1 "$out/cs-warm.s") s"
done
note "docker memory run, 4 of 5 (untimed)"
docker_mem docker-warm "$DOCKER" pull -q "$img6"
"$DOCKER" rmi "$img6" >/dev/null

note "push into an empty registry ($dst): warmup $WARMUP, then $RUNS interleaved runs of each"
"$BERTH" --root "$bp" pull -q "$img5" >>"$out/setup.log" 2>&1 || die "berth pull $img5 failed"
"$BERTH" --root "$bp" tag "$img5" "$pimg"
"$DOCKER" tag "$img5" "$pimg"
for _ in $(seq "$WARMUP"); do berth_push warm; docker_push warm; skopeo_push warm; done
for i in $(seq "$RUNS"); do
	berth_push berth-push
	docker_push docker-push
	skopeo_push skopeo-push
	note "  run $i: berth $(tail -n 1 "$out/berth-push.s") s, docker $(tail -n 1 "$out/docker-push.s") s, skopeo $(tail -n 1 "$out/skopeo-push.s") s"
done
note "docker memory run, push (untimed)"
push_fresh
docker_mem docker-push "$DOCKER" push -q "$pimg"
pushed docker-push
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ------------------------------------------------------------------------
# stat3 FILE: median min max of the numbers in FILE.
stat3() {
	sort -n "$1" | awk '{ v[NR] = $1 } END {
		m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.3f %.3f %.3f\n", m, v[1], v[NR] }'
}
median() { stat3 "$1" | cut -d' ' -f1; }
mibs() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
declare -A med
row() { # row LABEL NAME RSS
	local m lo hi
	read -r m lo hi < <(stat3 "$out/$2.s")
	med[$2]=$m
	printf '%-33s | %8.2f | %5.2f | %5.2f | %14s\n' "$1" "$m" "$lo" "$hi" "$3"
}
rss() { mibs "$(median "$out/$1.rss")"; }
drss() { # the docker memory run's dockerd growth
	local db dh cb ch child
	read -r db dh cb ch child <"$out/$1.mem"
	echo "+$(mibs $((dh - db)))"
}
dline() {
	local db dh cb ch child
	read -r db dh cb ch child <"$out/$1.mem"
	echo "$2: dockerd VmRSS $(mibs "$db") MiB before, VmHWM $(mibs "$dh") (+$(mibs $((dh - db)))); containerd $(mibs "$cb") -> $(mibs "$ch") (+$(mibs $((ch - cb)))); largest dockerd child $(mibs "$child") MiB"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
berth_version=$("$BERTH" version 2>/dev/null | sed -n 's/^ *Version: *//p' | head -n 1)
curl_med=$(median "$out/curl.s")
echo
prewarm=
[ "$PREWARM_MIB" -gt 0 ] && prewarm=", $PREWARM_MIB MiB of page cache written and freed before each run"
echo "registry pull and push, docker-registry $("$REGISTRY" --version | awk '{ print $NF }') on 127.0.0.1: $RUNS runs each (+$WARMUP warmup), interleaved, registry blobs in page cache$prewarm; $(date -u)"
echo "  berth ${berth_version:-?}; dockerd $docker_version ($driver), client $("$DOCKER" version -f '{{.Client.Version}}'); $(skopeo --version); $(uname -r), $(nproc) CPUs; CPUs $busy_before% busy before; load average $load_before before, $load_after after"
echo "  bench/img:5  5 layers of $LAYER_MIB MiB random files (+ busybox in the first), gzip in the registry: $(mibs $((blobs5 / 1024))) MiB of blobs"
echo "  bench/img:6  the first 4 of them + 1 new layer ($(mibs $((new6 / 1024))) MiB blob)"
echo "  curl of bench/img:5's 5 blobs in parallel to /dev/null (what the registry serves, median of 5): $curl_med s"
echo
printf '%-33s | %8s | %5s | %5s | %14s\n' "" "median s" "min s" "max s" "peak RSS MiB"
echo "pull, cold (nothing local)"
row "  berth pull" berth-cold "$(rss berth-cold)"
row "  docker pull" docker-cold "$(drss docker-cold) dockerd"
row "  skopeo copy -> oci: (no unpack)" oci-cold "$(rss oci-cold)"
row "  skopeo copy -> containers-st." cs-cold "$(rss cs-cold)"
echo "pull, 4 of 5 layers present"
row "  berth pull" berth-warm "$(rss berth-warm)"
row "  docker pull" docker-warm "$(drss docker-warm) dockerd"
row "  skopeo copy -> oci: (no unpack)" oci-warm "$(rss oci-warm)"
row "  skopeo copy -> containers-st." cs-warm "$(rss cs-warm)"
echo "push into an empty registry"
row "  berth push" berth-push "$(rss berth-push)"
row "  docker push" docker-push "$(drss docker-push) dockerd"
row "  skopeo copy oci: -> docker://" skopeo-push "$(rss skopeo-push)"
echo
echo "ratios of medians (other/berth; above 1 means berth is faster):"
printf '  %-14s docker %s, skopeo oci %s, skopeo c/s %s\n' "pull, cold:" \
	"$(ratio "${med[docker-cold]}" "${med[berth-cold]}")" "$(ratio "${med[oci-cold]}" "${med[berth-cold]}")" "$(ratio "${med[cs-cold]}" "${med[berth-cold]}")"
printf '  %-14s docker %s, skopeo oci %s, skopeo c/s %s\n' "pull, 4 of 5:" \
	"$(ratio "${med[docker-warm]}" "${med[berth-warm]}")" "$(ratio "${med[oci-warm]}" "${med[berth-warm]}")" "$(ratio "${med[cs-warm]}" "${med[berth-warm]}")"
printf '  %-14s docker %s, skopeo %s\n' "push:" \
	"$(ratio "${med[docker-push]}" "${med[berth-push]}")" "$(ratio "${med[skopeo-push]}" "${med[berth-push]}")"
echo
echo "docker memory (one untimed run each):"
dline docker-cold "  pull, cold"
dline docker-warm "  pull, 4 of 5"
dline docker-push "  push"
echo "berth run --rm IMG true after a berth pull: ran for bench/img:5 (cold) and bench/img:6 (4 of 5), no mount left"
echo
awk -v b="${med[berth-cold]}" -v d="${med[docker-cold]}" -v g="$GOAL" 'BEGIN {
	r = d / b
	printf "berth pull (cold) at least %sx faster than docker pull: %s (ratio %.2fx: docker %.2f s / berth %.2f s)\n",
		g, (r >= g ? "PASS" : "MISS"), r, d, b }'
exit 0
