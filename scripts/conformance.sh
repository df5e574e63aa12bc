#!/bin/sh
# conformance.sh: the OCI distribution-spec conformance suite against a
# freshly started `berth registry serve`, every workflow turned on (pull,
# push, discovery, management, sha256 and sha512, referrers, upload cancel,
# tag parameters, digest headers). Fails unless every check passes.
#
# Usage (make test runs it after the Go tests):
#   scripts/conformance.sh [BERTH]      # BERTH defaults to bin/berth
#
# The suite is a Go program of its own module, installed at a pinned
# version through the module proxy into bin/ (the proxy refuses @latest
# listings here, and a pin keeps CI's verdict from changing under us).
# Its report (report.html, junit.xml, the text summary) stays under
# $CONFORMANCE_RESULTS, default a temp dir that is removed on success.
set -eu
cd "$(dirname "$0")/.."
SUITE_VERSION=v0.0.0-20260831232431-97274622c111
BERTH=${1:-bin/berth}
GO=${GO:-go}

suite=$(pwd)/bin/conformance-$SUITE_VERSION
if [ ! -x "$suite" ]; then
	tmp=$(mktemp -d)
	GOBIN=$tmp GOFLAGS=-mod=mod $GO install \
		"github.com/opencontainers/distribution-spec/conformance@$SUITE_VERSION"
	mkdir -p bin && mv "$tmp/conformance" "$suite" && rmdir "$tmp"
fi

work=$(mktemp -d)
results=${CONFORMANCE_RESULTS:-$work/results}
mkdir -p "$results"
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	[ "${keep:-}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Port 0: the kernel picks a free one, and serve prints the address it got.
"$BERTH" registry serve --addr 127.0.0.1:0 --root "$work/storage" >"$work/serve.log" 2>&1 &
pid=$!
addr=
i=0
while [ $i -lt 100 ]; do
	addr=$(sed -n 's/^registry listening on \([^ ,]*\)[ ,].*/\1/p' "$work/serve.log")
	[ -n "$addr" ] && break
	kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log"; echo "conformance: berth registry serve exited" >&2; exit 1; }
	sleep 0.1
	i=$((i + 1))
done
[ -n "$addr" ] || { cat "$work/serve.log"; echo "conformance: berth registry serve did not start" >&2; exit 1; }

set +e
(cd "$results" && env \
	OCI_REGISTRY="$addr" OCI_TLS=disabled \
	OCI_REPO1=conformance/repo1 OCI_REPO2=conformance/repo2 \
	OCI_RESULTS_DIR="$results" \
	OCI_API_BLOBS_UPLOAD_CANCEL=true \
	OCI_API_BLOBS_DIGEST_HEADER=true \
	OCI_API_MANIFESTS_DIGEST_HEADER=true \
	OCI_API_MANIFESTS_TAG_PARAM=true \
	"$suite") >"$work/suite.log" 2>&1
rc=$?
set -e
summary=$(sed -n '/OCI Conformance Result/,$p' "$work/suite.log" | grep -E '^\s+(Pass|FAIL|Error|Skip|Disabled|Total)' | sort -u -k1,1 | head -6)
echo "conformance ($SUITE_VERSION) against berth registry serve:"
echo "$summary"
fails=$(echo "$summary" | sed -n 's/^\s*FAIL\.*:\s*\([0-9]*\)$/\1/p')
errors=$(echo "$summary" | sed -n 's/^\s*Error\.*:\s*\([0-9]*\)$/\1/p')
if [ $rc -ne 0 ] || [ "${fails:-x}" != 0 ] || [ "${errors:-x}" != 0 ]; then
	keep=1
	tail -n 60 "$work/suite.log"
	echo "conformance: FAILED (exit $rc); full log $work/suite.log, server log $work/serve.log" >&2
	exit 1
fi
echo "conformance: all checks pass"
