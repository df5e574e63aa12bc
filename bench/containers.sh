#!/usr/bin/env bash
# containers.sh: berth's container verbs against Docker's, side by side in
# one run, on the same busybox image: start latency, 100 running
# containers (time and memory), and a 400 MiB log flood.
#
# Usage (as root; no network needed):
#   make bench-containers       # builds bin/berth, then runs this script
#   RUNS=50 bench/containers.sh
#
# Environment:
#   RUNS        timed runs per engine for the start latency (default 30,
#               at least 30)
#   WARMUP      untimed runs before them (default 3)
#   COUNT       containers started for the "many containers" part (default 100)
#   PS_RUNS     timed `ps` runs with COUNT containers up (default 10)
#   FLOOD_MIB   MiB a container writes to stdout in the log flood (default 400)
#   FLOOD_RUNS  log floods per engine, interleaved (default 3; median kept)
#   BUSY_MAX    wait until the CPUs are at most this % busy over 3 s of
#               /proc/stat before measuring (default 20) ...
#   WAIT_S      ... for at most this many seconds, then measure anyway and
#               say so (default 300)
#   BERTH       berth binary (default bin/berth of this checkout)
#   DOCKER      docker client (default `docker` on PATH)
#   BUSYBOX     static busybox (default /bin/busybox, Debian's busybox-static)
#
# The engines:
#   berth run         --root and --run-root in the temp dir
#   docker run        a private containerd + dockerd from Debian's docker.io,
#                     started through scripts/private-dockerd.sh: their own
#                     roots, sockets and cgroup parent in the temp dir,
#                     --iptables=false --ip-masq=false --ip-forward=false
#                     --bridge=none
#   podman run        only if podman is installed and runs a container here
#                     (own --root/--runroot in the temp dir); otherwise the
#                     script says why not
#   runc run          an OCI bundle of the same rootfs, config from
#   berth runtime run `runc spec` with terminal false, args ["true"] and no
#                     ambient capabilities (why: at the bundle, below)
# Every container of every engine runs with --network none: start cost
# without networking (this dockerd has no bridge; bench/network.sh
# measures what a bridge adds).
#
# 1. Start latency: hyperfine -N (no shell in between) of `run --rm bb true`
#    for each engine, and of `run -b BUNDLE ID` for the two OCI runtimes
#    (one id reused: run deletes the container when it exits).
# 2. COUNT containers: `run -d bb sleep 1000` COUNT times one after another
#    (date +%s%N around each), then PS_RUNS `ps` with all of them up
#    (hyperfine), then the memory they cost, as Pss from
#    /proc/PID/smaps_rollup (shared pages divided among their users):
#      berth   the berth-monitor processes of this --root (one per
#              container; there is no daemon)
#      docker  the containerd-shim-runc-v2 processes of the private
#              containerd (one per container), plus how much dockerd's and
#              containerd's Pss grew from before the first `run -d` to
#              2 s after the last
#    The container's own process (sleep) is the same in both and not
#    counted. Then `rm -f` of all of them (timed, for information).
# 3. Log flood: a container runs
#      sh -c 'yes <70 digits> | head -c FLOOD_MIB MiB; echo; echo END'
#    with --log-opt max-size=100m --log-opt max-file=5 in both engines.
#    Timed from before `run -d` until `wait` has returned and the END line
#    is in the container's json-file log (polled every 10 ms), so both
#    engines are timed until the last byte is logged.
#
# Goals (from the issue) are printed as PASS/MISS for information; the exit
# status is 0 either way. Everything is removed on exit, failure or not:
# containers (rm -f), the daemons (stopped by PID), mounts under the temp
# dir, the OCI runtimes' containers, cgroups the script created, the temp
# dir. The host's /var/lib/docker and /var/lib/berth are never used.
#
# Layout of the temp dir:
#
#   $tmp/
#   ├── rootfs/bin/{busybox,sh,true,sleep,cat,yes,head,dd}   the image
#   ├── rootfs.tar                  imported as bb:latest by every engine
#   ├── bundle/{config.json,rootfs/}   the OCI bundle (runc spec)
#   ├── berth/{root,run}/           berth's --root and --run-root
#   ├── oci/{runc,berth}/           --root of runc and berth runtime
#   ├── podman/{root,run}/          podman's, if it runs
#   ├── containerd/ docker/ docker.sock client/   the private daemons
#   └── out/                        hyperfine JSON, timings, logs
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
COUNT=${COUNT:-100}
PS_RUNS=${PS_RUNS:-10}
FLOOD_MIB=${FLOOD_MIB:-400}
FLOOD_RUNS=${FLOOD_RUNS:-3}
BUSY_MAX=${BUSY_MAX:-20}
WAIT_S=${WAIT_S:-300}
BERTH=${BERTH:-$repo/bin/berth}
DOCKER=${DOCKER:-docker}
BUSYBOX=${BUSYBOX:-/bin/busybox}

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root: containers need it (try: sudo $0)"
[ -x "$BERTH" ] || die "no berth binary at $BERTH: run make build first"
[ -x "$BUSYBOX" ] || die "no busybox at $BUSYBOX: install busybox-static or set BUSYBOX"
command -v hyperfine >/dev/null || die "needs hyperfine (Debian package hyperfine)"
for c in dockerd containerd containerd-shim-runc-v2 runc "$DOCKER"; do
	command -v "$c" >/dev/null || die "needs $c (Debian package docker.io)"
