#!/usr/bin/env bash
# interop-registry.sh: berth, a real Docker engine and skopeo exchange
# images through a real registry (Debian's docker-registry) on loopback,
# then through berth's own (`berth registry serve`).
#
# Usage (as root; no network beyond 127.0.0.1):
#   make interop-registry        # builds bin/berth, then runs this script
#
# Starts /usr/bin/docker-registry (distribution 2.8, plain HTTP on
# 127.0.0.1:<random port>, storage in the temp dir, config.yml as
# internal/registry/registrytest writes it) and a private containerd and
# dockerd through scripts/private-dockerd.sh (their own roots and sockets,
# --iptables=false --ip-masq=false --ip-forward=false --bridge=none, their
# own cgroup parent). 127.0.0.0/8 is an insecure (HTTP) registry by default
# for berth and dockerd; skopeo gets --tls-verify=false. Everything is
# stopped by PID and the temp dir removed on exit, failure or not. Then,
# one step per line, PASS or FAIL:
#
#   1. berth import of a busybox rootfs -> berth tag -> berth push
#   2. skopeo inspect shows the digest berth push printed; skopeo copy to an
#      oci: dir succeeds (skopeo verifies every blob's digest)
#   3. docker pull of it; docker run --rm --network none IMG sh -c 'echo ...'
#      prints it
#   4. docker import of the rootfs -> docker push (docker's manifest and
#      gzip) -> berth pull into a fresh root: the digest docker push printed
#      and docker's image ID -> berth run --rm prints
#   5. docker save (a docker-archive) -> skopeo copy docker-archive:
#      docker:// -> berth pull into a fresh root: the digest skopeo wrote
#      -> berth run --rm prints
#
# Then the same engines against `berth registry serve` (plain HTTP on
# 127.0.0.1:<random port>, fresh storage in the temp dir):
#
#   6. the registry is up: it listens (ss shows its PID) and GET /v2/
#      answers 200 with Docker-Distribution-API-Version: registry/2.0
#   7. docker tag of the docker-made image -> docker push into it: docker's
#      schema 2 manifest, its chunked uploads and mount attempts
#   8. docker rmi of every tag of that image (the image is gone from
#      dockerd) -> docker pull: the digest docker push printed -> docker
#      run --rm prints
#   9. berth pull into a fresh root: docker's digest and image ID -> berth
#      run --rm prints
#  10. skopeo inspect shows docker's digest; skopeo copy to an oci: dir
#      (every blob's digest verified)
#  11. berth push of berth's own image (step 1) into it; docker rmi of
#      dockerd's copy from step 3 -> docker pull: the digest berth printed
#      -> docker run --rm prints
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
#   ├── registry/{config.yml,storage/,registry.log}
#   ├── registry-berth/{storage/,log}   berth registry serve
#   ├── containerd/ docker/ docker.sock client/   the private daemons
#   ├── rootfs/ rootfs.tar        busybox: sh echo cat ls
#   ├── berth-{push,docker,skopeo}/  one --root per direction
#   ├── berth-breg/               --root for the pull from berth's registry
#   ├── oci/ oci-breg/            skopeo's copies of berth's push and of
#   │                             docker's push to berth's registry
#   ├── d.tar                     docker save of the docker-made image
#   └── skopeo-cache/ policy.json skopeo's blob-info cache (bind-mounted
#                                 over /var/lib/containers/cache in a
#                                 private mount namespace) and policy
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
BERTH=${BERTH:-$repo/bin/berth}
DOCKER=${DOCKER:-docker}
BUSYBOX=${BUSYBOX:-/bin/busybox}
REGISTRY=/usr/bin/docker-registry

