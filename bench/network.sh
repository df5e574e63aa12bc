#!/usr/bin/env bash
# network.sh: berth's bridge networking against Docker's, side by side in
# one run, on the same busybox image (issue 7, "Benchmarks"):
#   1. the extra start time of `run --rm --network bridge bb true` over
#      `--network none`;
#   2. wrk requests/s and p99 latency against busybox httpd in a container,
#      through a port published on 127.0.0.1 and direct to the container's
#      address (the ceiling);
#   3. TCP throughput container to container on one bridge (busybox nc).
#
# Usage (as root; no network needed, all traffic stays on this host):
#   make bench-network          # builds bin/berth, then runs this script
#   RUNS=40 bench/network.sh
#
# Environment:
#   RUNS        hyperfine runs per start command (default 20, at least 20)
#   WARMUP      untimed runs before them (default 3)
#   WRK_D       seconds per wrk run (default 10)
#   C2C_RUNS    nc transfers per engine, interleaved (default 3; median)
#   C2C_MB      MiB per transfer (default 1000)
#   BERTH       berth binary (default bin/berth of this checkout)
#   DOCKER      docker client (default `docker` on PATH)
#   BUSYBOX     static busybox (default /bin/busybox, Debian's busybox-static)
#
# The engines:
#   berth   --root and --run-root in the temp dir; its default `bridge`
#           network (a berth bridge and `table inet berth`, made with the
#           first container and kept, as docker0, until a prune; the
#           start-cost runs come after a warm-up run, as docker0 exists
#           before Docker's). Published ports are
#           nftables DNAT (prerouting + output): no proxy process.
#   docker  a private containerd + dockerd from Debian's docker.io, through
#           scripts/private-dockerd.sh (own roots, sockets, cgroup parent in
#           the temp dir), but WITH its default bridge: docker0, 172.17.0.0/16
#           unless that is taken. It keeps --iptables=false --ip6tables=false
#           --ip-masq=false --ip-forward=false: the least invasive choice that
#           still gives Docker's normal path for a port published on
#           127.0.0.1. With iptables on, Docker's OUTPUT rule skips
#           127.0.0.0/8 (`! -d 127.0.0.0/8 -j DOCKER`), so connections to
#           127.0.0.1:PORT always go through docker-proxy, the userland
#           proxy (on by default); with iptables off that proxy is exactly
#           what serves them, and the host's iptables are never touched.
#           Container to container traffic on docker0 is plain bridging
#           either way. The script refuses to run if docker0 exists already,
#           and deletes docker0 at the end (dockerd leaves it behind).
#
# 1. hyperfine -N, RUNS runs (+WARMUP) of each of
#      ENGINE run --rm --network none bb true
#      ENGINE run --rm --network bridge bb true
#    extra = median(bridge) - median(none).
# 2. In each engine: `run -d -p 127.0.0.1::80 bb httpd -f -p 80 -h /www`
#    (a 612-byte /www/index.html), the host port read back with `port`, the
#    address with inspect. Then `wrk -t2 -c16 -dWRK_Ds --latency` of
#    http://127.0.0.1:PORT/ and of http://ADDR:80/, one after another
#    (each preceded by a 2 s untimed wrk that must get answers and no
#    errors). p99 from wrk's latency distribution.
# 3. Per transfer: `run -d bb nc -l -p 5000` (stdout to /dev/null, in sh),
#    its address from inspect, then
#      run --rm bb sh -c 'time sh -c "dd if=/dev/zero bs=1M count=C2C_MB |
#                                     nc ADDR 5000"'
#    on the same bridge; MB/s = C2C_MB MiB / busybox time's real (10 ms
#    resolution; busybox dd prints no rate), checked against dd's
#    "C2C_MB+0 records out". The server's nc reads its stdin from a
#    `sleep |` pipe, so it never closes first; the client's nc closes its
#    sending side at the end of stdin and exits when the server has closed
#    too, so the time covers the last byte received. Engines interleaved,
#    median kept.
#
# Goals (from the issue) are printed as PASS/MISS for information; the exit
# status is 0 either way. Everything is removed on exit, failure or not:
# containers (rm -f, then `berth network prune` for its bridge and nft
# table), the daemons (stopped by PID), docker0, mounts under the temp dir
# (both engines' pinned namespaces), the cgroup parent, the temp dir. The
# last lines printed are a check of the host: links, nftables tables,
# iptables rules, sysctls and docker-proxy processes, before and after.
#
# Traffic goes only to 127.0.0.1 and to the containers' addresses on the
# bridges this script's engines made.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
RUNS=${RUNS:-20}
WARMUP=${WARMUP:-3}
WRK_D=${WRK_D:-10}
C2C_RUNS=${C2C_RUNS:-3}
C2C_MB=${C2C_MB:-1000}
BERTH=${BERTH:-$repo/bin/berth}
DOCKER=${DOCKER:-docker}
BUSYBOX=${BUSYBOX:-/bin/busybox}

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root: containers need it (try: sudo $0)"
[ -x "$BERTH" ] || die "no berth binary at $BERTH: run make build first"
[ -x "$BUSYBOX" ] || die "no busybox at $BUSYBOX: install busybox-static or set BUSYBOX"
command -v hyperfine >/dev/null || die "needs hyperfine (Debian package hyperfine)"
command -v wrk >/dev/null || die "needs wrk (Debian package wrk)"
for c in dockerd containerd containerd-shim-runc-v2 runc docker-proxy ip nft iptables-save "$DOCKER"; do
	command -v "$c" >/dev/null || die "needs $c (Debian packages docker.io, iproute2, nftables, iptables)"
