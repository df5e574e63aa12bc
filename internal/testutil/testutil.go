package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// RequiresRoot skips the test when it does not run as root. CI runs as
// root, so these tests run there.
func RequiresRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: run the tests as root (CI does)")
	}
}

// BusyboxPath is where Debian's busybox-static installs its static binary.
const BusyboxPath = "/bin/busybox"

// BusyboxRootfs builds a minimal root filesystem under dir: a static busybox
// with a symlink per applet in /bin, and the empty directories a container
// expects. It returns the rootfs path.
func BusyboxRootfs(t testing.TB, dir string) string {
	t.Helper()
	bb := BusyboxPath
	if _, err := os.Stat(bb); err != nil {
		t.Skipf("needs %s: apt-get install busybox-static", bb)
	}
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "etc", "root", "var", "run"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range Applets {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// Applets are the busybox commands the tests call by name.
var Applets = []string{
	"sh", "true", "false", "echo", "cat", "ls", "sleep", "id", "hostname", "ps",
	"mount", "grep", "head", "tail", "wc", "touch", "mkdir", "rm", "ip", "ifconfig",
	"env", "pwd", "readlink", "stat", "test", "kill", "dd", "yes", "uname",
	"domainname", "sysctl", "umask", "ulimit", "nproc", "find", "chmod", "mknod",
}
