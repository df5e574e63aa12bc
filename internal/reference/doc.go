// Package reference parses and normalizes image references
// ("busybox", "registry.lan:5000/team/app:1", "app@sha256:..."), with
// the grammar, normalization (docker.io, library/) and API of
// github.com/distribution/reference, which berth used before.
//
// Why our own: that package compiles nine regular expressions in its
// package init, 2.6-3.1 ms and 414 KB of allocations in every berth
// process, measured with GODEBUG=inittrace=1 on this project's VM; a
// container start runs four berth processes (CLI, start hook, the
// runtime's init, exit hook), so ~11 ms of a 135 ms `run --rm` went to
// compiling expressions that `berth init` never uses. Here the grammar is
// matched by small hand-written functions, and the fuzz test runs every
// input through both packages and requires the same results: the same
// reference type, name, domain, path, tag, digest and familiar form, and
// the same error.
//
// The grammar (distribution/reference's):
//
//	reference       := name [ ":" tag ] [ "@" digest ]
//	name            := [domain '/'] remote-name
//	domain          := host [':' port-number]
//	host            := domain-name | '[' ipv6-chars ']'
//	domain-name     := domain-component ['.' domain-component]*
//	domain-component:= [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//	port-number     := [0-9]+
//	remote-name     := path-component ['/' path-component]*
//	path-component  := [a-z0-9]+ (separator [a-z0-9]+)*
//	separator       := [._] | '__' | '-'+
//	tag             := [\w][\w.-]{0,127}
//	digest          := algorithm ':' [0-9a-fA-F]{32,}
//	algorithm       := [A-Za-z][A-Za-z0-9]* ([-_+.][A-Za-z][A-Za-z0-9]*)*
package reference