done
[ "$RUNS" -ge 20 ] || die "RUNS=$RUNS: use at least 20 runs"
for v in WARMUP WRK_D C2C_RUNS C2C_MB; do
	case ${!v} in '' | *[!0-9]*) die "$v=${!v}: want a whole number" ;; esac
done
for a in sh true sleep httpd nc dd time; do
	"$BUSYBOX" --list | grep -qx "$a" || die "$BUSYBOX has no $a applet"
done
! ip link show docker0 >/dev/null 2>&1 || die "docker0 exists already (another dockerd?): not ours to use or remove"

# --- the host before ----------------------------------------------------------
sysctls="net.ipv4.ip_forward net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables"
hoststate() {
	echo "links: $(ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort | tr '\n' ' ')"
	echo "nft tables: $(nft list tables 2>/dev/null | tr '\n' ' ')"
	echo "iptables-save rules/chains: $(iptables-save 2>/dev/null | grep -c '^[-:]') (sha $(iptables-save 2>/dev/null | grep '^[-:]' | sed 's/\[[0-9:]*\]//' | sha1sum | cut -c1-12))"
	local s
	for s in $sysctls; do echo "$s = $(sysctl -n "$s" 2>/dev/null || echo n/a)"; done
	echo "docker-proxy processes: $(pgrep -x docker-proxy | wc -l)"
}
before=$(hoststate)

tmp=$(mktemp -d /tmp/berth-bench-network.XXXXXX)
out=$tmp/out
cgparent=berth-bench-network-$$
b=("$BERTH" --root "$tmp/berth/root" --run-root "$tmp/berth/run")
docker_up=0
made_docker0=0
mkdir -p "$out" "$tmp/berth"

