package testutil

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BuildBerth builds the static berth binary into dir and returns its path.
// Static, as `make build` makes it: --init bind-mounts it into busybox
// images, which have no dynamic loader. Call it from TestMain.
func BuildBerth(dir string) (string, error) {
	bin := filepath.Join(dir, "berth")
	build := exec.Command("go", "build", "-tags", "netgo,osusergo", "-ldflags", "-extldflags -static",
		"-o", bin, "github.com/berth-dev/berth/cmd/berth")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	var out bytes.Buffer
	build.Stdout, build.Stderr = &out, &out
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build berth: %v\n%s", err, out.String())
	}
	return bin, nil
}

// Berth runs the berth binary over its own roots, as a user would.
type Berth struct {
	T             testing.TB
	Bin           string
	Root, RunRoot string
}

// NewBerth gives a test its own engine root and run root.
func NewBerth(t testing.TB, bin string) *Berth {
	root := t.TempDir()
	return &Berth{T: t, Bin: bin, Root: root, RunRoot: filepath.Join(root, "run")}
}

// Cmd is the exec.Cmd for `berth args...` over b's roots.
func (b *Berth) Cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(b.Bin, append([]string{"--root", b.Root, "--run-root", b.RunRoot}, args...)...)
	cmd.Env = append(os.Environ(), "BERTH_ROOT=", "BERTH_RUN_ROOT=")
	return cmd
}

// Run runs berth and returns stdout, stderr and the exit code.
func (b *Berth) Run(args ...string) (string, string, int) {
	b.T.Helper()
	return b.RunInput(nil, args...)
}

// RunInput is Run with stdin.
func (b *Berth) RunInput(stdin io.Reader, args ...string) (string, string, int) {
	b.T.Helper()
	cmd := b.Cmd(args...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		b.T.Fatalf("berth %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// Must runs berth, fails the test unless it exits 0, and returns stdout
// without its trailing newline.
func (b *Berth) Must(args ...string) string {
	b.T.Helper()
	out, errs, code := b.Run(args...)
	if code != 0 {
		b.T.Fatalf("berth %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return strings.TrimSuffix(out, "\n")
}

// ImportBusybox imports a busybox root filesystem as image ref, with
// /etc/passwd and /etc/group naming root, nobody and a user "app" (1000)
// in group "app" (1000) and supplementary group "extra" (2000).
func (b *Berth) ImportBusybox(ref string, extra func(rootfs string)) {
	b.T.Helper()
	rootfs := BusyboxRootfs(b.T, b.T.TempDir())
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(rootfs, name)), 0o755); err != nil {
			b.T.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(content), 0o644); err != nil {
			b.T.Fatal(err)
		}
	}
	if extra != nil {
		extra(rootfs)
	}
	var buf bytes.Buffer
	if err := TarDir(&buf, rootfs); err != nil {
		b.T.Fatal(err)
	}
	_, errs, code := b.RunInput(&buf, "import", "-", ref)
	if code != 0 {
		b.T.Fatalf("import busybox: %s", errs)
	}
}

// TarDir writes dir as an uncompressed tar stream.
func TarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
