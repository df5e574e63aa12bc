#!/usr/bin/env bash
# runtime.sh: time `run` of a busybox `true` container with berth's OCI
# runtime, runc and crun, side by side, on one bundle.
#
# Usage (as root, no network needed):
#   make bench                  # builds bin/berth, then runs this script
#   RUNS=100 bench/runtime.sh
#
# Environment:
#   RUNS      timed runs per runtime (default 50, at least 30)
#   WARMUP    untimed runs before them (default 3)
#   RSS_RUNS  runs under GNU time for the peak RSS (default 5; median kept)
#   GAP_MS    pause before each timed run (default 0: back to back); see
#             docs/benchmarks.md for why back-to-back runs flatter fast
#             runtimes on cgroup v1 hosts
#   BERTH     berth binary (default bin/berth of this checkout)
#   BUSYBOX   static busybox copied into the rootfs (default /bin/busybox)
#
# Wall time is hyperfine's (-N: no shell between hyperfine and the runtime).
# Peak RSS is GNU time's %M: the ru_maxrss that wait4 returns for the runtime
# process, which is the largest single resident set in its process tree
# (itself across execs, plus the children it reaped: `berth init`,
# `runc init`, the container's process), not the sum of the tree.
#
# One container id per runtime is reused for every run: `run` without --keep
# deletes the container when its process exits, which the preflight checks.
# Each runtime keeps its state under its own --root in a temp dir; the temp
# dir and any cgroup left under /sys/fs/cgroup/*/ with a bench id are removed
# on exit. A runtime that is not installed is skipped. Goals are printed as
# PASS/MISS for information: the exit status is 0 either way.
#
# Layout of the temp dir:
#
#   $tmp/
#   ├── bundle/
#   │   ├── config.json            from `berth runtime spec`, then edited
#   │   └── rootfs/
#   │       ├── bin/{busybox,sh,true}
#   │       └── {proc,sys,dev,tmp,etc}/
#   ├── state/<runtime>/           --root of each runtime
#   └── out/<runtime>.{json,rss,log}
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
RUNS=${RUNS:-50}
WARMUP=${WARMUP:-3}
RSS_RUNS=${RSS_RUNS:-5}
GAP_MS=${GAP_MS:-0}
BERTH=${BERTH:-$repo/bin/berth}
BUSYBOX=${BUSYBOX:-/bin/busybox}

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root: containers need it (try: sudo $0)"
command -v hyperfine >/dev/null || die "needs hyperfine (Debian package hyperfine)"
[ -x "$BERTH" ] || die "no berth binary at $BERTH: run make build first"
[ -x "$BUSYBOX" ] || die "no busybox at $BUSYBOX: install busybox-static or set BUSYBOX"
[ "$RUNS" -ge 30 ] || die "RUNS=$RUNS: use at least 30 runs"
case $GAP_MS in '' | *[!0-9]*) die "GAP_MS=$GAP_MS: want whole milliseconds" ;; esac
gap=()
if [ "$GAP_MS" -gt 0 ]; then
	# --prepare runs untimed before every run (without a shell, under -N).
	gap=(--prepare "sleep $(awk -v ms="$GAP_MS" 'BEGIN { printf "%.3f", ms / 1000 }')")
fi
have_time=0
[ -x /usr/bin/time ] && have_time=1 || note "no /usr/bin/time (Debian package time): peak RSS not measured"

tmp=$(mktemp -d /tmp/berth-bench.XXXXXX)
bundle=$tmp/bundle
idbase=bench-$$
runtimes=(berth runc crun)

# Cgroup parents that exist now are not ours to remove later.
mapfile -t cgroups_before < <(ls -d /sys/fs/cgroup/*/berth 2>/dev/null || true)

# wrap NAME: the command prefix a runtime runs under (crun needs a private
# mount namespace on hybrid cgroup hosts, see crun-private.sh).
wrap() {
	if [ "$1" = crun ]; then
		echo "$here/crun-private.sh"
	fi
}

# bin NAME: the runtime's command line up to the global flags.
bin() {
	case $1 in
	berth) echo "$BERTH runtime" ;;
	*) command -v "$1" ;;
	esac
}

# leftovers ID: cgroup directories named ID, deepest first.
leftovers() {
	find /sys/fs/cgroup -mindepth 2 -depth -type d -name "$1" 2>/dev/null || true
}

cleanup() {
	local name id root w
	for name in "${runtimes[@]}"; do
		id=$idbase-$name
		root=$tmp/state/$name
		if [ -e "$root/$id" ]; then
			w=$(wrap "$name")
			# shellcheck disable=SC2046
			$w $(bin "$name") --root "$root" delete --force "$id" >/dev/null 2>&1 || true
		fi
	done
	local d
	while read -r d; do
		[ -n "$d" ] || continue
		rmdir "$d" 2>/dev/null && note "removed leftover cgroup $d" || note "could not remove cgroup $d"
	done < <(leftovers "$idbase-*")
	for d in /sys/fs/cgroup/*/berth; do
		[ -d "$d" ] || continue
		case " ${cgroups_before[*]-} " in *" $d "*) continue ;; esac
		rmdir "$d" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- bundle --------------------------------------------------------------
mkdir -p "$bundle/rootfs/bin" "$tmp/out"
for d in proc sys dev tmp etc; do mkdir -p "$bundle/rootfs/$d"; done
cp "$BUSYBOX" "$bundle/rootfs/bin/busybox"
ln -s busybox "$bundle/rootfs/bin/sh"
ln -s busybox "$bundle/rootfs/bin/true"
"$BERTH" runtime spec -b "$bundle"
# No terminal, run `true`; ociVersion 1.0.2 because crun 1.8 accepts only
# 1.0.x (berth and runc accept it too, so all three share one config).
sed -i \
	-e 's/"terminal": true/"terminal": false/' \
	-e 's/"ociVersion": "[^"]*"/"ociVersion": "1.0.2"/' \
	-e '/"args": \[/,/\]/c\		"args": [\n\t\t\t"true"\n\t\t],' \
	"$bundle/config.json"
