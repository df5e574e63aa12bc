package server

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"time"
)

// AccessLog logs one line per request h serves, when its response is
// done, through log (text or JSON by its handler):
//
//	method path [query] status bytes_sent bytes_received duration
//	remote proto user_agent [user]
//
// duration is in seconds. user is the name the auth layer authenticated
// (WithUser), absent for anonymous requests. Requests for /health and
// /metrics are logged at debug level, so that probes and scrapes, which
// come every few seconds, do not drown the rest at the default level.
func AccessLog(h http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		o, r := observe(w, r)
		slot := &userSlot{}
		r = r.WithContext(context.WithValue(r.Context(), userKey{}, slot))
		defer func() {
			level := slog.LevelInfo
			if isProbePath(r.URL.Path) {
				level = slog.LevelDebug
			}
			ctx := r.Context()
			if !log.Enabled(ctx, level) {
				return
			}
			attrs := make([]slog.Attr, 0, 12)
			attrs = append(attrs,
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
			)
			if r.URL.RawQuery != "" {
				attrs = append(attrs, slog.String("query", r.URL.RawQuery))
			}
			attrs = append(attrs,
				slog.Int("status", o.code()),
				slog.Int64("bytes_sent", o.sent),
				slog.Int64("bytes_received", o.received()),
				slog.Float64("duration", math.Round(time.Since(start).Seconds()*1e6)/1e6),
				slog.String("remote", r.RemoteAddr),
				slog.String("proto", r.Proto),
				slog.String("user_agent", r.UserAgent()),
			)
			if u := slot.get(); u != "" {
				attrs = append(attrs, slog.String("user", u))
			}
			log.LogAttrs(ctx, level, "request", attrs...)
		}()
		h.ServeHTTP(o, r)
	})
}

func isProbePath(p string) bool {
	return p == "/health" || p == "/healthz" || p == "/metrics"
}

// ---- the authenticated user ----

// userKey is the context key of the request's userSlot.
type userKey struct{}

// userSlot holds the authenticated user of one request. It is a slot the
// outermost layer (AccessLog) puts in the context, filled by whatever
// authenticates further in: contexts only flow inwards, and the access
// log, written after the response, is outside the Authorizer.
type userSlot struct {
	mu   sync.Mutex
	name string
}

func (s *userSlot) get() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.name
}

func (s *userSlot) set(name string) {
	s.mu.Lock()
	s.name = name
	s.mu.Unlock()
}

// WithUser records name as the authenticated user of the request whose
// context ctx is. The access log names it on the request's line.
//
// An Authorizer cannot replace the request it is given, so it calls
// WithUser(r.Context(), name) and may drop the result: the request's
// context already carries a slot (put there by AccessLog), which this
// fills. A middleware that passes a new request on uses the returned
// context, which carries the name itself when there was no slot.
func WithUser(ctx context.Context, name string) context.Context {
	if s, ok := ctx.Value(userKey{}).(*userSlot); ok {
		s.set(name)
		return ctx
	}
	s := &userSlot{name: name}
	return context.WithValue(ctx, userKey{}, s)
}

// UserFrom is the authenticated user recorded by WithUser, or "".
func UserFrom(ctx context.Context) string {
	if s, ok := ctx.Value(userKey{}).(*userSlot); ok {
		return s.get()
	}
	return ""
}
