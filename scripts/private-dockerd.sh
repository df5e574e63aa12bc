# Sourced by bench/load.sh and scripts/interop-docker.sh: a containerd and
# a dockerd of our own, under one temporary directory, that leave the host
# alone (no iptables, no bridge, no IP forwarding, no /etc/docker/key.json,
# their own cgroup parent) and are stopped by PID, never by name.
#
#   private_dockerd_start DIR CGPARENT   sets sock, ctrd_sock, data, cpid,
#                                        dpid, DOCKER_HOST, DOCKER_CONFIG;
#                                        logs in DIR/{containerd,dockerd}.log;
#                                        returns 1 (log tail on stderr) if
#                                        dockerd does not answer
#   private_dockerd_stop DIR CGPARENT    stops both, unmounts what they left
#                                        under DIR, removes the cgroup parent
#   stop PID                             TERM, up to 20 s, then KILL
# Needs $DOCKER (the client).

stop() {
	local pid=$1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	return 0
}

private_dockerd_start() {
	local dir=$1 cgp=$2
	sock=$dir/docker.sock
	ctrd_sock=$dir/containerd/containerd.sock
	data=$dir/docker/data
	export DOCKER_HOST=unix://$sock DOCKER_CONFIG=$dir/client
	mkdir -p "$dir/containerd/opt" "$data" "$dir/docker/exec" "$dir/client"
	cat >"$dir/containerd/config.toml" <<TOML
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$ctrd_sock"
[ttrpc]
  address = "$ctrd_sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"
TOML
	# dockerd 20.10 otherwise creates /etc/docker/key.json (a
	# config-file-only setting; no flag).
	printf '{"deprecated-key-path": "%s"}\n' "$dir/docker/key.json" >"$dir/docker/daemon.json"
	containerd --config "$dir/containerd/config.toml" >"$dir/containerd.log" 2>&1 &
	cpid=$!
	for _ in $(seq 100); do [ -S "$ctrd_sock" ] && break; kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
	if [ ! -S "$ctrd_sock" ]; then
		tail -n 15 "$dir/containerd.log" >&2
		echo "containerd did not start" >&2
		return 1
	fi
	dockerd --data-root "$data" --exec-root "$dir/docker/exec" \
		--pidfile "$dir/docker/docker.pid" -H "unix://$sock" \
		--containerd "$ctrd_sock" --config-file "$dir/docker/daemon.json" \
		--cgroup-parent "/$cgp" \
		--iptables=false --ip6tables=false --ip-masq=false --ip-forward=false \
		--bridge=none >"$dir/dockerd.log" 2>&1 &
	dpid=$!
	for _ in $(seq 300); do
		kill -0 "$dpid" 2>/dev/null || break
		[ -S "$sock" ] && "$DOCKER" version >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	tail -n 15 "$dir/dockerd.log" >&2
	echo "dockerd did not start" >&2
	return 1
}

private_dockerd_stop() {
	local dir=$1 cgp=$2
	stop "${dpid:-}"
	stop "${cpid:-}"
	# Whatever a killed daemon left mounted under dir, deepest first.
	awk -v w="$dir" '$5 == w || index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
	rmdir /sys/fs/cgroup/*/"$cgp" 2>/dev/null
	return 0
}
