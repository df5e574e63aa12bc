package runtime

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/berth-dev/berth/internal/errdefs"
)

const testPasswd = `root:x:0:0:root:/root:/bin/sh
bin:x:1:1:bin:/bin:/sbin/nologin
# a comment:x:5:5::/c:
   
  daemon:x:2:2:daemon:/sbin:/sbin/nologin  
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001::/home/bob:/bin/sh
nohome:x:1002:1002:::/bin/sh
minimal:x:1004:1005
short:x:1003
broken:x:abc:1:::
emptyuid:x::1:::
big:x:4294967295:1:::
toobig:x:2147483648:1:::
dup:x:2000:2000::/first:
dup:x:2001:2001::/second:
1234:x:3000:3000::/numeric-name:
`

const testGroup = `root:x:0:root
bin:x:1:root,bin,daemon
daemon:x:2:root,bin,daemon
wheel:x:10:root,alice
alice:x:1000:
bob:x:1001:
dev:x:500:alice,bob
dev2:x:500:alice
staff:x:50:bob
#comment:x:60:alice
broken:x:xyz:alice
short:x
audio:x:29:alice
`

func TestResolveUser(t *testing.T) {
	tests := []struct {
		spec string
		want User
		err  string
	}{
		{spec: "", want: User{UID: 0, GID: 0, AdditionalGids: []uint32{0, 1, 2, 10}, Home: "/root"}},
		{spec: "root", want: User{UID: 0, GID: 0, AdditionalGids: []uint32{0, 1, 2, 10}, Home: "/root"}},
		{spec: "0", want: User{UID: 0, GID: 0, AdditionalGids: []uint32{0, 1, 2, 10}, Home: "/root"}},
		{spec: "alice", want: User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 10, 500, 29}, Home: "/home/alice"}},
		{spec: "1000", want: User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 10, 500, 29}, Home: "/home/alice"}},
		{spec: "+1000", want: User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 10, 500, 29}, Home: "/home/alice"}},
		{spec: "bob", want: User{UID: 1001, GID: 1001, AdditionalGids: []uint32{1001, 500, 50}, Home: "/home/bob"}},
		{spec: "daemon", want: User{UID: 2, GID: 2, AdditionalGids: []uint32{2, 1}, Home: "/sbin"}},
		{spec: "alice:staff", want: User{UID: 1000, GID: 50, AdditionalGids: []uint32{50}, Home: "/home/alice"}},
		{spec: "alice:0", want: User{UID: 1000, GID: 0, AdditionalGids: []uint32{0}, Home: "/home/alice"}},
		{spec: "alice:4242", want: User{UID: 1000, GID: 4242, AdditionalGids: []uint32{4242}, Home: "/home/alice"}},
		{spec: "alice:500", want: User{UID: 1000, GID: 500, AdditionalGids: []uint32{500}, Home: "/home/alice"}},
		{spec: "alice:", want: User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 10, 500, 29}, Home: "/home/alice"}},
		{spec: ":wheel", want: User{UID: 0, GID: 10, AdditionalGids: []uint32{10}, Home: "/root"}},
		{spec: "4242", want: User{UID: 4242, GID: 0, AdditionalGids: []uint32{0}, Home: "/"}},
		{spec: "4242:4243", want: User{UID: 4242, GID: 4243, AdditionalGids: []uint32{4243}, Home: "/"}},
		{spec: "4242:wheel", want: User{UID: 4242, GID: 10, AdditionalGids: []uint32{10}, Home: "/"}},
		{spec: "2147483647", want: User{UID: 2147483647, GID: 0, AdditionalGids: []uint32{0}, Home: "/"}},
		{spec: "nohome", want: User{UID: 1002, GID: 1002, AdditionalGids: []uint32{1002}, Home: "/"}},
		{spec: "minimal", want: User{UID: 1004, GID: 1005, AdditionalGids: []uint32{1005}, Home: "/"}},
		{spec: "dup", want: User{UID: 2000, GID: 2000, AdditionalGids: []uint32{2000}, Home: "/first"}},
		// A number is a uid, never a name: runc's rule.
		{spec: "1234", want: User{UID: 1234, GID: 0, AdditionalGids: []uint32{0}, Home: "/"}},

		{spec: "nobody", err: "unable to find user nobody: no matching entries in passwd file"},
		{spec: "nobody:wheel", err: "unable to find user nobody: no matching entries in passwd file"},
		{spec: "alice:nogroup", err: "unable to find group nogroup: no matching entries in group file"},
		{spec: "alice:staff:x", err: "unable to find group staff:x: no matching entries in group file"},
		{spec: "4242:nogroup", err: "unable to find group nogroup: no matching entries in group file"},
		{spec: "short", err: "unable to find user short"},
		{spec: "broken", err: "unable to find user broken"},
		{spec: "emptyuid", err: "unable to find user emptyuid"},
		{spec: "big", err: "unable to find user big"},
		{spec: "toobig", err: "unable to find user toobig"},
		{spec: "# a comment", err: "unable to find user # a comment"},
		{spec: "comment", err: "unable to find user comment"},
		{spec: "2147483648", err: "uids and gids must be in range 0-2147483647"},
		{spec: "-1", err: "uids and gids must be in range 0-2147483647"},
		{spec: "99999999999999999999", err: "uids and gids must be in range"},
		{spec: "alice:-5", err: "uids and gids must be in range"},
	}
	for _, tt := range tests {
		got, err := ResolveUser(tt.spec, strings.NewReader(testPasswd), strings.NewReader(testGroup))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ResolveUser(%q) = %+v, %v; want an error with %q", tt.spec, got, err, tt.err)
				continue
			}
			class := errdefs.ErrNotFound
			if strings.Contains(tt.err, "range") {
				class = errdefs.ErrInvalidArgument
			}
			if !errors.Is(err, class) {
				t.Errorf("ResolveUser(%q) error %v is not %v", tt.spec, err, class)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ResolveUser(%q) = %+v, %v; want %+v", tt.spec, got, err, tt.want)
		}
	}
}