done
command -v jq >/dev/null || die "needs jq (Debian package jq)"
[ "$RUNS" -ge 30 ] || die "RUNS=$RUNS: use at least 30 runs"
for v in COUNT PS_RUNS FLOOD_MIB FLOOD_RUNS; do
	case ${!v} in '' | *[!0-9]* | 0) die "$v=${!v}: want a positive whole number" ;; esac
done
for a in sh true sleep cat yes head dd; do
	"$BUSYBOX" --list | grep -qx "$a" || die "$BUSYBOX has no $a applet"
done

tmp=$(mktemp -d /tmp/berth-bench-containers.XXXXXX)
out=$tmp/out
cgparent=berth-bench-containers-$$
b=("$BERTH" --root "$tmp/berth/root" --run-root "$tmp/berth/run")
pod=(podman --root "$tmp/podman/root" --runroot "$tmp/podman/run"
	--cgroup-manager cgroupfs --events-backend none --storage-driver vfs)
oci_id=bench-$$
docker_up=0
podman_ok=0
mkdir -p "$out" "$tmp/berth" "$tmp/oci/runc" "$tmp/oci/berth"

# Cgroup parents that exist now are not ours to remove later.
mapfile -t cgroups_before < <(ls -d /sys/fs/cgroup/*/berth /sys/fs/cgroup/berth 2>/dev/null || true)

. "$repo/scripts/private-dockerd.sh"
cleanup() {
	local rc=$? d ids
	trap - EXIT INT TERM
	set +e
	ids=$("${b[@]}" ps -aq 2>/dev/null)
	# shellcheck disable=SC2086
	[ -z "$ids" ] || "${b[@]}" rm -f $ids >/dev/null 2>&1
	if [ "$docker_up" = 1 ]; then
		ids=$("$DOCKER" ps -aq 2>/dev/null)
		# shellcheck disable=SC2086
		[ -z "$ids" ] || "$DOCKER" rm -f $ids >/dev/null 2>&1
	fi
	if [ "$podman_ok" = 1 ]; then
		"${pod[@]}" rm -af >/dev/null 2>&1
	fi
	runc --root "$tmp/oci/runc" delete --force "$oci_id" >/dev/null 2>&1
	"$BERTH" runtime --root "$tmp/oci/berth" delete --force "$oci_id" >/dev/null 2>&1
	private_dockerd_stop "$tmp" "$cgparent"
	while read -r d; do
		[ -n "$d" ] && rmdir "$d" 2>/dev/null
	done < <(find /sys/fs/cgroup -mindepth 2 -depth -type d -name "$oci_id" 2>/dev/null)
	for d in /sys/fs/cgroup/*/berth /sys/fs/cgroup/berth; do
		[ -d "$d" ] || continue
		case " ${cgroups_before[*]-} " in *" $d "*) continue ;; esac
		rmdir "$d" 2>/dev/null
	done
	if [ "$rc" != 0 ] && [ -f "$tmp/dockerd.log" ]; then
		echo "--- last lines of dockerd's log:" >&2
		tail -n 10 "$tmp/dockerd.log" >&2
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers -----------------------------------------------------------------
now() { date +%s%N; }
# busy: how busy the CPUs were over 3 s, in %, from /proc/stat.
busy() {
	local a z
	a=$(head -n 1 /proc/stat)
	sleep 3
	z=$(head -n 1 /proc/stat)
	printf '%s\n%s\n' "$a" "$z" | awk '{ idle[NR] = $5 + $6; tot[NR] = 0; for (i = 2; i <= 9 && i <= NF; i++) tot[NR] += $i }
		END { d = tot[2] - tot[1]; printf "%.0f", (d > 0 ? 100 * (d - (idle[2] - idle[1])) / d : 0) }'
}
# settle: wait (up to WAIT_S) for idle CPUs; prints the last busy %.
settle() {
	local waited=0 p
	while p=$(busy) && [ "$p" -gt "$BUSY_MAX" ]; do
		if [ "$waited" -ge "$WAIT_S" ]; then
			note "CPUs still $p% busy after ${WAIT_S}s: measuring anyway"
			break
		fi
		[ "$waited" = 0 ] && note "CPUs $p% busy (> $BUSY_MAX%): waiting up to ${WAIT_S}s"
		sleep 7
		waited=$((waited + 10))
	done
	echo "$p"
}
# hstat JSON KEY: a hyperfine --export-json statistic, in ms.
hstat() {
	sed -n "s/^ *\"$2\": *\([0-9.eE+-]*\),\{0,1\}\$/\1/p" "$1" | head -n 1 |
		awk '{ printf "%.1f", $1 * 1000 }'
}
# median FILE: the median of the numbers in FILE, one a line.
median() {
	sort -n "$1" | awk '{ v[NR] = $1 } END {
		if (NR) printf "%.3f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
# pss PID...: the sum of their Pss, in kB (processes gone count 0).
pss() {
	local p sum=0 k v _
	for p; do
		while read -r k v _; do
			[ "$k" = Pss: ] && sum=$((sum + v)) && break
		done <"/proc/$p/smaps_rollup" 2>/dev/null || true
	done
	echo "$sum"
}
# argv PID: the process's argv, one argument a line.
argv() { tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null || true; }
# monitors: PIDs of the berth-monitor processes of our --root
# (argv: berth monitor ID ROOT RUNROOT ...).
monitors() {
	local p c
	for p in /proc/[0-9]*; do
		read -r c 2>/dev/null <"$p/comm" || continue # 2> first: a process gone meanwhile fails the < redirection
		[ "$c" = berth-monitor ] || continue
		[ "$(argv "${p#/proc/}" | sed -n 4p)" = "$tmp/berth/root" ] && echo "${p#/proc/}"
	done
	return 0
}
# shims: PIDs of the containerd-shim-runc-v2 processes of our containerd
# (argv: ... -address <our socket> ...).
shims() {
	local p c
	for p in /proc/[0-9]*; do
		read -r c <"$p/comm" 2>/dev/null || continue
		case $c in containerd-shim*) ;; *) continue ;; esac
		argv "${p#/proc/}" | grep -qxF -- "$ctrd_sock" && echo "${p#/proc/}"
	done
	return 0
}
mb() { awk -v k="$1" -v n="${2:-1}" 'BEGIN { printf "%.2f", k / 1024 / n }'; }
ms_of() { awk -v a="$1" -v z="$2" 'BEGIN { printf "%.1f\n", (z - a) / 1e6 }'; }

# --- the image and the bundle -----------------------------------------------
mkdir -p "$tmp/rootfs/bin"
for d in proc sys dev tmp etc; do mkdir -p "$tmp/rootfs/$d"; done
cp "$BUSYBOX" "$tmp/rootfs/bin/busybox"
for a in sh true sleep cat yes head dd; do ln -s busybox "$tmp/rootfs/bin/$a"; done
tar --numeric-owner --owner=0 --group=0 -C "$tmp/rootfs" -cf "$tmp/rootfs.tar" .

bundle=$tmp/bundle
mkdir -p "$bundle"
cp -a "$tmp/rootfs" "$bundle/rootfs"
runc spec --bundle "$bundle"
# No terminal, run `true`, no ambient capabilities: runc 1.1 only warns when
# it cannot raise the ambient set `runc spec` asks for (the set is not
# inheritable), berth runtime refuses it; without it both run the same.
jq '.process.terminal = false | .process.args = ["true"] | del(.process.capabilities.ambient)' \
	"$bundle/config.json" >"$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"

"${b[@]}" import - bb:latest <"$tmp/rootfs.tar" >/dev/null || die "berth import failed"

note "starting a private containerd and dockerd"
private_dockerd_start "$tmp" "$cgparent" || die "the private dockerd did not start"
docker_up=1
"$DOCKER" import - bb:latest <"$tmp/rootfs.tar" >/dev/null || die "docker import failed"

podman_why=
if ! command -v podman >/dev/null; then
	podman_why="not installed"
elif ! "${pod[@]}" import "$tmp/rootfs.tar" bb:latest >"$out/podman.log" 2>&1; then
	podman_why="import failed: $(grep -v '^$' "$out/podman.log" | tail -n 1)"
elif ! "${pod[@]}" run --rm --network none bb true >>"$out/podman.log" 2>&1; then
	podman_why="run failed: $(grep -v '^$' "$out/podman.log" | tail -n 1)"
else
	podman_ok=1
fi
[ "$podman_ok" = 1 ] || note "podman: not available ($podman_why)"

berth_version=$("$BERTH" version 2>/dev/null | sed -n 's/^ *Version: *//p' | head -n 1)
docker_version=$("$DOCKER" version -f '{{.Server.Version}}')
client_version=$("$DOCKER" version -f '{{.Client.Version}}')
containerd_version=$(containerd --version | awk '{ print $3 }')
runc_version=$(runc --version | sed -n '1s/^[^0-9]*//p')
driver=$("$DOCKER" info -f '{{.Driver}}')

# --- 1. start latency ---------------------------------------------------------
declare -A cmd status
engines=(berth docker podman runc berth-runtime)
cmd[berth]="${b[*]} run --rm --network none bb true"
cmd[docker]="$DOCKER run --rm --network none bb true"
cmd[podman]="${pod[*]} run --rm --network none bb true"
cmd[runc]="$(command -v runc) --root $tmp/oci/runc run -b $bundle $oci_id"
cmd[berth-runtime]="$BERTH runtime --root $tmp/oci/berth run -b $bundle $oci_id"
[ "$podman_ok" = 1 ] || status[podman]="not available ($podman_why)"

busy1=$(settle)
for e in "${engines[@]}"; do
	[ -z "${status[$e]-}" ] || continue
	log=$out/$e.latency.log
	# Preflight: twice, so a reused id (runc, berth runtime) is known to work.
	ok=1
	for _ in 1 2; do
		# shellcheck disable=SC2086
		${cmd[$e]} </dev/null >>"$log" 2>&1 || { ok=0; break; }
	done
	if [ "$ok" = 0 ]; then
		note "$e: preflight failed:"
		sed 's/^/  /' "$log" >&2
		status[$e]=failed
		continue
	fi
	note "$e: $RUNS runs of: ${cmd[$e]}"
	if ! hyperfine -N --runs "$RUNS" --warmup "$WARMUP" --style none \
		--export-json "$out/$e.json" "${cmd[$e]}" >>"$log" 2>&1; then
		note "$e: hyperfine failed:"
		sed 's/^/  /' "$log" >&2
		status[$e]=failed
		continue
	fi
	status[$e]=ok
done

# --- 2. COUNT containers -------------------------------------------------------
# many NAME CLIENT...: COUNT `run -d` in a row, PS_RUNS `ps`, memory, rm -f.
# Leaves $out/NAME.{runs,ps.json,rm} and, through the caller, the memory.
many() {
	local name=$1 t0 t1 t2 i id
	shift
	local -a c=("$@")
	: >"$out/$name.runs"
	t0=$(now)
	for i in $(seq "$COUNT"); do
		t1=$(now)
		id=$("${c[@]}" run -d --network none bb sleep 1000 2>>"$out/$name.many.log") ||
			die "$name run -d failed (container $i): $(tail -n 3 "$out/$name.many.log")"
		t2=$(now)
		echo "$id" >>"$out/$name.ids"
		ms_of "$t1" "$t2" >>"$out/$name.runs"
	done
	t1=$(now)
	ms_of "$t0" "$t1" >"$out/$name.total"
	i=$("${c[@]}" ps -q | wc -l)
	[ "$i" = "$COUNT" ] || die "$name ps shows $i running containers, want $COUNT"
	hyperfine -N --runs "$PS_RUNS" --warmup 1 --style none \
		--export-json "$out/$name.ps.json" "${c[*]} ps" >>"$out/$name.many.log" 2>&1 ||
		die "$name: hyperfine of ps failed"
}
unmany() {
	local name=$1 t0 t1
	shift
	t0=$(now)
	# shellcheck disable=SC2046
	"$@" rm -f $(cat "$out/$name.ids") >>"$out/$name.many.log" 2>&1 || die "$name rm -f failed"
	t1=$(now)
	ms_of "$t0" "$t1" >"$out/$name.rm"
	[ -z "$("$@" ps -aq)" ] || die "$name: containers left after rm -f"
}

busy2=$(settle)
note "berth: $COUNT x run -d bb sleep 1000"
many berth "${b[@]}"
sleep 2
mapfile -t mons < <(monitors)
berth_pss=$(pss "${mons[@]}")
berth_nmon=${#mons[@]}
unmany berth "${b[@]}"

note "docker: $COUNT x run -d --network none bb sleep 1000"
settle >/dev/null
dockerd_before=$(pss "$dpid")
containerd_before=$(pss "$cpid")
many docker "$DOCKER"
sleep 2
mapfile -t shim_pids < <(shims)
shim_pss=$(pss "${shim_pids[@]}")
dockerd_after=$(pss "$dpid")
containerd_after=$(pss "$cpid")
unmany docker "$DOCKER"

# --- 3. log flood ---------------------------------------------------------------
line=0123456789012345678901234567890123456789012345678901234567890123456789
bytes=$((FLOOD_MIB * 1024 * 1024))
flood_cmd="yes $line | head -c $bytes; echo; echo END"
# flood NAME CLIENT...: one flood, appends seconds to $out/NAME.flood.
flood() {
	local name=$1 t0 t1 id logp n
	shift
	sync
	t0=$(now)
	id=$("$@" run -d --network none --log-opt max-size=100m --log-opt max-file=5 bb sh -c "$flood_cmd" 2>>"$out/$name.flood.log") ||
		die "$name: run -d of the flood failed: $(tail -n 3 "$out/$name.flood.log")"
	"$@" wait "$id" >>"$out/$name.flood.log" 2>&1 || die "$name wait failed"
	logp=$("$@" inspect -f '{{.LogPath}}' "$id")
	n=0
	until tail -c 200 "$logp" 2>/dev/null | grep -q '"END\\n"'; do
		n=$((n + 1))
		[ "$n" -lt 3000 ] || die "$name: no END line in $logp 30 s after wait returned"
		sleep 0.01
	done
	t1=$(now)
	awk -v a="$t0" -v z="$t1" 'BEGIN { printf "%.3f\n", (z - a) / 1e9 }' >>"$out/$name.flood"
	# What was kept on disk, to show that both rotated alike.
	echo "$(ls "$logp"* | wc -l) $(du -cb "$logp"* | tail -n 1 | cut -f1)" >"$out/$name.kept"
	"$@" rm -f "$id" >/dev/null
}
busy3=$(settle)
note "log flood: $FLOOD_MIB MiB to stdout, $FLOOD_RUNS runs each, interleaved"
for i in $(seq "$FLOOD_RUNS"); do
	flood berth "${b[@]}"
	flood docker "$DOCKER"
	note "  run $i: berth $(tail -n 1 "$out/berth.flood") s, docker $(tail -n 1 "$out/docker.flood") s"
done

# --- report ---------------------------------------------------------------------
echo
echo "containers, berth against docker on the same busybox image; $(date -u)"
echo "  $(nproc) CPUs, $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
echo "  berth ${berth_version:-?}; dockerd $docker_version ($driver, client $client_version), containerd $containerd_version, runc $runc_version; $(hyperfine --version)"
echo "  CPUs busy before each part (%): $busy1, $busy2, $busy3"
echo
echo "1. start latency: $RUNS runs each (+$WARMUP warmup), hyperfine -N, back to back"
echo
fmt='%-38s | %9s | %16s | %6s | %6s\n'
# shellcheck disable=SC2059
printf "$fmt" command "median ms" "mean ± σ ms" "min ms" "max ms"
declare -A med
label() {
	case $1 in
	berth) echo "berth run --rm bb true" ;;
	docker) echo "docker run --rm bb true" ;;
	podman) echo "podman run --rm bb true" ;;
	runc) echo "runc run (bundle)" ;;
	berth-runtime) echo "berth runtime run (bundle)" ;;
	esac
}
for e in "${engines[@]}"; do
	if [ "${status[$e]}" != ok ]; then
		printf '%-38s | %s\n' "$(label "$e")" "${status[$e]}"
		continue
	fi
	j=$out/$e.json
	med[$e]=$(hstat "$j" median)
	# shellcheck disable=SC2059
	printf "$fmt" "$(label "$e")" "${med[$e]}" "$(hstat "$j" mean) ± $(hstat "$j" stddev)" "$(hstat "$j" min)" "$(hstat "$j" max)"
