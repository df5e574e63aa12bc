// Package registrytest starts a real registry, Debian's docker-registry
// (distribution 2.8), for the tests of berth's registry client, optionally
// behind basic or token authentication.
//
// Why a real registry and not an in-process fake: the client must
// interoperate with registries we did not write. A fake encodes our own
// reading of the distribution spec, so a misreading would pass on both
// sides; distribution is the reference implementation, and its answers
// (status codes, challenges, Location headers, digest checks, error bodies)
// are the interop truth. Tests skip with a reason when the binary is not
// installed; CI installs it (.ci/run).
//
// For token auth the harness plays the part of the authorization server
// itself: a small net/http server on 127.0.0.1 issues RS256 JWTs signed
// with a key generated for the test, and the registry trusts the matching
// self-signed certificate. The harness does not need to be trusted by
// anyone else, so a few dozen lines stand in for a full token service.
//
// Each Start writes everything under its own t.TempDir(), removed when the
// test ends:
//
//	<Registry.Dir>
//	├── config.yml        the registry's configuration, written by Start
//	├── registry.log      the registry's stdout and stderr (log level error)
//	├── htpasswd          WithBasicAuth without token auth: user:bcrypt-hash
//	├── token/
//	│   └── rootcert.pem  WithTokenAuth: the certificate the registry trusts
//	├── policy.json       PushOCILayout: skopeo's accept-anything policy
//	└── storage/          the registry's filesystem storage root
//	    └── docker/registry/v2/
//	        ├── blobs/sha256/<2 hex>/<hex>/data
//	        └── repositories/<name>/{_layers,_manifests,_uploads}/
package registrytest
