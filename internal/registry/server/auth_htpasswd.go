package server

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// HtpasswdConfig is a user file in Apache's htpasswd format with bcrypt
// hashes (`htpasswd -B`), the only kind distribution accepts too: the
// others (MD5 $apr1$, SHA-1 {SHA}, crypt) are fast to brute-force.
type HtpasswdConfig struct {
	Path string `yaml:"path"`
	// Realm is named in the Basic challenge (default "berth registry").
	Realm string `yaml:"realm,omitempty"`
}

const defaultRealm = "berth registry"

// htpasswd is the user table, re-read when the file changes (an admin
// adding a user with htpasswd -B needs no restart, as with distribution).
// A file that breaks while running keeps the last good table, logged:
// refusing everyone because of a half-written file would be worse.
type htpasswd struct {
	path string
	log  *slog.Logger

	mu    sync.Mutex
	stamp fileStamp // of the file the table came from, or last failed
	users map[string]string
	dummy []byte // hash compared for unknown users, at the file's cost

	// cache remembers credentials bcrypt has accepted. Basic auth sends
	// the password with every request, and bcrypt is slow on purpose
	// (~80 ms at cost 10): without it each chunk of a push would pay
	// that. Entries hold an HMAC of the password under a key made at
	// start, never the password, and are tied to the hash they were
	// checked against, so a changed password or removed user drops them.
	cacheKey [32]byte
	cache    map[string]cachedCred
}

type fileStamp struct {
	mtime time.Time
	size  int64
}

type cachedCred struct {
	mac   [32]byte
	hash  string
	until time.Time
}

const (
	credCacheTTL = 5 * time.Minute
	credCacheMax = 4096
)

// loadHtpasswd reads the file once; its errors say which line to fix.
func loadHtpasswd(path string, log *slog.Logger) (*htpasswd, error) {
	h := &htpasswd{path: path, log: log, cache: map[string]cachedCred{}}
	rand.Read(h.cacheKey[:])
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("auth.htpasswd: %w (create it with: htpasswd -cB %s USER)", err, path)
	}
	if err := h.load(fileStamp{st.ModTime(), st.Size()}); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *htpasswd) load(stamp fileStamp) error {
	data, err := os.ReadFile(h.path)
	if err != nil {
		return fmt.Errorf("auth.htpasswd: %w", err)
	}
	users, err := parseHtpasswd(data)
	if err != nil {
		return fmt.Errorf("auth.htpasswd %s: %w", h.path, err)
	}
	cost := bcrypt.DefaultCost
	for _, hash := range users {
		if c, err := bcrypt.Cost([]byte(hash)); err == nil {
			cost = c
			break
		}
	}
	// An unknown user costs one bcrypt comparison like a known one, so
	// timing does not tell which user names exist.
	dummy, err := bcrypt.GenerateFromPassword([]byte("no such user"), cost)
	if err != nil {
		return fmt.Errorf("auth.htpasswd %s: %w", h.path, err)
	}
	h.users, h.dummy, h.stamp = users, dummy, stamp
	return nil
}

// refresh re-reads the file if it changed since the table was read.
func (h *htpasswd) refresh() {
	st, err := os.Stat(h.path)
	if err != nil {
		if h.stamp != (fileStamp{}) {
			h.log.Warn("registry: htpasswd file unreadable; keeping the users read before", "path", h.path, "err", err)
			h.stamp = fileStamp{}
		}
		return
	}
	stamp := fileStamp{st.ModTime(), st.Size()}
	if stamp == h.stamp {
		return
	}
	if err := h.load(stamp); err != nil {
		h.log.Warn("registry: htpasswd file changed but is invalid; keeping the users read before", "err", err)
		h.stamp = stamp // not re-parsed until it changes again
		return
	}
	h.log.Info("registry: htpasswd file reloaded", "path", h.path, "users", len(h.users))
}

// check says whether password is user's.
func (h *htpasswd) check(user, password string) bool {
	h.mu.Lock()
	h.refresh()
	hash, known := h.users[user]
	dummy := h.dummy
	mac := h.mac(user, password)
	if c, ok := h.cache[user]; ok && known && c.hash == hash && time.Now().Before(c.until) && hmac.Equal(c.mac[:], mac[:]) {
		h.mu.Unlock()
		return true
	}
	h.mu.Unlock()

	if !known {
		bcrypt.CompareHashAndPassword(dummy, []byte(password))
		return false
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		return false
	}
	h.mu.Lock()
	if len(h.cache) >= credCacheMax {
		clear(h.cache)
	}
	h.cache[user] = cachedCred{mac: mac, hash: hash, until: time.Now().Add(credCacheTTL)}
	h.mu.Unlock()
	return true
}

func (h *htpasswd) mac(user, password string) [32]byte {
	m := hmac.New(sha256.New, h.cacheKey[:])
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

// parseHtpasswd reads "user:hash" lines; blank lines and lines starting
// with # are skipped. Every hash must be bcrypt ($2a$, $2b$, $2y$); any
// other is refused with its kind named, rather than skipped: a user whose
// login silently fails is harder to debug than a registry that says which
// line to redo. The name "anonymous" is refused, as it means "no
// credentials" in ACL rules.
func parseHtpasswd(data []byte) (map[string]string, error) {
	users := map[string]string{}
	lines := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("line %d: not user:hash", n)
		}
		if !validUserName(user) {
			return nil, fmt.Errorf("line %d: user name %q has spaces or control characters", n, user)
		}
		if user == AnonymousUser || user == AnyUser {
			return nil, fmt.Errorf("line %d: the user name %q is reserved in ACL rules; rename the user", n, user)
		}
		if prev, dup := lines[user]; dup {
			return nil, fmt.Errorf("line %d: user %q is already on line %d; remove one", n, user, prev)
		}
		if kind := hashKind(hash); kind != "" {
			return nil, fmt.Errorf("line %d: user %q has %s; only bcrypt is accepted: set the password again with htpasswd -B FILE %s", n, user, kind, user)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("line %d: user %q has a malformed bcrypt hash (%v): set the password again with htpasswd -B FILE %s", n, user, err, user)
		}
		users[user], lines[user] = hash, n
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return users, nil
}

// hashKind names a hash that is not bcrypt ("" for bcrypt).
func hashKind(h string) string {
	switch {
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		return ""
	case strings.HasPrefix(h, "$apr1$"):
		return "an Apache MD5 ($apr1$) hash"
	case strings.HasPrefix(h, "{SHA}"):
		return "a SHA-1 ({SHA}) hash"
	case strings.HasPrefix(h, "$1$"):
		return "an MD5-crypt ($1$) hash"
	case strings.HasPrefix(h, "$5$"), strings.HasPrefix(h, "$6$"):
		return "a SHA-crypt (" + h[:3] + ") hash"
	case strings.HasPrefix(h, "$"):
		return "an unknown hash format"
	case len(h) == 13:
		return "a DES crypt hash (or a plain-text password)"
	}
	return "a plain-text password or an unknown hash format"
}
