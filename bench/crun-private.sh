#!/bin/sh
# crun-private.sh CMD [ARG...]: run CMD where crun 1.8 accepts this host's
# cgroups.
#
# On a hybrid layout (cgroup v1 controllers under /sys/fs/cgroup/<controller>
# plus a cgroup2 hierarchy at /sys/fs/cgroup/unified that still holds a
# controller, e.g. hugetlb) crun 1.8.1 refuses to start a container: "cgroups
# in hybrid mode not supported, drop all controllers from cgroupv2". So CMD
# runs in a private mount namespace where an empty file hides
# unified/cgroup.controllers; the host's mount table is untouched.
#
# The namespace is set up once, before CMD, so a benchmark that passes
# `hyperfine ... 'crun run ...'` as CMD times crun alone, not unshare.
# Elsewhere (pure v1, pure v2, or an empty unified hierarchy) CMD runs as is.
set -eu

controllers=/sys/fs/cgroup/unified/cgroup.controllers

# cgroupfs files report size 0, so test the content, not the size.
if [ -z "$(cat "$controllers" 2>/dev/null)" ]; then
	exec "$@"
fi

if [ "${BERTH_BENCH_PRIVATE_NS:-}" != 1 ]; then
	BERTH_BENCH_PRIVATE_NS=1 exec unshare --mount --propagation private "$0" "$@"
fi

empty=$(mktemp)
mount --bind "$empty" "$controllers"
# The mount keeps the inode alive; the name is not needed any more.
rm -f "$empty"
exec "$@"
