package opts

// IsName reports whether s is a name as Docker's container, network and
// volume names go, the same rule berth uses for its own keys: an ASCII
// letter or digit, then letters, digits, '_', '.' or '-'; at least min
// bytes and, when max > 0, at most max. A loop rather than a regular
// expression: each berth process would compile the expressions at start
// (package init), on every command, for a check that is a few compares.
func IsName(s string, min, max int) bool {
	if len(s) < min || (max > 0 && len(s) > max) || s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}
