package cgroups

import (
	"maps"
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	// Separate cpu and cpuacct (as on this project's CI host), a comounted
	// pair, a named hierarchy, the hybrid unified mount and a bind mount.
	const separate = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:5 - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 23 0:32 / /mnt/mem\040copy rw,relatime - cgroup cgroup rw,memory
`
	const comounted = `24 23 0:21 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
25 23 0:22 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio,clone_children
26 23 0:23 / /sys/fs/cgroup/blkio\040x rw - cgroup cgroup rw,blkio
`
	for _, tc := range []struct {
		in   string
		want map[string]string
	}{
		{separate, map[string]string{
			"cpu":          "/sys/fs/cgroup/cpu",
			"cpuacct":      "/sys/fs/cgroup/cpuacct",
			"memory":       "/sys/fs/cgroup/memory",
			"name=systemd": "/sys/fs/cgroup/systemd",
		}},
		{comounted, map[string]string{
			"cpu":      "/sys/fs/cgroup/cpu,cpuacct",
			"cpuacct":  "/sys/fs/cgroup/cpu,cpuacct",
			"net_cls":  "/sys/fs/cgroup/net_cls,net_prio",
			"net_prio": "/sys/fs/cgroup/net_cls,net_prio",
			"blkio":    "/sys/fs/cgroup/blkio x",
		}},
	} {
		got, err := parseMountinfo(strings.NewReader(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, tc.want) {
			t.Errorf("got %v\nwant %v", got, tc.want)
		}
	}
}

func TestParseKeyed(t *testing.T) {
	got, err := parseKeyed(strings.NewReader("cache 4096\nrss 8192\n\nhierarchical_memory_limit 9223372036854771712\nfrozen 1\nbogus\n"), "memory.stat")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"cache": 4096, "rss": 8192, "hierarchical_memory_limit": 9223372036854771712, "frozen": 1}
	if !maps.Equal(got, want) {
		t.Errorf("got %v", got)
	}
	if _, err := parseKeyed(strings.NewReader("cache many\n"), "memory.stat"); err == nil {
		t.Error("want an error for a non-number")
	}
}

func TestParseUint(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "42": 42, "max": 0, "-1": 0} {
		if got, err := parseUint(in, "f"); err != nil || got != want {
			t.Errorf("parseUint(%q) = %d, %v", in, got, err)
		}
	}
	if _, err := parseUint("x", "f"); err == nil {
		t.Error("want an error")
	}
}

func TestParseBlkio(t *testing.T) {
	r, w := parseBlkio("8:0 Read 4096\n8:0 Write 512\n8:0 Sync 1\n8:0 Total 4608\n8:16 Read 4\n8:16 Write 6\nTotal 4618\n")
	if r != 4100 || w != 518 {
		t.Errorf("got read %d write %d", r, w)
	}
}

func TestParseIOStat(t *testing.T) {
	got := parseIOStat("8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2 rios=3 wios=4\n")
	want := IOStats{ReadBytes: 101, WriteBytes: 202, ReadOps: 4, WriteOps: 6}
	if got != want {
		t.Errorf("got %+v", got)
	}
}

func TestUnescapeOctal(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/a\134b`: `/a\b`, `/plain`: "/plain", `/tab\011`: "/tab\t"} {
		if got, err := unescapeOctal(in); err != nil || got != want {
			t.Errorf("unescapeOctal(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := unescapeOctal(`/a\9zz`); err == nil {
		t.Error("want an error")
	}
}