done
echo
ratio() { awk -v a="$1" -v z="$2" 'BEGIN { if (a == "" || z == "" || z == 0) print "n/a"; else printf "%.2fx", a / z }'; }
r_db=$(ratio "${med[docker]-}" "${med[berth]-}")
r_br=$(ratio "${med[berth]-}" "${med[runc]-}")
[ "$podman_ok" = 1 ] || echo "podman: not available ($podman_why)"
echo "docker/berth (medians): $r_db"
echo "berth/runc (medians):   $r_br"
echo "berth run/berth runtime run (medians): $(ratio "${med[berth]-}" "${med[berth-runtime]-}")"
echo

echo "2. $COUNT containers: run -d bb sleep 1000, one after another; then ps ($PS_RUNS runs, median) with all up"
echo
fmt='%-7s | %8s | %10s | %10s | %13s | %10s\n'
# shellcheck disable=SC2059
printf "$fmt" engine "total s" "per ctr ms" "median ms" "ps median ms" "rm -f s"
for e in berth docker; do
	# shellcheck disable=SC2059
	printf "$fmt" "$e" "$(awk -v t="$(cat "$out/$e.total")" 'BEGIN { printf "%.2f", t / 1000 }')" \
		"$(awk -v t="$(cat "$out/$e.total")" -v n="$COUNT" 'BEGIN { printf "%.1f", t / n }')" \
		"$(median "$out/$e.runs" | awk '{ printf "%.1f", $1 }')" "$(hstat "$out/$e.ps.json" median)" \
		"$(awk -v t="$(cat "$out/$e.rm")" 'BEGIN { printf "%.2f", t / 1000 }')"
