package server

import (
	"fmt"
	"slices"
	"strings"
)

// The ACL decides what each user may do; the Basic authorizer asks it on
// every request, the token issuer when it writes a token's access claim.
// Rules only ever grant: the access a user has is the union of every rule
// that names them, so rule order does not matter and a later rule cannot
// take away what an earlier one gave.

// ACL actions. Pushing needs pull as well as push (a client reads what it
// pushes: HEAD before upload, mounts, the manifest's blobs), as in
// distribution; catalog is listing every repository name (GET
// /v2/_catalog), which is registry-wide, so a rule's repos do not limit it.
const (
	ActionPull    = "pull"
	ActionPush    = "push"
	ActionDelete  = "delete"
	ActionCatalog = "catalog"
)

// Special users in ACL rules. Anonymous rules apply to every request,
// with or without credentials: logging in never takes rights away.
const (
	AnyUser       = "*"
	AnonymousUser = "anonymous"
)

// ACLRule grants Actions on the repositories matching Repos to User: a
// user name, "*" (any authenticated user) or "anonymous" (everyone,
// including requests without credentials).
type ACLRule struct {
	User string `yaml:"user"`
	// Repos are repository name patterns: "*" matches any run of
	// characters, "/" included, so "team/*" is everything under team/
	// at any depth and "*" is every repository.
	Repos []string `yaml:"repos,omitempty"`
	// Actions: pull, push, delete, catalog, or "*" for all four.
	Actions []string `yaml:"actions"`
}

// acl is the parsed rule list. A principal is a user name, or "" for a
// request without credentials.
type acl struct {
	rules []aclRule
}

type aclRule struct {
	user    string
	repos   []string
	actions []string // pull, push, delete (in that order, no duplicates)
	catalog bool
}

// defaultACL is what a registry with users and no acl: section does, as
// distribution's htpasswd auth does: any authenticated user may do
// anything, and nobody else anything.
var defaultACL = []ACLRule{{User: AnyUser, Repos: []string{"*"}, Actions: []string{"*"}}}

// newACL checks rules and compiles them; the error names the rule (from 1)
// and what to change.
func newACL(rules []ACLRule) (*acl, error) {
	if len(rules) == 0 {
		rules = defaultACL
	}
	a := &acl{}
	for i, r := range rules {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("auth.acl rule %d: "+format, append([]any{i + 1}, args...)...)
		}
		if r.User == "" {
			return nil, bad(`no user: set user to a name, "*" (any authenticated user) or "anonymous"`)
		}
		if !validUserName(r.User) {
			return nil, bad("user %q is not a valid user name (no colon, space or control characters)", r.User)
		}
		cr := aclRule{user: r.User}
		if len(r.Actions) == 0 {
			return nil, bad("no actions: list some of pull, push, delete, catalog")
		}
		for _, act := range r.Actions {
			switch act {
			case ActionPull, ActionPush, ActionDelete:
				cr.actions = append(cr.actions, act)
			case ActionCatalog:
				cr.catalog = true
			case "*":
				cr.actions = append(cr.actions, ActionPull, ActionPush, ActionDelete)
				cr.catalog = true
			default:
				return nil, bad("unknown action %q: use pull, push, delete, catalog or *", act)
			}
		}
		cr.actions = orderActions(cr.actions)
		if len(cr.actions) > 0 && len(r.Repos) == 0 {
			return nil, bad(`grants %s but lists no repos: add repos (["*"] for every repository)`, strings.Join(cr.actions, ","))
		}
		for _, p := range r.Repos {
			if err := validRepoPattern(p); err != nil {
				return nil, bad("%v", err)
			}
		}
		cr.repos = slices.Clone(r.Repos)
		a.rules = append(a.rules, cr)
	}
	return a, nil
}

// validUserName: htpasswd names are taken up to the first colon, and a
// user name travels in the token's sub claim and in logs; anything that
// could not come out of an htpasswd line or a Basic header is refused.
func validUserName(u string) bool {
	if u == "" || len(u) > 255 {
		return false
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c <= ' ' || c == ':' || c == 0x7f {
			return false
		}
	}
	return true
}

// validRepoPattern refuses a pattern that could never match a repository
// name (upper case, a trailing slash...), which would otherwise silently
// grant nothing.
func validRepoPattern(p string) error {
	if p == "" {
		return fmt.Errorf(`empty repository pattern: use "*" for every repository`)
	}
	if err := ValidateName(strings.ReplaceAll(p, "*", "x")); err != nil {
		return fmt.Errorf("repository pattern %q can never match a repository name (%s): names are lower-case letters, digits and . _ - separated by /; * matches anything", p, userText(err))
	}
	return nil
}

// orderActions dedups and puts actions in the order challenges and tokens
// list them, so output is stable.
func orderActions(in []string) []string {
	var out []string
	for _, a := range []string{ActionPull, ActionPush, ActionDelete} {
		if slices.Contains(in, a) {
			out = append(out, a)
		}
	}
	return out
}

// matchGlob matches name against a pattern in which "*" is any run of
// bytes, "/" included. Iterative with one backtrack point, so it is
// linear-ish and cannot blow up on many stars.
func matchGlob(pattern, name string) bool {
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case p < len(pattern) && pattern[p] == name[n]:
			p++
			n++
		case star >= 0:
			p = star + 1
			mark++
			n = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// applies says whether rule r speaks for principal user ("" = anonymous).
func (r *aclRule) applies(user string) bool {
	switch r.user {
	case AnonymousUser:
		return true
	case AnyUser:
		return user != ""
	}
	return user != "" && user == r.user
}

// repoActions is every action user has on repository name.
func (a *acl) repoActions(user, name string) []string {
	var got []string
	for i := range a.rules {
		r := &a.rules[i]
		if !r.applies(user) || len(r.actions) == 0 {
			continue
		}
		for _, p := range r.repos {
			if matchGlob(p, name) {
				got = append(got, r.actions...)
				break
			}
		}
	}
	return orderActions(got)
}

// catalog says whether user may list the repositories.
func (a *acl) catalog(user string) bool {
	for i := range a.rules {
		if a.rules[i].catalog && a.rules[i].applies(user) {
			return true
		}
	}
	return false
}

// allows says whether user has every action of every access.
func (a *acl) allows(user string, access []Access) bool {
	for _, ac := range access {
		switch ac.Type {
		case "repository":
			have := a.repoActions(user, ac.Name)
			for _, act := range ac.Actions {
				if !slices.Contains(have, act) {
					return false
				}
			}
		case "registry":
			if ac.Name != "catalog" || !a.catalog(user) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// grant is the part of one requested token scope that user has: the
// intersection the token spec asks for. A request for "*" gets every
// action held. Anything not understood grants nothing (never an error:
// the spec leaves refusing to the registry).
func (a *acl) grant(user string, req resourceActions) resourceActions {
	out := resourceActions{Type: req.Type, Name: req.Name, Actions: []string{}}
	switch req.Type {
	case "repository":
		if ValidateName(req.Name) != nil {
			return out
		}
		have := a.repoActions(user, req.Name)
		if slices.Contains(req.Actions, "*") {
			out.Actions = append(out.Actions, have...)
			return out
		}
		out.Actions = append(out.Actions, orderActions(intersect(req.Actions, have))...)
	case "registry":
		if req.Name == "catalog" && slices.Contains(req.Actions, "*") && a.catalog(user) {
			out.Actions = append(out.Actions, "*")
		}
	}
	return out
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