grep -q '"terminal": false' "$bundle/config.json" || die "could not set terminal=false in config.json"
tr -d ' \t\n' <"$bundle/config.json" | grep -q '"args":\["true"\]' || die "could not set args in config.json"

# --- measure ---------------------------------------------------------------
declare -A status version
for name in "${runtimes[@]}"; do
	if [ "$name" != berth ] && ! command -v "$name" >/dev/null; then
		status[$name]="not installed"
		continue
	fi
	if [ "$name" = crun ] && ! command -v unshare >/dev/null; then
		status[$name]="needs unshare (util-linux)"
		continue
	fi
	id=$idbase-$name
	root=$tmp/state/$name
	mkdir -p "$root"
	w=$(wrap "$name")
	cmd="$(bin "$name") --root $root run -b $bundle $id"
	log=$tmp/out/$name.log
	case $name in
	berth) version[$name]=$("$BERTH" version 2>/dev/null | sed -n 's/^ *Version: *//p') ;;
	*) version[$name]=$("$name" --version | sed -n '1s/^[^0-9]*//p') ;;
	esac

	# Preflight: twice with the same id, so a fixed id is known to work,
	# and nothing of the container may survive its run.
	ok=1
	for _ in 1 2; do
		# shellcheck disable=SC2086
		if ! $w $cmd </dev/null >>"$log" 2>&1; then ok=0; break; fi
	done
	if [ "$ok" = 1 ] && { [ -e "$root/$id" ] || [ -n "$(leftovers "$id")" ]; }; then
		note "$name: state or cgroups of $id left after run"
		ok=0
	fi
	if [ "$ok" = 0 ]; then
		note "$name: preflight failed:"
		sed 's/^/  /' "$log" >&2
		status[$name]="failed"
		continue
	fi

	note "$name: $RUNS runs of: ${w:+$w }$cmd"
	# shellcheck disable=SC2086
	if ! $w hyperfine -N --runs "$RUNS" --warmup "$WARMUP" --style none "${gap[@]}" \
		--export-json "$tmp/out/$name.json" "$cmd" >>"$log" 2>&1; then
		note "$name: hyperfine failed:"
		sed 's/^/  /' "$log" >&2
		status[$name]="failed"
		continue
	fi
	if [ "$have_time" = 1 ]; then
		for i in $(seq "$RSS_RUNS"); do
			# shellcheck disable=SC2086
			$w /usr/bin/time -f %M -o "$tmp/out/$name.rss.$i" $cmd </dev/null >/dev/null 2>>"$log" || true
			tail -n 1 "$tmp/out/$name.rss.$i" >>"$tmp/out/$name.rss"
		done
	fi
	if [ -e "$root/$id" ] || [ -n "$(leftovers "$id")" ]; then
		note "$name: state or cgroups of $id left after the timed runs"
	fi
	status[$name]=ok
done

# --- report ----------------------------------------------------------------
# ms FILE KEY: a hyperfine --export-json statistic, seconds -> milliseconds.
ms() {
	sed -n "s/^ *\"$2\": *\([0-9.eE+-]*\),\{0,1\}\$/\1/p" "$1" | head -n 1 |
		awk '{ printf "%.1f", $1 * 1000 }'
}
# rss_mb FILE: the median of GNU time's %M samples (KiB), in MiB.
rss_mb() {
	grep -E '^[0-9]+$' "$1" 2>/dev/null | sort -n |
		awk '{ v[NR] = $1 } END { if (NR) printf "%.1f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) / 1024; else printf "n/a" }'
}

declare -A median
echo
pause="back to back"
[ "$GAP_MS" -gt 0 ] && pause="$GAP_MS ms apart"
echo "run of busybox true: $RUNS runs each (+$WARMUP warmup), $pause; $(uname -r), $(nproc) CPUs"
for name in "${runtimes[@]}"; do
	[ -n "${version[$name]-}" ] && echo "  $name ${version[$name]}"
done
echo
fmt='%-8s | %9s | %7s | %6s | %6s | %11s\n'
# shellcheck disable=SC2059
printf "$fmt" runtime "median ms" "mean ms" "min ms" "max ms" "peak RSS MB"
for name in "${runtimes[@]}"; do
	if [ "${status[$name]}" != ok ]; then
		printf '%-8s | %s\n' "$name" "${status[$name]}"
		continue
	fi
	j=$tmp/out/$name.json
	median[$name]=$(ms "$j" median)
	rss=n/a
	[ "$have_time" = 1 ] && rss=$(rss_mb "$tmp/out/$name.rss")
	# shellcheck disable=SC2059
	printf "$fmt" "$name" "${median[$name]}" "$(ms "$j" mean)" "$(ms "$j" min)" "$(ms "$j" max)" "$rss"
done
echo

# goal TEXT A B FACTOR: PASS when median A <= FACTOR * median B.
goal() {
	local a=${median[$2]-} b=${median[$3]-}
	if [ -z "$a" ] || [ -z "$b" ]; then
		echo "$1: n/a ($3 or $2 not measured)"
		return
	fi
	awk -v t="$1" -v a="$a" -v b="$b" -v f="$4" -v n="$3" 'BEGIN {
		printf "%s: %s (berth %.1f ms, %s %.1f ms, ratio %.2fx)\n",
			t, (a <= f * b ? "PASS" : "MISS"), a, n, b, a / b }'
}
goal "berth median <= runc median" berth runc 1
goal "berth median within 1.5x of crun" berth crun 1.5
exit 0