done
echo
echo "memory with $COUNT up (Pss, MiB):"
fmt='%-44s | %9s | %13s\n'
# shellcheck disable=SC2059
printf "$fmt" "" total "per container"
# shellcheck disable=SC2059
printf "$fmt" "berth: $berth_nmon berth-monitor processes" "$(mb "$berth_pss")" "$(mb "$berth_pss" "$COUNT")"
# shellcheck disable=SC2059
printf "$fmt" "docker: ${#shim_pids[@]} containerd-shim-runc-v2 processes" "$(mb "$shim_pss")" "$(mb "$shim_pss" "$COUNT")"
# shellcheck disable=SC2059
printf "$fmt" "docker: dockerd growth ($(mb "$dockerd_before") -> $(mb "$dockerd_after"))" \
	"$(mb $((dockerd_after - dockerd_before)))" "$(mb $((dockerd_after - dockerd_before)) "$COUNT")"
# shellcheck disable=SC2059
printf "$fmt" "docker: containerd growth ($(mb "$containerd_before") -> $(mb "$containerd_after"))" \
	"$(mb $((containerd_after - containerd_before)))" "$(mb $((containerd_after - containerd_before)) "$COUNT")"
docker_total=$((shim_pss + dockerd_after - dockerd_before + containerd_after - containerd_before))
# shellcheck disable=SC2059
printf "$fmt" "docker: all of the above" "$(mb "$docker_total")" "$(mb "$docker_total" "$COUNT")"
echo