mapfile -t cgroups_before < <(ls -d /sys/fs/cgroup/*/berth /sys/fs/cgroup/berth 2>/dev/null || true)

. "$repo/scripts/private-dockerd.sh"
# private_dockerd_start runs dockerd with --bridge=none; this wrapper drops
# that one flag (and only it), so the private dockerd gets its default
# bridge. exec: $! stays dockerd's own PID, which the stop functions use.
dockerd() {
	local a args=()
	for a; do [ "$a" = --bridge=none ] || args+=("$a"); done
	exec dockerd "${args[@]}"
}

cleanup() {
	local rc=$? d ids
	trap - EXIT INT TERM
	set +e
	ids=$("${b[@]}" ps -aq 2>/dev/null)
	# shellcheck disable=SC2086
	[ -z "$ids" ] || "${b[@]}" rm -f $ids >/dev/null 2>&1
	# The default bridge and its rules stay after the last container (as
	# docker0); a prune takes them down.
	"${b[@]}" network prune -f >/dev/null 2>&1
	if [ "$docker_up" = 1 ]; then
		ids=$("$DOCKER" ps -aq 2>/dev/null)
		# shellcheck disable=SC2086
		[ -z "$ids" ] || "$DOCKER" rm -f $ids >/dev/null 2>&1
	fi
	private_dockerd_stop "$tmp" "$cgparent"
	if [ "$made_docker0" = 1 ] || { [ "$docker_up" = 1 ] && ip link show docker0 >/dev/null 2>&1; }; then
		ip link del docker0 2>/dev/null
	fi
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
	after=$(hoststate)
	echo
	echo "host check (before -> after the run):"
	if [ "$before" = "$after" ]; then
		echo "$after" | sed 's/^/  same: /'
		echo "host check: PASS (nothing left: no docker0, veth, berth bridge, nft table, iptables rule, sysctl change, docker-proxy)"
	else
		diff <(echo "$before") <(echo "$after") | sed 's/^/  /'
		echo "host check: MISS (the host differs; see above)"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers -----------------------------------------------------------------
# busy: how busy the CPUs were over 3 s, in %, from /proc/stat (reported,
# not waited for: this machine is shared).
busy() {
	local a z
	a=$(head -n 1 /proc/stat)
	sleep 3
	z=$(head -n 1 /proc/stat)
	printf '%s\n%s\n' "$a" "$z" | awk '{ idle[NR] = $5 + $6; tot[NR] = 0; for (i = 2; i <= 9 && i <= NF; i++) tot[NR] += $i }
		END { d = tot[2] - tot[1]; printf "%.0f", (d > 0 ? 100 * (d - (idle[2] - idle[1])) / d : 0) }'
}
hstat() {
	sed -n "s/^ *\"$2\": *\([0-9.eE+-]*\),\{0,1\}\$/\1/p" "$1" | head -n 1 |
		awk '{ printf "%.1f", $1 * 1000 }'
}
median() {
	sort -n "$1" | awk '{ v[NR] = $1 } END {
		if (NR) printf "%.3f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# --- the image ----------------------------------------------------------------
mkdir -p "$tmp/rootfs/bin" "$tmp/rootfs/www"
for d in proc sys dev tmp etc; do mkdir -p "$tmp/rootfs/$d"; done
cp "$BUSYBOX" "$tmp/rootfs/bin/busybox"
for a in sh true sleep httpd nc dd time cat; do ln -s busybox "$tmp/rootfs/bin/$a"; done
# 612 bytes, the size of nginx's welcome page.
head -c 600 /dev/zero | tr '\0' x | { printf '<html>'; cat; printf '</html>\n'; } >"$tmp/rootfs/www/index.html"
tar --numeric-owner --owner=0 --group=0 -C "$tmp/rootfs" -cf "$tmp/rootfs.tar" .

"${b[@]}" import - bb:latest <"$tmp/rootfs.tar" >/dev/null || die "berth import failed"

note "starting a private containerd and dockerd, with its default bridge"
private_dockerd_start "$tmp" "$cgparent" || die "the private dockerd did not start"
docker_up=1
ip link show docker0 >/dev/null 2>&1 && made_docker0=1
[ "$made_docker0" = 1 ] || die "dockerd made no docker0"
"$DOCKER" import - bb:latest <"$tmp/rootfs.tar" >/dev/null || die "docker import failed"
[ "$("$DOCKER" network inspect bridge -f '{{.Driver}}')" = bridge ] ||
	die "docker has no bridge network"

berth_version=$("$BERTH" version 2>/dev/null | sed -n 's/^ *Version: *//p' | head -n 1)
docker_version=$("$DOCKER" version -f '{{.Server.Version}}')
containerd_version=$(containerd --version | awk '{ print $3 }')
runc_version=$(runc --version | sed -n '1s/^[^0-9]*//p')
docker_subnet=$("$DOCKER" network inspect bridge -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}')

# --- 1. start time, none vs bridge --------------------------------------------
busy1=$(busy)
declare -A cmd smed
cmd[berth-none]="${b[*]} run --rm --network none bb true"
cmd[berth-bridge]="${b[*]} run --rm --network bridge bb true"
cmd[docker-none]="$DOCKER run --rm --network none bb true"
cmd[docker-bridge]="$DOCKER run --rm --network bridge bb true"
starts=(berth-none berth-bridge docker-none docker-bridge)
for k in "${starts[@]}"; do
	log=$out/$k.log
	# shellcheck disable=SC2086
	${cmd[$k]} </dev/null >>"$log" 2>&1 || { sed 's/^/  /' "$log" >&2; die "$k: preflight failed: ${cmd[$k]}"; }
	note "$k: $RUNS runs of: ${cmd[$k]}"
	hyperfine -N --runs "$RUNS" --warmup "$WARMUP" --style none \
		--export-json "$out/$k.json" "${cmd[$k]}" >>"$log" 2>&1 ||
		{ sed 's/^/  /' "$log" >&2; die "$k: hyperfine failed"; }
	smed[$k]=$(hstat "$out/$k.json" median)
done
extra() { awk -v a="$1" -v z="$2" 'BEGIN { printf "%.1f", z - a }'; }
berth_extra=$(extra "${smed[berth-none]}" "${smed[berth-bridge]}")
docker_extra=$(extra "${smed[docker-none]}" "${smed[docker-bridge]}")

# --- 2. httpd through a published port and direct ------------------------------
# httpd ENGINE...: starts the server; sets hid, hport, haddr.
httpd_up() {
	hid=$("$@" run -d -p 127.0.0.1::80 bb httpd -f -p 80 -h /www) || die "$1: httpd container did not start"
	hport=$("$@" port "$hid" 80/tcp | sed -n 's/^127\.0\.0\.1:\([0-9]*\)$/\1/p' | head -n 1)
	[ -n "$hport" ] || die "$1: no 127.0.0.1 host port for 80/tcp: $("$@" port "$hid")"
	haddr=$("$@" inspect -f '{{.NetworkSettings.IPAddress}}' "$hid")
	[ -n "$haddr" ] || die "$1: no container address"
}
busy2=$(busy)
httpd_up "${b[@]}"
b_hid=$hid b_port=$hport b_addr=$haddr
httpd_up "$DOCKER"
d_hid=$hid d_port=$hport d_addr=$haddr
note "berth httpd: 127.0.0.1:$b_port and $b_addr:80; docker httpd: 127.0.0.1:$d_port and $d_addr:80"
pgrep -x docker-proxy >/dev/null || die "no docker-proxy process: docker's published port would not be its usual path"

# wrkrun NAME URL: wrk output in $out/NAME.wrk; rps and p99 (ms) parsed.
declare -A rps p99 wrkerr
to_ms() {
	awk '{ v = $1; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) sub(/ms$/, "", v);
		else if (v ~ /m$/) { sub(/m$/, "", v); v *= 60000 } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
		printf "%.2f", v }'
}
wrkrun() {
	local name=$1 url=$2 w
	# Untimed: the server must answer, with no errors.
	w=$(wrk -t1 -c1 -d2s "$url" 2>&1) || die "$name: wrk failed against $url: $w"
	if ! grep -q '^Requests/sec' <<<"$w" || grep -qE 'Socket errors|Non-2xx' <<<"$w" ||
		[ "$(awk '/requests in/ { print $1 }' <<<"$w")" = 0 ]; then
		die "$name: no clean answers from $url: $w"
	fi
	note "$name: wrk -t2 -c16 -d${WRK_D}s --latency $url"
	wrk -t2 -c16 -d"${WRK_D}s" --latency "$url" >"$out/$name.wrk" 2>&1 || die "$name: wrk failed: $(cat "$out/$name.wrk")"
	rps[$name]=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$out/$name.wrk")
	p99[$name]=$(awk '$1 == "99%" { print $2 }' "$out/$name.wrk" | to_ms)
	wrkerr[$name]=$(grep -E 'Socket errors|Non-2xx' "$out/$name.wrk" | sed 's/^ *//' | tr '\n' ';' || true)
}
wrkrun berth-published "http://127.0.0.1:$b_port/"
wrkrun berth-direct "http://$b_addr:80/"
wrkrun docker-published "http://127.0.0.1:$d_port/"
wrkrun docker-direct "http://$d_addr:80/"
"${b[@]}" rm -f "$b_hid" >/dev/null
"$DOCKER" rm -f "$d_hid" >/dev/null

