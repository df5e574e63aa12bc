package opts

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
)

func TestParseVolume(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	bind := func(src, dst string) Mount {
		return Mount{Type: TypeBind, Source: src, Target: dst, Propagation: "rprivate", CreateSource: true}
	}
	tests := []struct {
		in   string
		want Mount
		err  string
	}{
		{in: "/host:/ctr", want: bind("/host", "/ctr")},
		{in: "/host/dir/:/ctr/sub/../x/", want: bind("/host/dir", "/ctr/x")},
		{in: "/host:/ctr:ro", want: func() Mount { m := bind("/host", "/ctr"); m.ReadOnly = true; return m }()},
		{in: "/host:/ctr:rw", want: bind("/host", "/ctr")},
		{in: "/host:/ctr:ro,rshared", want: func() Mount {
			m := bind("/host", "/ctr")
			m.ReadOnly, m.Propagation = true, "rshared"
			return m
		}()},
		{in: "/host:/ctr:Z", want: bind("/host", "/ctr")},
		{in: "/host:/ctr:z,ro,slave", want: func() Mount {
			m := bind("/host", "/ctr")
			m.ReadOnly, m.Propagation = true, "slave"
			return m
		}()},
		{in: "/host:/ctr:cached", want: bind("/host", "/ctr")},
		{in: "/host:/ctr:", want: bind("/host", "/ctr")},
		{in: "./data:/ctr", want: bind(filepath.Join(wd, "data"), "/ctr")},
		{in: "../up:/ctr", want: bind(filepath.Join(filepath.Dir(wd), "up"), "/ctr")},
		{in: ".:/ctr", want: bind(wd, "/ctr")},
		{in: "myvol:/data", want: Mount{Type: TypeVolume, Source: "myvol", Target: "/data"}},
		{in: "my_vol.2-x:/data:ro,nocopy", want: Mount{Type: TypeVolume, Source: "my_vol.2-x", Target: "/data", ReadOnly: true, NoCopy: true}},
		{in: "myvol:/data:z", want: Mount{Type: TypeVolume, Source: "myvol", Target: "/data"}},
		{in: "/data", want: Mount{Type: TypeVolume, Target: "/data"}},
		{in: "/data/", want: Mount{Type: TypeVolume, Target: "/data"}},

		{in: "", err: "write [SOURCE:]TARGET[:OPTIONS]"},
		{in: ":/ctr", err: "write [SOURCE:]TARGET[:OPTIONS]"},
		{in: "/data:ro", err: "options need a source"},
		{in: "/data:cached", err: "options need a source"},
		{in: "/a:/b:ro:x", err: "too many colons"},
		{in: "/a:/b:c:d:e", err: "too many colons"},
		{in: "/a:/b:xx", err: `invalid mode "xx"`},
		{in: "/a:/b:ro,rw", err: "invalid mode"},
		{in: "/a:/b:z,Z", err: "invalid mode"},
		{in: "/a:/b:shared,slave", err: "invalid mode"},
		{in: "/a:/b:ro,,", err: "invalid mode"},
		{in: "/a:/b:RO", err: "invalid mode"},
		{in: "/a:/", err: "destination can't be '/'"},
		{in: "/a:/b/..", err: "destination can't be '/'"},
		{in: "/", err: "destination can't be '/'"},
		{in: "/a:rel", err: `"rel" mount path must be absolute`},
		{in: "rel", err: `"rel" mount path must be absolute`},
		{in: "/a::ro", err: "target is required"},
		{in: "/a:/b:nocopy", err: "nocopy applies to volumes"},
		{in: "vol:/b:rshared", err: `propagation "rshared" applies to bind mounts`},
		{in: "v:/b", err: "too short"},
		{in: "~/dir:/b", err: `"~/dir" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`},
		{in: "dir/sub:/b", err: "includes invalid characters"},
		{in: "_vol:/b", err: "includes invalid characters"},
	}
	for _, tt := range tests {
		got, err := ParseVolume(tt.in)
		if tt.err != "" {
			if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseVolume(%q) = %+v, %v; want an error with %q", tt.in, got, err, tt.err)
			} else if !strings.HasPrefix(err.Error(), "invalid volume specification ") {
				t.Errorf("ParseVolume(%q) error %q does not say what it was parsing", tt.in, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseVolume(%q) = %+v, %v\n want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseMount(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in    string
		want  Mount
		err   string
		class error
	}{
		{in: "type=bind,source=/host,target=/ctr", want: Mount{Type: TypeBind, Source: "/host", Target: "/ctr", Propagation: "rprivate"}},
		{in: "type=bind,src=/host/,dst=/ctr/,readonly", want: Mount{Type: TypeBind, Source: "/host", Target: "/ctr", ReadOnly: true, Propagation: "rprivate"}},
		{in: "TYPE=BIND,SRC=/host,Destination=/ctr,ro=true,bind-propagation=RSLAVE",
			want: Mount{Type: TypeBind, Source: "/host", Target: "/ctr", ReadOnly: true, Propagation: "rslave"}},
		{in: "type=bind,src=/h,dst=/c,ro=0,bind-create-src,bind-recursive=disabled",
			want: Mount{Type: TypeBind, Source: "/h", Target: "/c", Propagation: "rprivate", CreateSource: true, NonRecursive: true}},
		{in: "type=bind,src=/h,dst=/c,bind-recursive=enabled,consistency=cached",
			want: Mount{Type: TypeBind, Source: "/h", Target: "/c", Propagation: "rprivate"}},
		{in: "type=bind,src=./rel,dst=/c", want: Mount{Type: TypeBind, Source: filepath.Join(wd, "rel"), Target: "/c", Propagation: "rprivate"}},
		{in: `type=bind,"src=/a,b",dst=/c`, want: Mount{Type: TypeBind, Source: "/a,b", Target: "/c", Propagation: "rprivate"}},
		{in: "  type=bind,src=/h,dst=/c  ", want: Mount{Type: TypeBind, Source: "/h", Target: "/c", Propagation: "rprivate"}},
		{in: "source=myvol,target=/data", want: Mount{Type: TypeVolume, Source: "myvol", Target: "/data"}},
		{in: "target=/data", want: Mount{Type: TypeVolume, Target: "/data"}},
		{in: "type=volume,src=v1,dst=/d,volume-nocopy,volume-driver=local,volume-opt=o=x,volume-label=a=b",
			want: Mount{Type: TypeVolume, Source: "v1", Target: "/d", NoCopy: true}},
		{in: "type=volume,src=v1,dst=/d,volume-nocopy=false", want: Mount{Type: TypeVolume, Source: "v1", Target: "/d"}},
		{in: "type=tmpfs,dst=/run,tmpfs-size=64m,tmpfs-mode=1777",
			want: Mount{Type: TypeTmpfs, Target: "/run", TmpfsSize: 64 << 20, TmpfsMode: 0o1777}},
		{in: "type=tmpfs,dst=/run,readonly", want: Mount{Type: TypeTmpfs, Target: "/run", ReadOnly: true}},

		{in: "", err: "value is empty"},
		{in: "   ", err: "value is empty"},
		{in: `type=bind,src="/a`, err: "not a comma-separated list"},
		{in: "type=bind,src", err: `invalid field "src" must be a key=value pair`},
		{in: "type=bind,src=/a,dst=/b,foo=bar", err: `unknown option "foo"`},
		{in: "type=bind, src=/a,dst=/b", err: "option should not have whitespace"},
		{in: "type=bind,src= /a,dst=/b", err: "value should not have whitespace"},
		{in: "type=bind,src=,dst=/b", err: `invalid value for "src": value is empty`},
		{in: "type=bind,src=/a", err: "target is required"},
		{in: "src=v1", err: "target is required, add target=/path/in/container"},
		{in: "type=bind,src=/a,dst=/", err: "destination can't be '/'"},
		{in: "type=bind,src=/a,dst=rel", err: "mount path must be absolute"},
		{in: "type=bind,dst=/b", err: "source is required for a bind mount"},
		{in: "type=bind,src=rel,dst=/b", err: `"rel" mount path must be absolute`},
		{in: "type=bind,src=/a,dst=/b,ro=yes", err: `invalid boolean value ("yes")`},
		{in: "type=bind,src=/a,dst=/b,bind-propagation=weird", err: `invalid propagation mode "weird"`},
		{in: "type=bind,src=/a,dst=/b,bind-nonrecursive", err: "bind-nonrecursive is deprecated"},
		{in: "type=bind,src=/a,dst=/b,bind-recursive=maybe", err: "must be"},
		{in: "type=bind,src=/a,dst=/b,bind-recursive=readonly", err: "not supported", class: errdefs.ErrNotImplemented},
		{in: "type=bind,src=/a,dst=/b,volume-nocopy", err: "cannot mix 'volume-*' options with mount type 'bind'"},
		{in: "type=volume,src=v1,dst=/b,bind-propagation=shared", err: "cannot mix 'bind-*' options with mount type 'volume'"},
		{in: "type=volume,dst=/b,tmpfs-size=1m", err: "cannot mix 'tmpfs-*' options with mount type 'volume'"},
		{in: "type=tmpfs,dst=/b,volume-opt=a=b", err: "cannot mix 'volume-*'"},
		{in: "type=tmpfs,src=x,dst=/b", err: "a tmpfs mount takes no source"},
		{in: "type=tmpfs,dst=/b,tmpfs-size=lots", err: "invalid value for tmpfs-size"},
		{in: "type=tmpfs,dst=/b,tmpfs-mode=999", err: "invalid value for tmpfs-mode"},
		{in: "type=tmpfs,dst=/b,tmpfs-mode=17777", err: "invalid value for tmpfs-mode"},
		{in: "type=volume,src=v,dst=/b", err: "too short"},
		{in: "type=volume,src=a/b,dst=/b", err: "includes invalid characters"},
		{in: "type=volume,src=v1,dst=/b,volume-driver=nfs", err: "not supported", class: errdefs.ErrNotImplemented},
		{in: "type=volume,src=v1,dst=/b,volume-subpath=x", err: "not supported", class: errdefs.ErrNotImplemented},
		{in: "type=image,src=alpine,dst=/b", err: "not supported", class: errdefs.ErrNotImplemented},
		{in: "type=foo,dst=/b", err: `unknown mount type "foo"`},
	}
	for _, tt := range tests {
		got, err := ParseMount(tt.in)
		if tt.err != "" {
			class := tt.class
			if class == nil {
				class = errdefs.ErrInvalidArgument
			}
			if err == nil || !errors.Is(err, class) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseMount(%q) = %+v, %v; want a %v with %q", tt.in, got, err, class, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseMount(%q) = %+v, %v\n want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseTmpfs(t *testing.T) {
	tests := []struct {
		in   string
		want Mount
		err  string
	}{
		{in: "/run", want: Mount{Type: TypeTmpfs, Target: "/run"}},
		{in: "/run:", want: Mount{Type: TypeTmpfs, Target: "/run"}},
		{in: "/run/:rw,size=64m,mode=1777", want: Mount{Type: TypeTmpfs, Target: "/run", Options: []string{"rw", "size=64m", "mode=1777"}}},
		{in: "/run:ro,exec,uid=1000,gid=1000,nr_inodes=1k", want: Mount{Type: TypeTmpfs, Target: "/run", ReadOnly: true,
			Options: []string{"ro", "exec", "uid=1000", "gid=1000", "nr_inodes=1k"}}},
		{in: "/run:ro,rw", want: Mount{Type: TypeTmpfs, Target: "/run", Options: []string{"ro", "rw"}}},
		{in: "/run:rshared,defaults", want: Mount{Type: TypeTmpfs, Target: "/run", Options: []string{"rshared", "defaults"}}},
		{in: "", err: "target is required"},
		{in: ":size=1m", err: "target is required"},
		{in: "/", err: "destination can't be '/'"},
		{in: "run", err: "must be absolute"},
		{in: "/run:size", err: `invalid tmpfs option "size"`},
		{in: "/run:rw,,size=1m", err: `invalid tmpfs option ""`},
		{in: "/run:bind", err: `invalid tmpfs option "bind"`},
		{in: "/run:lowerdir=/x", err: `invalid tmpfs option "lowerdir=/x"`},
		{in: "/run:=x", err: `invalid tmpfs option "=x"`},
	}
	for _, tt := range tests {
		got, err := ParseTmpfs(tt.in)
		if tt.err != "" {
			if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseTmpfs(%q) = %+v, %v; want an error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseTmpfs(%q) = %+v, %v\n want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestTmpfsOptions(t *testing.T) {
	tests := []struct {
		m    Mount
		want []string
	}{
		{Mount{Type: TypeTmpfs}, []string{"noexec", "nosuid", "nodev", "rprivate"}},
		{Mount{Type: TypeTmpfs, ReadOnly: true, TmpfsMode: 0o1777, TmpfsSize: 64 << 20},
			[]string{"noexec", "nosuid", "nodev", "rprivate", "ro", "mode=1777", "size=64m"}},
		{Mount{Type: TypeTmpfs, TmpfsSize: 3 << 30}, []string{"noexec", "nosuid", "nodev", "rprivate", "size=3g"}},
		{Mount{Type: TypeTmpfs, TmpfsSize: 1000}, []string{"noexec", "nosuid", "nodev", "rprivate", "size=1000"}},
		{Mount{Type: TypeTmpfs, TmpfsSize: 2048}, []string{"noexec", "nosuid", "nodev", "rprivate", "size=2k"}},
		// --tmpfs /x:exec,size=1m,rw,size=2m,rshared,defaults
		{Mount{Type: TypeTmpfs, Options: []string{"exec", "size=1m", "rw", "size=2m", "rshared", "defaults"}},
			[]string{"nosuid", "nodev", "exec", "rw", "size=2m", "rshared"}},
		{Mount{Type: TypeTmpfs, ReadOnly: true, Options: []string{"rw"}}, []string{"noexec", "nosuid", "nodev", "rprivate", "rw"}},
	}
	for _, tt := range tests {
		if got := tt.m.TmpfsOptions(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%+v.TmpfsOptions() = %q, want %q", tt.m, got, tt.want)
		}
	}
	m, err := ParseTmpfs("/run:size=64m,mode=1777,exec")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.TmpfsOptions(), []string{"nosuid", "nodev", "rprivate", "size=64m", "mode=1777", "exec"}; !reflect.DeepEqual(got, want) {
		t.Errorf("--tmpfs TmpfsOptions() = %q, want %q", got, want)
	}
}
