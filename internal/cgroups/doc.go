// Package cgroups puts a container's processes in a cgroup of their own and
// enforces its OCI linux.resources there, on cgroup v1 (and hybrid) hosts as
// on cgroup v2 ones, by writing cgroupfs files directly (no systemd).
//
// One Manager per container hides the version. Limits go through two
// steps: planV1 or planV2 turns linux.resources into an ordered list of
// file writes, checked by unit tests without root, and applyWrites makes
// them after checking every target file exists, so that a limit the host
// cannot honour fails naming its config field and changes nothing.
// Validate runs the same checks before anything is created.
//
// Only what a config asks for is written. In particular an empty
// linux.resources.devices leaves device access as inherited (everything,
// on a fresh host), so the runtime must pass the default rules itself.
// On v2, device rules become an eBPF program; its per-bit semantics match
// v1's exception lists (see devicesProgram).
//
// On disk, for linux.cgroupsPath "/berth/<id>" (cpu and cpuacct may also be
// comounted as one "cpu,cpuacct" hierarchy; both then name one directory):
//
//	/sys/fs/cgroup/                      v1 or hybrid: a tmpfs of hierarchies
//	├── memory/berth/<id>/               one directory per mounted hierarchy
//	│   ├── cgroup.procs                 Apply(pid) writes the pid here
//	│   ├── memory.limit_in_bytes        Set: memory.limit
//	│   ├── memory.memsw.limit_in_bytes  Set: memory.swap (memory + swap)
//	│   └── memory.soft_limit_in_bytes   Set: memory.reservation
//	├── cpu/berth/<id>/                  cpu.shares, cpu.cfs_{quota,period}_us
//	├── cpuset/berth/<id>/               cpuset.{cpus,mems}, copied from the
//	│                                    parent when empty
//	├── pids/berth/<id>/pids.max
//	├── blkio/berth/<id>/                blkio[.bfq].weight, blkio.throttle.*
//	├── devices/berth/<id>/              devices.deny "a", then each rule
//	├── freezer/berth/<id>/freezer.state Freeze / Thaw
//	├── hugetlb/berth/<id>/              hugetlb.<size>.limit_in_bytes
//	├── cpuacct/, name=systemd ...       joined, never written
//	└── unified/                         hybrid's empty v2 tree: untouched
//
//	/sys/fs/cgroup/                      v2: one cgroup2 tree
//	├── cgroup.subtree_control           "+cpu +memory ..." enabled by Apply
//	└── berth/
//	    ├── cgroup.subtree_control       likewise, at every level above <id>
//	    └── <id>/
//	        ├── cgroup.procs, cgroup.freeze, cgroup.events
//	        ├── memory.max, memory.low, memory.swap.max (swap - limit)
//	        ├── cpu.weight (from shares), cpu.max ("quota period")
//	        ├── cpuset.cpus, pids.max, io.max, io[.bfq].weight, hugetlb.<size>.max
//	        ├── <linux.resources.unified keys, verbatim, written last>
//	        └── (device rules: an eBPF BPF_CGROUP_DEVICE program attached
//	            to this directory, not a file)
//
// Destroy removes only <id> (and any cgroups below it); the shared parent
// "berth" stays for the other containers.
package cgroups