# --- 3. container to container ------------------------------------------------
# c2c NAME ENGINE...: one transfer; appends MB/s to $out/NAME.c2c.
c2c() {
	local name=$1 sid saddr t r s
	shift
	# stdin from a pipe that never ends: at the end of its stdin (a detached
	# container's is /dev/null) nc would close its side and the client's
	# nc would quit at once.
	sid=$("$@" run -d bb sh -c 'sleep 100000 | nc -l -p 5000 >/dev/null') || die "$name: nc server did not start"
	saddr=$("$@" inspect -f '{{.NetworkSettings.IPAddress}}' "$sid")
	[ -n "$saddr" ] || die "$name: no address for the nc server"
	sleep 0.5 # nc listening
	# busybox time writes to stderr: "real\t0m 1.23s".
	# dd says "N+0 records out" only when all N MiB went into the pipe.
	if ! t=$("$@" run --rm bb sh -c "time sh -c 'dd if=/dev/zero bs=1M count=$C2C_MB | nc $saddr 5000'" 2>&1) ||
		! grep -q "^$C2C_MB+0 records out" <<<"$t"; then
		"$@" rm -f "$sid" >/dev/null 2>&1
		die "$name: transfer failed: $t"
	fi
	"$@" rm -f "$sid" >/dev/null
	r=$(awk '$1 == "real" { m = $2; sub(/m$/, "", m); s = $3; sub(/s$/, "", s); print m * 60 + s }' <<<"$t")
	[ -n "$r" ] || die "$name: no time in: $t"
	echo "$r" >>"$out/$name.c2c.s"
	awk -v r="$r" -v n="$C2C_MB" 'BEGIN { printf "%.0f\n", (r > 0 ? n * 1.048576 / r : 0) }' >>"$out/$name.c2c"
}
busy3=$(busy)
note "container to container: $C2C_RUNS x $C2C_MB MiB through nc, engines interleaved"
for i in $(seq "$C2C_RUNS"); do
	c2c berth "${b[@]}"
	c2c docker "$DOCKER"
	note "  run $i: berth $(tail -n 1 "$out/berth.c2c") MB/s, docker $(tail -n 1 "$out/docker.c2c") MB/s"
