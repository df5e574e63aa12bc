package reference

import "strings"

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
func isAlnum(c byte) bool      { return isLowerAlnum(c) || c >= 'A' && c <= 'Z' }
func isWord(c byte) bool       { return isAlnum(c) || c == '_' }
func isHex(c byte) bool        { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// matchTag: [\w][\w.-]{0,127}.
func matchTag(s string) bool {
	if len(s) == 0 || len(s) > 128 || !isWord(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isWord(s[i]) && s[i] != '.' && s[i] != '-' {
			return false
		}
	}
	return true
}

// matchDigest: algorithm ':' hex{32,}.
func matchDigest(s string) bool {
	alg, hex, ok := strings.Cut(s, ":")
	if !ok || len(hex) < 32 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		if !isHex(hex[i]) {
			return false
		}
	}
	// [A-Za-z][A-Za-z0-9]* ([-_+.][A-Za-z][A-Za-z0-9]*)*
	start := true // at the start of a component: a letter must come
	for i := 0; i < len(alg); i++ {
		c := alg[i]
		switch {
		case start:
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				return false
			}
			start = false
		case isAlnum(c):
		case c == '-' || c == '_' || c == '+' || c == '.':
			start = true
		default:
			return false
		}
	}
	return !start
}

// matchIdentifier: 64 lower-case hex digits, an image ID.
func matchIdentifier(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// matchDomain: host [':' port].
func matchDomain(s string) bool {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		host, port = s[:end+1], s[end+1:]
		if port != "" {
			if port[0] != ':' {
				return false
			}
			port = port[1:]
			if port == "" {
				return false
			}
		}
		inner := host[1 : len(host)-1]
		if inner == "" {
			return false
		}
		for i := 0; i < len(inner); i++ {
			if !isHex(inner[i]) && inner[i] != ':' {
				return false
			}
		}
	} else {
		if i := strings.IndexByte(s, ':'); i >= 0 {
			host, port = s[:i], s[i+1:]
			if port == "" {
				return false
			}
		}
		if !matchDomainName(host) {
			return false
		}
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	return true
}

// matchDomainName: components of letters, digits and inner '-', joined
// by '.'.
func matchDomainName(s string) bool {
	for _, comp := range strings.Split(s, ".") {
		if comp == "" || !isAlnum(comp[0]) || !isAlnum(comp[len(comp)-1]) {
			return false
		}
		for i := 0; i < len(comp); i++ {
			if !isAlnum(comp[i]) && comp[i] != '-' {
				return false
			}
		}
	}
	return true
}

// matchRemoteName: path components joined by '/'.
func matchRemoteName(s string) bool {
	for _, comp := range strings.Split(s, "/") {
		if !matchPathComponent(comp) {
			return false
		}
	}
	return true
}

// matchPathComponent: runs of [a-z0-9] separated by '.', '_', '__' or
// dashes.
func matchPathComponent(s string) bool {
	if s == "" || !isLowerAlnum(s[0]) || !isLowerAlnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); {
		if isLowerAlnum(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && !isLowerAlnum(s[j]) {
			j++
		}
		switch sep := s[i:j]; {
		case sep == "." || sep == "_" || sep == "__":
		case strings.Trim(sep, "-") == "":
		default:
			return false
		}
		i = j
	}
	return true
}

// splitName splits a name into domain and path as distribution's
// anchored name expression does: the first component is the domain when
// it is one and the rest is a remote name; else the whole is the path.
// ok is false when the name matches neither way.
func splitName(name string) (domain, path string, ok bool) {
	if first, rest, found := strings.Cut(name, "/"); found && matchDomain(first) && matchRemoteName(rest) {
		return first, rest, true
	}
	return "", name, matchRemoteName(name)
}

// match is the whole-reference expression: the name, the tag and the
// digest of s, or ok false.
func match(s string) (name, tag, dgst string, ok bool) {
	rest := s
	if i := strings.IndexByte(s, '@'); i >= 0 {
		rest, dgst = s[:i], s[i+1:]
		if !matchDigest(dgst) {
			return "", "", "", false
		}
	}
	name = rest
	if i := strings.LastIndexByte(rest, ':'); i > strings.LastIndexByte(rest, '/') {
		// After the last '/', a ':' can only start a tag; with no '/' at
		// all it can only too, since a port needs a '/' after it.
		name, tag = rest[:i], rest[i+1:]
		if !matchTag(tag) {
			return "", "", "", false
		}
	}
	if _, _, ok := splitName(name); !ok {
		return "", "", "", false
	}
	return name, tag, dgst, true
}