func TestResolveUserWithoutFiles(t *testing.T) {
	tests := []struct {
		spec          string
		passwd, group string // "-" for an absent file
		want          User
		err           string
	}{
		{spec: "", passwd: "-", group: "-", want: User{AdditionalGids: []uint32{0}, Home: "/"}},
		{spec: "5:6", passwd: "-", group: "-", want: User{UID: 5, GID: 6, AdditionalGids: []uint32{6}, Home: "/"}},
		{spec: "5", passwd: "-", group: "-", want: User{UID: 5, AdditionalGids: []uint32{0}, Home: "/"}},
		{spec: "alice", passwd: "-", group: "-", err: "unable to find user alice: no matching entries in passwd file"},
		{spec: "5:wheel", passwd: "-", group: "-", err: "unable to find group wheel: no matching entries in group file"},
		{spec: "alice", passwd: testPasswd, group: "-", want: User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000}, Home: "/home/alice"}},
		{spec: "", passwd: "", group: "", want: User{AdditionalGids: []uint32{0}, Home: "/"}},
		{spec: "", passwd: "-", group: testGroup, want: User{AdditionalGids: []uint32{0}, Home: "/"}},
		// A passwd entry without a name has no supplementary groups to find.
		{spec: "", passwd: ":x:0:0::/r:", group: "g:x:7:\n", want: User{AdditionalGids: []uint32{0}, Home: "/r"}},
	}
	for _, tt := range tests {
		got, err := ResolveUser(tt.spec, fileReader(tt.passwd, tt.passwd == "-"), fileReader(tt.group, tt.group == "-"))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("ResolveUser(%q) = %+v, %v; want a not-found error with %q", tt.spec, got, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ResolveUser(%q, passwd %q, group %q) = %+v, %v; want %+v", tt.spec, tt.passwd, tt.group, got, err, tt.want)
		}
	}
}

// fileReader is a file's content, or a nil io.Reader (not a nil
// *strings.Reader, which is not nil as an io.Reader) for an absent file.
func fileReader(content string, absent bool) io.Reader {
	if absent {
		return nil
	}
	return strings.NewReader(content)
}

func TestResolveUserBadFiles(t *testing.T) {
	long := "x:x:5:5::/" + strings.Repeat("a", 70000) + ":\n"
	_, err := ResolveUser("alice", strings.NewReader("root:x:0:0::/root:\n"+long+testPasswd), nil)
	if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "reading passwd file: line 2 is longer than 64 KiB") {
		t.Errorf("long passwd line: %v", err)
	}
	_, err = ResolveUser("alice", strings.NewReader(testPasswd), strings.NewReader("g:x:1:"+strings.Repeat("m,", 40000)+"\n"))
	if err == nil || !strings.Contains(err.Error(), "reading group file: line 1 is longer than 64 KiB") {
		t.Errorf("long group line: %v", err)
	}
	// Just under the limit is fine.
	members := strings.Repeat("m,", 30000) + "alice"
	u, err := ResolveUser("alice", strings.NewReader(testPasswd), strings.NewReader("big:x:77:"+members+"\n"))
	if err != nil || !reflect.DeepEqual(u.AdditionalGids, []uint32{1000, 77}) {
		t.Errorf("long but legal group line: %+v, %v", u, err)
	}
	boom := errors.New("boom")
	if _, err := ResolveUser("alice", iotest.ErrReader(boom), nil); !errors.Is(err, boom) {
		t.Errorf("passwd read error: %v", err)
	}
	if _, err := ResolveUser("alice", strings.NewReader(testPasswd), iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("group read error: %v", err)
	}
	// A numeric user with no match never needs the group file.
	if _, err := ResolveUser("4242", strings.NewReader(testPasswd), iotest.ErrReader(boom)); err != nil {
		t.Errorf("numeric user read the group file: %v", err)
	}
	// Parsing is line by line: no newline at the end, CRLF endings.
	u, err = ResolveUser("bob", strings.NewReader("bob:x:7:8::/h:/bin/sh\r\n"), strings.NewReader("g:x:9:bob"))
	if err != nil || !reflect.DeepEqual(u, User{UID: 7, GID: 8, AdditionalGids: []uint32{8, 9}, Home: "/h"}) {
		t.Errorf("CRLF passwd: %+v, %v", u, err)
	}
}

