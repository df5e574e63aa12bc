#!/bin/sh
# Interop check, by hand (not in CI): containerd's runc shim drives berth as
# its runc binary. Starts a private containerd on a temporary socket,
# imports a busybox image built here as an OCI layout, and runs containers
# through `ctr run --runc-binary`. Needs root, Debian's containerd (from
# docker.io) and busybox-static; no network.
set -eu
BERTH=${BERTH:-$(cd "$(dirname "$0")/.." && pwd)/bin/berth}
work=$(mktemp -d /tmp/berth-ctrd.XXXXXX)
sock=$work/containerd.sock
cleanup() {
	[ -n "${cpid:-}" ] && kill "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null
	umount -R "$work/root" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM
ln -s "$BERTH" "$work/berth-runc"   # named *runc: berth acts as `berth runtime`

# A one-layer OCI image of busybox.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/img/blobs/sha256"
cp /bin/busybox "$work/rootfs/bin/"
for a in sh echo hostname cat ls id sleep; do ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/layer.tar" .
diffid=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n "$work/layer.tar"
blob() { d=$(sha256sum "$1" | cut -d' ' -f1); mv "$1" "$work/img/blobs/sha256/$d"; echo "$d"; }
layer=$(blob "$work/layer.tar.gz"); lsize=$(stat -c %s "$work/img/blobs/sha256/$layer")
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diffid" > "$work/config.json"
cfg=$(blob "$work/config.json"); csize=$(stat -c %s "$work/img/blobs/sha256/$cfg")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' "$cfg" "$csize" "$layer" "$lsize" > "$work/manifest.json"
man=$(blob "$work/manifest.json"); msize=$(stat -c %s "$work/img/blobs/sha256/$man")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"docker.io/library/bb:latest","org.opencontainers.image.ref.name":"latest"}}]}' "$man" "$msize" > "$work/img/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$work/img/oci-layout"
tar -C "$work/img" -cf "$work/bb.tar" .

cat > "$work/config.toml" <<TOML
version = 2
root = "$work/root"
state = "$work/state"
[grpc]
  address = "$sock"
[plugins."io.containerd.grpc.v1.cri"]
  disable_cgroup = true
TOML
containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
cpid=$!
for i in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
ctr() { command ctr -a "$sock" -n berth "$@"; }
ctr image import "$work/bb.tar" >/dev/null
echo "== ctr run (foreground) with berth as the runc binary"
ctr run --rm --runc-binary "$work/berth-runc" docker.io/library/bb:latest c1 sh -c 'echo hello from berth via containerd; hostname; id'
echo "== exit code passes through"
set +e
ctr run --rm --runc-binary "$work/berth-runc" docker.io/library/bb:latest c2 sh -c 'exit 7'
echo "exit=$?"
set -e
echo "== detached task, exec, kill, delete"
ctr run -d --runc-binary "$work/berth-runc" docker.io/library/bb:latest c3 sleep 1000
ctr task ls
ctr task exec --exec-id e1 c3 sh -c 'echo exec ok; ls /proc | head -3 >/dev/null'
ctr task kill -s SIGKILL c3
sleep 0.5
ctr task ls
ctr task delete c3
ctr container delete c3
echo "== berth runtime state dir after: $(ls "$work/state" 2>/dev/null | wc -l) entries under containerd state"
