#!/bin/sh
# Installs what berth needs on a fresh Debian 12 machine: a C compiler for
# the static build, busybox-static for the demo and tests, the peers the
# tests check berth against or look from outside with (runc, skopeo,
# docker-registry, htpasswd from apache2-utils, nft from nftables), and
# Go when the machine has none new enough. Run as root.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
	ca-certificates curl git make gcc libc6-dev busybox-static iproute2 procps \
	runc skopeo docker-registry apache2-utils nftables
need=1.26.8
have=$( (command -v go >/dev/null && go env GOVERSION) 2>/dev/null | sed 's/^go//' || true)
if [ -z "$have" ] && [ -x /usr/local/go/bin/go ]; then
	have=$(/usr/local/go/bin/go env GOVERSION | sed 's/^go//')
fi
if [ -z "$have" ] || [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
	arch=$(dpkg --print-architecture)
	echo "installing Go $need for $arch into /usr/local/go"
	curl -fsSL "https://go.dev/dl/go$need.linux-$arch.tar.gz" -o /tmp/go.tgz
	rm -rf /usr/local/go && tar -C /usr/local -xzf /tmp/go.tgz && rm /tmp/go.tgz
fi
case ":$PATH:" in *:/usr/local/go/bin:*) ;; *) echo "add /usr/local/go/bin to PATH" ;; esac