func TestParsePasswdAndGroup(t *testing.T) {
	users, err := ParsePasswd(strings.NewReader(testPasswd))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range users {
		names = append(names, u.Name)
	}
	want := []string{"root", "bin", "daemon", "alice", "bob", "nohome", "minimal", "dup", "dup", "1234"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("ParsePasswd names = %q, want %q", names, want)
	}
	if users[3] != (PasswdEntry{Name: "alice", UID: 1000, GID: 1000, Home: "/home/alice", Shell: "/bin/sh"}) {
		t.Errorf("alice = %+v", users[3])
	}
	groups, err := ParseGroup(strings.NewReader(testGroup))
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 10 {
		t.Errorf("ParseGroup found %d groups, want 10: %+v", len(groups), groups)
	}
	if !reflect.DeepEqual(groups[1], GroupEntry{Name: "bin", GID: 1, Members: []string{"root", "bin", "daemon"}}) {
		t.Errorf("bin = %+v", groups[1])
	}
	if groups[4].Members != nil {
		t.Errorf("alice's group has members %q", groups[4].Members)
	}
	if e, err := ParsePasswd(nil); e != nil || err != nil {
		t.Errorf("ParsePasswd(nil) = %v, %v", e, err)
	}
}

func TestAdditionalGroups(t *testing.T) {
	tests := []struct {
		names []string
		group string // "-" for none
		want  []uint32
		err   string
	}{
		{names: []string{"wheel", "4242", "dev", "10", "audio"}, group: testGroup, want: []uint32{10, 4242, 500, 29}},
		{names: []string{"0"}, group: testGroup, want: []uint32{0}},
		{names: nil, group: testGroup, want: []uint32{}},
		{names: []string{"5", "6"}, group: "-", want: []uint32{5, 6}},
		{names: []string{"nosuch"}, group: testGroup, err: "unable to find group nosuch: no matching entries in group file"},
		{names: []string{"wheel"}, group: "-", err: "unable to find group wheel"},
		{names: []string{"-1"}, group: testGroup, err: "must be in range"},
		{names: []string{""}, group: testGroup, err: "name a group or a gid"},
	}
	for _, tt := range tests {
		got, err := AdditionalGroups(tt.names, fileReader(tt.group, tt.group == "-"))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("AdditionalGroups(%q) = %v, %v; want an error with %q", tt.names, got, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("AdditionalGroups(%q) = %v, %v; want %v", tt.names, got, err, tt.want)
		}
	}
}

// FuzzResolveUser feeds arbitrary specs and passwd and group contents to
// ResolveUser: nothing panics, every error has a class, and every user it
// returns holds ids in range, its primary gid first in AdditionalGids,
// no repeated gid and a home.
func FuzzResolveUser(f *testing.F) {
	f.Add("", testPasswd, testGroup, false, false)
	f.Add("alice", testPasswd, testGroup, false, false)
	f.Add("alice:staff", testPasswd, testGroup, false, false)
	f.Add("1000:10", "", "", true, true)
	f.Add("nobody", testPasswd, "", false, true)
	f.Add(":wheel", "a:b", "::::", false, false)
	f.Add("-1", "", "", true, true)
	f.Add("root", "root:x:0:0:::\n#x\n\n", "g:x:1:root,root\nh:x:1:root", false, false)
	f.Fuzz(func(t *testing.T, spec, passwd, group string, noPasswd, noGroup bool) {
		u, err := ResolveUser(spec, fileReader(passwd, noPasswd), fileReader(group, noGroup))
		if err != nil {
			if !errors.Is(err, errdefs.ErrNotFound) && !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("ResolveUser(%q) error %q has no class", spec, err)
			}
			return
		}
		if u.UID > maxID || u.GID > maxID || u.Home == "" {
			t.Fatalf("ResolveUser(%q) = %+v", spec, u)
		}
		if len(u.AdditionalGids) == 0 || u.AdditionalGids[0] != u.GID {
			t.Fatalf("ResolveUser(%q) = %+v: GID is not first in AdditionalGids", spec, u)
		}
		seen := map[uint32]bool{}
		for _, id := range u.AdditionalGids {
			if seen[id] || id > maxID {
				t.Fatalf("ResolveUser(%q) = %+v: gid %d repeated or out of range", spec, u, id)
			}
			seen[id] = true
		}
		// A plain uid always resolves to itself.
		if n, ok := parseFileID(spec); ok && u.UID != n {
			t.Fatalf("ResolveUser(%q) gave uid %d", spec, u.UID)
		}
	})
}
