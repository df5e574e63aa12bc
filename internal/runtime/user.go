package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/errdefs"
)

// User is the identity a container's process runs as, resolved from a
// `docker run -u` / image config User spec and the image's /etc/passwd
// and /etc/group.
type User struct {
	UID, GID uint32
	// AdditionalGids are the groups given to setgroups: GID first, then
	// every group listing the user as a member, without repeats. Docker
	// puts GID in the list too, so the process stays in its primary group
	// if it later changes its effective gid.
	AdditionalGids []uint32
	Home           string // from passwd, "/" when unknown
}

// PasswdEntry is one line of an /etc/passwd file.
type PasswdEntry struct {
	Name     string
	UID, GID uint32
	Home     string
	Shell    string
}

// GroupEntry is one line of an /etc/group file.
type GroupEntry struct {
	Name    string
	GID     uint32
	Members []string
}

const (
	// maxID is the largest uid or gid accepted: runc and containerd stop
	// at 2^31-1 so that ids survive 32-bit signed conversions.
	maxID = 1<<31 - 1
	// maxUserFileLine bounds one line of passwd or group, so a hostile
	// image cannot make the runtime hold a gigabyte line in memory.
	maxUserFileLine = 64 << 10
)

var (
	errNoPasswdEntries = fmt.Errorf("no matching entries in passwd file: %w", errdefs.ErrNotFound)
	errNoGroupEntries  = fmt.Errorf("no matching entries in group file: %w", errdefs.ErrNotFound)
)

// ParsePasswd reads passwd(5) lines, name:password:uid:gid:gecos:home:shell.
// Blank lines and lines starting with "#" are skipped, and so are lines
// that are not entries: fewer than four fields, or a uid or gid that is
// not a number from 0 to 2^31-1. (runc reads a garbled uid as 0, which
// would run a user of a broken line as root.) A nil reader, an absent
// file, has no entries.
func ParsePasswd(r io.Reader) ([]PasswdEntry, error) {
	var out []PasswdEntry
	err := scanUserFile(r, "passwd", func(f []string) {
		if len(f) < 4 {
			return
		}
		uid, ok1 := parseFileID(f[2])
		gid, ok2 := parseFileID(f[3])
		if !ok1 || !ok2 {
			return
		}
		e := PasswdEntry{Name: f[0], UID: uid, GID: gid}
		if len(f) > 5 {
			e.Home = f[5]
		}
		if len(f) > 6 {
			e.Shell = f[6]
		}
		out = append(out, e)
	})
	return out, err
}

// ParseGroup reads group(5) lines, name:password:gid:member,member...,
// with ParsePasswd's rules: a line needs at least three fields and a
// valid gid.
func ParseGroup(r io.Reader) ([]GroupEntry, error) {
	var out []GroupEntry
	err := scanUserFile(r, "group", func(f []string) {
		if len(f) < 3 {
			return
		}
		gid, ok := parseFileID(f[2])
		if !ok {
			return
		}
		e := GroupEntry{Name: f[0], GID: gid}
		if len(f) > 3 && f[3] != "" {
			e.Members = strings.Split(f[3], ",")
		}
		out = append(out, e)
	})
	return out, err
}

// scanUserFile calls fn with the colon-separated fields of each line that
// is neither blank nor a comment; leading and trailing space is trimmed,
// as glibc does.
func scanUserFile(r io.Reader, what string, fn func(fields []string)) error {
	if r == nil {
		return nil
	}
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 4096), maxUserFileLine)
	line := 0
	for s.Scan() {
		line++
		text := strings.TrimSpace(s.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		fn(strings.Split(text, ":"))
	}
	if err := s.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("reading %s file: line %d is longer than %d KiB: %w", what, line+1, maxUserFileLine>>10, errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("reading %s file: %w", what, err)
	}
	return nil
}

// parseFileID reads a uid or gid field: decimal digits only, in range.
func parseFileID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > maxID {
		return 0, false
	}
	return uint32(n), true
}

// idArg is the user or group half of a spec: a number or a name.
type idArg struct {
	name    string
	id      uint32
	numeric bool
}

// parseIDArg reads one half of a spec as runc does: what strconv.Atoi
// takes is a number ("+5" included) and must be in range; anything else
// is a name. An empty half is nil, meaning "not given".
func parseIDArg(s, spec string) (*idArg, error) {
	if s == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(s)
	if errors.Is(err, strconv.ErrSyntax) {
		return &idArg{name: s}, nil
	}
	if err != nil || n < 0 || n > maxID {
		return nil, fmt.Errorf("invalid user %q: uids and gids must be in range 0-%d: %w", spec, maxID, errdefs.ErrInvalidArgument)
	}
	return &idArg{name: s, id: uint32(n), numeric: true}, nil
}

