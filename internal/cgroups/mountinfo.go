package cgroups

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// v1Mounts maps each cgroup v1 controller mounted under root to its
// mountpoint. Comounted controllers ("cpu,cpuacct") map to the same one,
// which is why mountinfo is read rather than names under root guessed.
func v1Mounts(root string) (map[string]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	all, err := parseMountinfo(f)
	if err != nil {
		return nil, err
	}
	root = filepath.Clean(root)
	out := map[string]string{}
	for c, mp := range all {
		if mp == root || strings.HasPrefix(mp, root+"/") {
			out[c] = mp
		}
	}
	return out, nil
}

// options of a v1 cgroup mount that are not controllers.
var notControllers = map[string]bool{
	"rw": true, "ro": true, "noprefix": true, "xattr": true, "clone_children": true,
	"cpuset_v2_mode": true, "favordynmods": true, "nofavordynmods": true,
}

// parseMountinfo returns controller -> mountpoint for the cgroup v1 mounts
// in a /proc/<pid>/mountinfo. Named hierarchies appear as "name=systemd".
// When a controller is mounted twice (a bind mount), the first one wins.
func parseMountinfo(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:1 - cgroup cgroup rw,memory
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(sf) < 3 || sf[0] != "cgroup" {
			continue
		}
		mp, err := unescapeOctal(pf[4])
		if err != nil {
			return nil, fmt.Errorf("parse mountinfo: %w", err)
		}
		for opt := range strings.SplitSeq(sf[2], ",") {
			if notControllers[opt] || (strings.Contains(opt, "=") && !strings.HasPrefix(opt, "name=")) {
				continue
			}
			if _, seen := out[opt]; !seen {
				out[opt] = mp
			}
		}
	}
	return out, sc.Err()
}

// unescapeOctal undoes the \040-style escaping mountinfo applies to spaces,
// tabs, newlines and backslashes in paths.
func unescapeOctal(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			v, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
			if err != nil {
				return "", fmt.Errorf("bad escape in %q", s)
			}
			b.WriteByte(byte(v))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}