echo "3. log flood: $FLOOD_MIB MiB of 71-byte lines to stdout, --log-opt max-size=100m --log-opt max-file=5; $FLOOD_RUNS runs each, median"
echo
fmt='%-7s | %8s | %5s | %5s | %7s | %s\n'
# shellcheck disable=SC2059
printf "$fmt" engine "median s" "min s" "max s" "MiB/s" "log kept on disk"
declare -A fmed
for e in berth docker; do
	fmed[$e]=$(median "$out/$e.flood")
	read -r nf kb <"$out/$e.kept"
	# shellcheck disable=SC2059
	printf "$fmt" "$e" "$(printf %.2f "${fmed[$e]}")" "$(sort -n "$out/$e.flood" | head -n 1)" "$(sort -n "$out/$e.flood" | tail -n 1)" \
		"$(awk -v m="$FLOOD_MIB" -v s="${fmed[$e]}" 'BEGIN { printf "%.0f", m / s }')" \
		"$nf files, $(awk -v b="$kb" 'BEGIN { printf "%.0f MiB", b / 1048576 }')"
done
r_flood=$(ratio "${fmed[docker]}" "${fmed[berth]}")
echo "berth/docker throughput: $r_flood"
echo

# goal TEXT OK DETAIL
goal() { if [ "$2" = 1 ]; then echo "$1: PASS ($3)"; else echo "$1: MISS ($3)"; fi; }
ge() { awk -v a="$1" -v z="$2" 'BEGIN { print (a != "n/a" && a + 0 >= z) ? 1 : 0 }'; }
le() { awk -v a="$1" -v z="$2" 'BEGIN { print (a != "n/a" && a + 0 <= z) ? 1 : 0 }'; }
goal "berth run --rm at least 5x faster than docker run --rm" "$(ge "$r_db" 5)" "$r_db"
goal "berth run --rm within 2x of runc run" "$(le "$r_br" 2)" "$r_br"
per=$(mb "$berth_pss" "$COUNT")
goal "berth's per-container processes <= 1 MB Pss each" "$(le "$per" 1)" "$per MiB"
goal "berth log throughput at least 5x docker's" "$(ge "$r_flood" 5)" "$r_flood"
exit 0