// ResolveUser turns a user spec into ids the way Docker and runc do
// (moby/sys/user GetExecUser, with uid 0, gid 0 and home "/" as defaults).
// spec is "", "user", "uid", "user:group", "uid:gid", "user:gid" or
// "uid:group"; passwd and group are the image's /etc/passwd and
// /etc/group, nil when absent.
//
//   - The user is the first passwd entry with that name, or that uid for a
//     number; "" means uid 0. It gives the gid and home.
//   - A number without an entry is used as it is, with gid 0; a name
//     without one is an error.
//   - A group is looked up the same way, by name or gid; a gid without an
//     entry is used as it is.
//   - Without an explicit group, the user's supplementary groups are the
//     groups that list its name as a member. With one, there are none:
//     runc's rule, since "user:group" asks for exactly that group.
//
// Errors about missing entries read as Docker's ("unable to find user
// NAME: no matching entries in passwd file") and wrap errdefs.ErrNotFound;
// ids out of range wrap errdefs.ErrInvalidArgument.
func ResolveUser(spec string, passwd, group io.Reader) (User, error) {
	userPart, groupPart, _ := strings.Cut(spec, ":")
	uarg, err := parseIDArg(userPart, spec)
	if err != nil {
		return User{}, err
	}
	garg, err := parseIDArg(groupPart, spec)
	if err != nil {
		return User{}, err
	}

	u := User{Home: "/"}
	users, err := ParsePasswd(passwd)
	if err != nil {
		name := userPart
		if uarg == nil {
			name = "0"
		}
		return User{}, fmt.Errorf("unable to find user %s: %w", name, err)
	}
	var matched *PasswdEntry
	for i := range users {
		e := &users[i]
		if uarg == nil && e.UID == 0 || uarg != nil && (uarg.numeric && e.UID == uarg.id || !uarg.numeric && e.Name == uarg.name) {
			matched = e
			break
		}
	}
	switch {
	case matched != nil:
		u.UID, u.GID = matched.UID, matched.GID
		if matched.Home != "" {
			u.Home = matched.Home
		}
	case uarg != nil && !uarg.numeric:
		return User{}, fmt.Errorf("unable to find user %s: %w", uarg.name, errNoPasswdEntries)
	case uarg != nil:
		u.UID = uarg.id
	}

	var supplementary []uint32
	if garg != nil || matched != nil && matched.Name != "" {
		groups, err := ParseGroup(group)
		if err != nil {
			return User{}, fmt.Errorf("unable to find groups for spec %q: %w", spec, err)
		}
		if garg != nil {
			i := slices.IndexFunc(groups, func(g GroupEntry) bool {
				return garg.numeric && g.GID == garg.id || !garg.numeric && g.Name == garg.name
			})
			switch {
			case i >= 0:
				u.GID = groups[i].GID
			case !garg.numeric:
				return User{}, fmt.Errorf("unable to find group %s: %w", garg.name, errNoGroupEntries)
			default:
				u.GID = garg.id
			}
		} else {
			for _, g := range groups {
				if slices.Contains(g.Members, matched.Name) {
					supplementary = append(supplementary, g.GID)
				}
			}
		}
	}
	u.AdditionalGids = uniqueIDs(append([]uint32{u.GID}, supplementary...))
	return u, nil
}

// AdditionalGroups resolves --group-add values, group names or gids,
// against the image's /etc/group (nil when absent), as Docker does: a
// name must have an entry, a gid need not. The result keeps the order
// given, without repeats.
func AdditionalGroups(names []string, group io.Reader) ([]uint32, error) {
	args := make([]*idArg, 0, len(names))
	for _, n := range names {
		a, err := parseIDArg(n, n)
		if err != nil {
			return nil, err
		}
		if a == nil {
			return nil, fmt.Errorf("invalid group \"\": name a group or a gid: %w", errdefs.ErrInvalidArgument)
		}
		args = append(args, a)
	}
	groups, err := ParseGroup(group)
	if err != nil {
		return nil, fmt.Errorf("unable to find additional groups %q: %w", names, err)
	}
	out := make([]uint32, 0, len(args))
	for _, a := range args {
		i := slices.IndexFunc(groups, func(g GroupEntry) bool {
			return a.numeric && g.GID == a.id || !a.numeric && g.Name == a.name
		})
		switch {
		case i >= 0:
			out = append(out, groups[i].GID)
		case !a.numeric:
			return nil, fmt.Errorf("unable to find group %s: %w", a.name, errNoGroupEntries)
		default:
			out = append(out, a.id)
		}
	}
	return uniqueIDs(out), nil
}

// uniqueIDs drops repeats, keeping first places.
func uniqueIDs(ids []uint32) []uint32 {
	seen := make(map[uint32]bool, len(ids))
	out := ids[:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