done
declare -A cmed
for e in berth docker; do cmed[$e]=$(median "$out/$e.c2c" | awk '{ printf "%.0f", $1 }'); done

# --- report ---------------------------------------------------------------------
echo
echo "networking, berth against docker on the same busybox image; $(date -u)"
echo "  $(nproc) CPUs, $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
echo "  berth ${berth_version:-?}; dockerd $docker_version (docker0 $docker_subnet, userland proxy, --iptables=false), containerd $containerd_version, runc $runc_version"
echo "  $(hyperfine --version); $(wrk --version 2>&1 | head -n 1 | awk '{ print $1, $2 }')"
echo "  CPUs busy before each part (%): $busy1, $busy2, $busy3; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "1. start: run --rm bb true, $RUNS runs each (+$WARMUP warmup), hyperfine -N"
echo
fmt='%-7s | %15s | %17s | %8s\n'
# shellcheck disable=SC2059
printf "$fmt" engine "none median ms" "bridge median ms" "extra ms"
# shellcheck disable=SC2059
printf "$fmt" berth "${smed[berth-none]}" "${smed[berth-bridge]}" "$berth_extra"
# shellcheck disable=SC2059
printf "$fmt" docker "${smed[docker-none]}" "${smed[docker-bridge]}" "$docker_extra"
echo
echo "2. busybox httpd -f (612-byte page), wrk -t2 -c16 -d${WRK_D}s --latency, one run each"
echo
fmt='%-7s | %-38s | %8s | %7s | %s\n'
# shellcheck disable=SC2059
printf "$fmt" engine path "req/s" "p99 ms" errors
for e in berth docker; do
	for p in published direct; do
		k=$e-$p
		if [ "$p" = published ]; then
			port=$b_port; [ "$e" = docker ] && port=$d_port
			path="127.0.0.1:$port -> :80"
			[ "$e" = docker ] && path="$path (docker-proxy)" || path="$path (nft DNAT)"
		else
			a=$b_addr; [ "$e" = docker ] && a=$d_addr
			path="direct $a:80"
		fi
		# shellcheck disable=SC2059
		printf "$fmt" "$e" "$path" "${rps[$k]}" "${p99[$k]}" "${wrkerr[$k]:-none}"
	done
