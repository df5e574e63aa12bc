// Package server is berth's registry server: the OCI distribution API
// (spec v1.1, with the Docker Registry v2 behaviour clients rely on) over
// a filesystem store of its own, separate from the engine's content store
// but built on the same rules: every write is temp + fsync + rename, and
// no blob is linked into a repository before its bytes have been checked
// against their digest.
//
// Two types make it up:
//
//   - Store (store.go, upload.go; the directory tree is drawn in
//     paths.go) keeps blobs once by digest, per-repository links for
//     layers, manifest revisions, tags and referrers, and upload sessions
//     as files. It holds nothing in memory, so it is safe for concurrent
//     use by many requests and by several processes; its Walk methods are
//     what garbage collection marks from.
//   - Registry (registry.go) is the http.Handler: routing, an optional
//     Authorizer between routing and storage, per-endpoint handlers
//     (blobs.go, manifests.go, lists.go) and the spec's error JSON
//     (errors.go). Registry.Serve runs it with timeouts against slow
//     clients and a graceful shutdown.
//
// Input is parsed before it touches anything: repository names by the
// spec's grammar, tags, digests (sha256 and sha512 only) and upload IDs
// by hand-written parsers that are fuzzed (names.go), manifests by a
// validator that checks structure, media types, digests, sizes and
// embedded data (manifest.go). Client mistakes get the spec's 4xx codes;
// a 500 means a fault of the server, and is logged.
//
// Around them: auth*.go (htpasswd, berth's token issuer, external tokens,
// ACLs: an Authorizer), gc.go (online garbage collection and the lock
// protocol that makes it safe beside a serving process), proxy*.go
// (pull-through cache of upstream registries), config.go and serve.go
// (the YAML file, TLS, the listener and its handlers), metrics.go and
// accesslog.go (http.Handler wrappers outside the Registry).
package server