die() { echo "interop-registry: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root: dockerd needs it (try: sudo $0)"
[ -x "$BERTH" ] || die "no berth binary at $BERTH: run make build first"
[ -x "$BUSYBOX" ] || die "no busybox at $BUSYBOX: install busybox-static or set BUSYBOX"
[ -x "$REGISTRY" ] || die "needs $REGISTRY (Debian package docker-registry)"
for c in dockerd containerd containerd-shim-runc-v2 runc "$DOCKER" skopeo curl jq ss unshare; do
	command -v "$c" >/dev/null || die "needs $c (Debian packages docker.io, skopeo, curl, jq, iproute2)"
done

work=$(mktemp -d /tmp/berth-registry.XXXXXX)
cgparent=berth-interop-registry-$$
reg_pid=
breg_pid=
. "$repo/scripts/private-dockerd.sh"
cleanup() {
	local rc=$? r ids
	trap - EXIT INT TERM
	if [ "$rc" != 0 ]; then
		for f in registry/registry.log registry-berth/log dockerd.log; do
			[ -s "$work/$f" ] || continue
			echo "--- last lines of $f:" >&2
			tail -n 15 "$work/$f" >&2
		done
	fi
	for r in "$work"/berth-*; do
		[ -d "$r" ] || continue
		ids=$("$BERTH" --root "$r" ps -aq 2>/dev/null)
		# shellcheck disable=SC2086
		[ -z "$ids" ] || "$BERTH" --root "$r" rm -f $ids >/dev/null 2>&1
	done
	stop "$reg_pid"
	stop "$breg_pid"
	private_dockerd_stop "$work" "$cgparent" # also unmounts anything left under $work
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fails=0
result() { # result NAME STATUS [DETAIL]; DETAIL on one line
	local d=${3:-}
	d=${d//$'\n'/ | }
	if [ "$2" = 0 ]; then echo "PASS  $1${d:+  ($d)}"; else echo "FAIL  $1${d:+  ($d)}"; fails=$((fails + 1)); fi
}
# quiet CMD...: run, and on failure show what it printed.
quiet() {
	local out
	out=$("$@" 2>&1) && return 0
	local rc=$?
	printf '  $ %s\n%s\n' "$*" "$out" | sed 's/^/  /' >&2
	return "$rc"
}
# capture VAR CMD...: run, keep the output (stdout and stderr) in VAR, and
# on failure show it.
capture() {
	local __v=$1 __out __rc
	shift
	__out=$("$@" 2>&1)
	__rc=$?
	printf -v "$__v" '%s' "$__out"
	[ "$__rc" = 0 ] || printf '  $ %s\n%s\n' "$*" "$__out" | sed 's/^/  /' >&2
	return "$__rc"
}
# digest_of TEXT: the sha256 digest in a "...: digest: sha256:... size: N"
# line (docker's and berth's push output).
digest_of() { sed -n 's/.*digest: \(sha256:[0-9a-f]\{64\}\).*/\1/p' <<<"$1" | tail -n 1; }
# no_mounts DIR: nothing is mounted under DIR.
no_mounts() { ! awk -v w="$1" 'index($5, w "/") == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; }

# sk: skopeo with its blob-info cache in the temp dir, not the host's
# /var/lib/containers/cache, and an explicit policy.
mkdir -p "$work/skopeo-cache"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$work/policy.json"
sk() {
	if [ -d /var/lib/containers/cache ]; then
		unshare -m sh -c 'c=$1 p=$2; shift 2; mount --make-rprivate / && mount --bind "$c" /var/lib/containers/cache && exec skopeo --policy "$p" "$@"' \
			sh "$work/skopeo-cache" "$work/policy.json" "$@"
	else
		skopeo --policy "$work/policy.json" "$@"
	fi
}

# --- the registry and the daemons -------------------------------------
# reg_start: docker-registry on a free random port; sets reg_pid, reg.
reg_start() {
	local dir=$work/registry port
	mkdir -p "$dir/storage"
	for _ in 1 2 3 4 5; do
		port=$(shuf -i 20000-60999 -n 1)
		[ -z "$(ss -Hltn "sport = :$port")" ] || continue
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
		"$REGISTRY" serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
		reg_pid=$!
		for _ in $(seq 400); do
			kill -0 "$reg_pid" 2>/dev/null || break
			# Ours, not another process that took the port meanwhile.
			if ss -Hltnp "sport = :$port" | grep -q "pid=$reg_pid," &&
				curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/"; then
				reg=127.0.0.1:$port
				return 0
			fi
			sleep 0.05
		done
		stop "$reg_pid"
		reg_pid=
		grep -q "address already in use" "$dir/registry.log" || break
	done
	return 1
}
up=0
reg_start || up=1
result "docker-registry up (pid ${reg_pid:-none}, ${reg:-no address}, $("$REGISTRY" --version | awk '{ print $NF }'))" "$up"
[ "$up" = 0 ] || exit 1
up=0
private_dockerd_start "$work" "$cgparent" || up=1
result "dockerd up (pid $dpid, $("$DOCKER" version -f '{{.Server.Version}}' 2>/dev/null), containerd pid $cpid)" "$up"
[ "$up" = 0 ] || exit 1

# --- 1. berth import -> tag -> push -------------------------------------
mkdir -p "$work/rootfs/bin"
cp "$BUSYBOX" "$work/rootfs/bin/busybox"
for a in sh echo cat ls; do ln -s busybox "$work/rootfs/bin/$a"; done
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
b1=(--root "$work/berth-push")
img1=$reg/berth/bb:1
pushed=
quiet "$BERTH" "${b1[@]}" import -c 'CMD ["sh"]' "$work/rootfs.tar" localhost/berth-bb:1 &&
	quiet "$BERTH" "${b1[@]}" tag localhost/berth-bb:1 "$img1" &&
	capture out "$BERTH" "${b1[@]}" push "$img1"
rc=$?
[ "$rc" = 0 ] && pushed=$(digest_of "$out")
[ -n "$pushed" ] || rc=1
result "berth import rootfs.tar; berth tag; berth push $img1" "$rc" "berth printed ${pushed:-no digest}"

# --- 2. skopeo inspect, skopeo copy to oci: --------------------------------
capture out sk inspect --tls-verify=false "docker://$img1"
rc=$?
sdig=$(jq -r .Digest <<<"$out" 2>/dev/null)
[ "$rc" = 0 ] && [ -n "$pushed" ] && [ "$sdig" = "$pushed" ] || rc=1
result "skopeo inspect docker://$img1: the digest berth push printed" "$rc" "skopeo: ${sdig:-none}"
raw=$(sk inspect --raw --tls-verify=false "docker://$img1" 2>/dev/null)
quiet sk copy -q --src-tls-verify=false "docker://$img1" "oci:$work/oci:1"
rc=$?
layers=$(jq -r '[.layers[].mediaType] | join(", ")' <<<"$raw" 2>/dev/null)
result "skopeo copy docker://$img1 oci:DIR (digests verified)" "$rc" "manifest $(jq -r .mediaType <<<"$raw" 2>/dev/null); layers: ${layers:-?}"

# --- 3. docker pull, docker run ---------------------------------------------
quiet "$DOCKER" pull -q "$img1"
rc=$?
ddig=$("$DOCKER" image inspect -f '{{join .RepoDigests " "}}' "$img1" 2>/dev/null)
case " $ddig" in *"@$pushed"*) ;; *) rc=1 ;; esac
result "docker pull $img1" "$rc" "RepoDigests: ${ddig:-none}"
got=$("$DOCKER" run --rm --network none "$img1" sh -c 'echo hello from a berth push' 2>&1)
rc=$?
[ "$got" = "hello from a berth push" ] || rc=1
result "docker run --rm --network none $img1 sh -c 'echo ...'" "$rc" "printed: $got"

# --- 4. docker import -> docker push -> berth pull -> berth run ---------------
img2=$reg/docker/bb:1
b2=(--root "$work/berth-docker")
dpushed=
quiet "$DOCKER" import -c 'CMD ["sh"]' "$work/rootfs.tar" "$img2" &&
	capture out "$DOCKER" push "$img2"
rc=$?
[ "$rc" = 0 ] && dpushed=$(digest_of "$out")
[ -n "$dpushed" ] || rc=1
did=$("$DOCKER" image inspect -f '{{.Id}}' "$img2" 2>/dev/null)
result "docker import rootfs.tar $img2; docker push" "$rc" "docker printed ${dpushed:-no digest}; image ID ${did:-none}"
capture out "$BERTH" "${b2[@]}" pull -q "$img2"
rc=$?
bdig=$(tail -n 1 <<<"$out")
bid=$("$BERTH" "${b2[@]}" images -q --no-trunc "$img2" 2>/dev/null)
[ "$rc" = 0 ] && [ -n "$dpushed" ] && [ "$bdig" = "$dpushed" ] && [ -n "$bid" ] && [ "$bid" = "$did" ] || rc=1
result "berth pull $img2 (fresh root): docker's digest and image ID" "$rc" "berth: $bdig, image ID ${bid:-none}"
got=$("$BERTH" "${b2[@]}" run --rm "$img2" sh -c 'echo hello from a docker push' 2>&1)
rc=$?
[ "$got" = "hello from a docker push" ] || rc=1
no_mounts "$work/berth-docker" || { rc=1; got="$got; mounts left under the root"; }
result "berth run --rm $img2 sh -c 'echo ...'" "$rc" "printed: $got"

# --- 5. docker save -> skopeo copy docker-archive: -> berth pull -> run ---------
img3=$reg/skopeo/bb:1
b3=(--root "$work/berth-skopeo")
quiet "$DOCKER" save -o "$work/d.tar" "$img2" &&
	quiet sk copy -q --dest-tls-verify=false --digestfile "$work/skopeo.digest" \
		"docker-archive:$work/d.tar" "docker://$img3"
rc=$?
sdig=$(cat "$work/skopeo.digest" 2>/dev/null)
[ -n "$sdig" ] || rc=1
result "docker save -o d.tar; skopeo copy docker-archive:d.tar docker://$img3" "$rc" "skopeo wrote ${sdig:-no digest}"
capture out "$BERTH" "${b3[@]}" pull -q "$img3"
rc=$?
bdig=$(tail -n 1 <<<"$out")
[ "$rc" = 0 ] && [ -n "$sdig" ] && [ "$bdig" = "$sdig" ] || rc=1
result "berth pull $img3 (fresh root): skopeo's digest" "$rc" "berth: $bdig"
got=$("$BERTH" "${b3[@]}" run --rm "$img3" sh -c 'echo hello from a skopeo copy' 2>&1)
rc=$?
[ "$got" = "hello from a skopeo copy" ] || rc=1
no_mounts "$work/berth-skopeo" || { rc=1; got="$got; mounts left under the root"; }
result "berth run --rm $img3 sh -c 'echo ...'" "$rc" "printed: $got"

# --- 6. berth registry serve -----------------------------------------------------
# breg_start: berth registry serve on a free random port, fresh storage;
# sets breg_pid, breg.
breg_start() {
	local dir=$work/registry-berth port
	mkdir -p "$dir/storage"
	for _ in 1 2 3 4 5; do
		port=$(shuf -i 20000-60999 -n 1)
		[ -z "$(ss -Hltn "sport = :$port")" ] || continue
		"$BERTH" registry serve --addr "127.0.0.1:$port" --root "$dir/storage" >"$dir/log" 2>&1 &
		breg_pid=$!
		for _ in $(seq 400); do
			kill -0 "$breg_pid" 2>/dev/null || break
			# Ours, not another process that took the port meanwhile.
			if ss -Hltnp "sport = :$port" | grep -q "pid=$breg_pid," &&
				curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/"; then
				breg=127.0.0.1:$port
				return 0
			fi
			sleep 0.05
		done
		stop "$breg_pid"
		breg_pid=
		grep -q "address already in use" "$dir/log" || break
	done
	return 1
}
echo
up=0
breg_start || up=1
api=
[ "$up" = 0 ] && api=$(curl -fsS -D - -o /dev/null "http://$breg/v2/" | tr -d '\r' | sed -n 's/^docker-distribution-api-version: *//Ip')
[ "$api" = registry/2.0 ] || up=1
result "berth registry serve up (pid ${breg_pid:-none}, ${breg:-no address}): GET /v2/" "$up" \
	"$(head -n 1 "$work/registry-berth/log" 2>/dev/null); API version ${api:-none}"

if [ "$up" = 0 ]; then
	# --- 7. docker push into berth's registry ----------------------------------
	img4=$breg/docker/bb:1
	bdpushed=
	quiet "$DOCKER" tag "$img2" "$img4" &&
		capture out "$DOCKER" push "$img4"
	rc=$?
	[ "$rc" = 0 ] && bdpushed=$(digest_of "$out")
	[ -n "$bdpushed" ] || rc=1
	result "docker tag $img2 $img4; docker push" "$rc" "docker printed ${bdpushed:-no digest}"

	# --- 8. docker rmi, docker pull, docker run ------------------------------------
	# Every tag of the image goes, so that the pull downloads it.
	quiet "$DOCKER" rmi "$img4" "$img2"
	rc=$?
	"$DOCKER" image inspect "$did" >/dev/null 2>&1 && rc=1
	result "docker rmi $img4 $img2: the image is gone from dockerd" "$rc"
	quiet "$DOCKER" pull -q "$img4"
	rc=$?
	ddig=$("$DOCKER" image inspect -f '{{join .RepoDigests " "}}' "$img4" 2>/dev/null)
	did4=$("$DOCKER" image inspect -f '{{.Id}}' "$img4" 2>/dev/null)
	case " $ddig" in *"@$bdpushed"*) ;; *) rc=1 ;; esac
	[ -n "$bdpushed" ] && [ "$did4" = "$did" ] || rc=1
	result "docker pull $img4: the digest docker pushed, the same image ID" "$rc" "RepoDigests: ${ddig:-none}; image ID ${did4:-none}"
	got=$("$DOCKER" run --rm --network none "$img4" sh -c 'echo hello through berth registry serve' 2>&1)
	rc=$?
	[ "$got" = "hello through berth registry serve" ] || rc=1
	result "docker run --rm --network none $img4 sh -c 'echo ...'" "$rc" "printed: $got"

	# --- 9. berth pull, berth run ---------------------------------------------------
	b4=(--root "$work/berth-breg")
	capture out "$BERTH" "${b4[@]}" pull -q "$img4"
	rc=$?
	bdig=$(tail -n 1 <<<"$out")
	bid=$("$BERTH" "${b4[@]}" images -q --no-trunc "$img4" 2>/dev/null)
	[ "$rc" = 0 ] && [ -n "$bdpushed" ] && [ "$bdig" = "$bdpushed" ] && [ -n "$bid" ] && [ "$bid" = "$did" ] || rc=1
	result "berth pull $img4 (fresh root): docker's digest and image ID" "$rc" "berth: $bdig, image ID ${bid:-none}"
	got=$("$BERTH" "${b4[@]}" run --rm "$img4" sh -c 'echo hello from berth registry serve' 2>&1)
	rc=$?
	[ "$got" = "hello from berth registry serve" ] || rc=1
	no_mounts "$work/berth-breg" || { rc=1; got="$got; mounts left under the root"; }
	result "berth run --rm $img4 sh -c 'echo ...'" "$rc" "printed: $got"

	# --- 10. skopeo inspect, skopeo copy to oci: --------------------------------------
	capture out sk inspect --tls-verify=false "docker://$img4"
	rc=$?
	sdig=$(jq -r .Digest <<<"$out" 2>/dev/null)
	[ "$rc" = 0 ] && [ -n "$bdpushed" ] && [ "$sdig" = "$bdpushed" ] || rc=1
	result "skopeo inspect docker://$img4: the digest docker push printed" "$rc" "skopeo: ${sdig:-none}"
	raw=$(sk inspect --raw --tls-verify=false "docker://$img4" 2>/dev/null)
	quiet sk copy -q --src-tls-verify=false "docker://$img4" "oci:$work/oci-breg:1"
	rc=$?
	layers=$(jq -r '[.layers[].mediaType] | join(", ")' <<<"$raw" 2>/dev/null)
	result "skopeo copy docker://$img4 oci:DIR (digests verified)" "$rc" "manifest $(jq -r .mediaType <<<"$raw" 2>/dev/null); layers: ${layers:-?}"

	# --- 11. berth push into berth's registry, docker pull, docker run ------------------
	img5=$breg/berth/bb:1
	bpushed=
	quiet "$BERTH" "${b1[@]}" tag localhost/berth-bb:1 "$img5" &&
		capture out "$BERTH" "${b1[@]}" push "$img5"
	rc=$?
	[ "$rc" = 0 ] && bpushed=$(digest_of "$out")
	[ -n "$bpushed" ] || rc=1
	same=differs
	[ -n "$bpushed" ] && [ "$bpushed" = "$pushed" ] && same="the same as to docker-registry"
	result "berth tag localhost/berth-bb:1 $img5; berth push" "$rc" "berth printed ${bpushed:-no digest} ($same)"
	# dockerd holds this image from step 3: remove it, so that the pull
	# downloads it.
	id1=$("$DOCKER" image inspect -f '{{.Id}}' "$img1" 2>/dev/null)
	quiet "$DOCKER" rmi "$img1"
	rc=$?
	[ -n "$id1" ] && "$DOCKER" image inspect "$id1" >/dev/null 2>&1 && rc=1
	result "docker rmi $img1: the image is gone from dockerd" "$rc"
	quiet "$DOCKER" pull -q "$img5"
	rc=$?
	ddig=$("$DOCKER" image inspect -f '{{join .RepoDigests " "}}' "$img5" 2>/dev/null)
	case " $ddig" in *"@$bpushed"*) ;; *) rc=1 ;; esac
	[ -n "$bpushed" ] || rc=1
	result "docker pull $img5" "$rc" "RepoDigests: ${ddig:-none}"
	got=$("$DOCKER" run --rm --network none "$img5" sh -c 'echo hello from a berth push to berth' 2>&1)
	rc=$?
	[ "$got" = "hello from a berth push to berth" ] || rc=1
	result "docker run --rm --network none $img5 sh -c 'echo ...'" "$rc" "printed: $got"
else
	result "steps 7-11 (berth registry serve with docker, berth, skopeo)" 1 "skipped: the registry did not start"
fi

echo
if [ "$fails" = 0 ]; then echo "interop-registry: all steps passed"; else echo "interop-registry: $fails step(s) failed"; fi
[ "$fails" = 0 ]