done
pct() { awk -v a="$1" -v z="$2" 'BEGIN { printf "%.1f", (z > 0 ? 100 * a / z : 0) }'; }
b_pct=$(pct "${rps[berth-published]}" "${rps[berth-direct]}")
d_pct=$(pct "${rps[docker-published]}" "${rps[docker-direct]}")
echo "published/direct: berth $b_pct%, docker $d_pct%"
echo
echo "3. container to container, one bridge: dd $C2C_MB MiB | nc; $C2C_RUNS runs each, interleaved, median"
echo
fmt='%-7s | %11s | %8s | %8s | %s\n'
# shellcheck disable=SC2059
printf "$fmt" engine "median MB/s" "min" "max" "seconds per run"
for e in berth docker; do
	# shellcheck disable=SC2059
	printf "$fmt" "$e" "${cmed[$e]}" "$(sort -n "$out/$e.c2c" | head -n 1)" "$(sort -n "$out/$e.c2c" | tail -n 1)" \
		"$(tr '\n' ' ' <"$out/$e.c2c.s")"
done
echo

goal() { if [ "$2" = 1 ]; then echo "$1: PASS ($3)"; else echo "$1: MISS ($3)"; fi; }
cmp() { awk -v a="$1" -v z="$3" -v o="$2" 'BEGIN { print ((o == "le" && a + 0 <= z + 0) || (o == "ge" && a + 0 >= z + 0)) ? 1 : 0 }'; }
goal "bridge adds <= 5 ms to berth run --rm" "$(cmp "$berth_extra" le 5)" "+$berth_extra ms; docker +$docker_extra ms"
ok=0
[ "$(cmp "$b_pct" ge 95)" = 1 ] && [ "$(cmp "${p99[berth-published]}" le 10)" = 1 ] && ok=1
goal "berth published port >= 95% of direct req/s with p99 <= 10 ms" "$ok" \
	"$b_pct%, p99 ${p99[berth-published]} ms; docker $d_pct%, p99 ${p99[docker-published]} ms"
goal "berth container-to-container throughput >= docker's" "$(cmp "${cmed[berth]}" ge "${cmed[docker]}")" \
	"${cmed[berth]} vs ${cmed[docker]} MB/s"
exit 0
