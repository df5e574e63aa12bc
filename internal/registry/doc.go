// Package registry is berth's client for OCI distribution registries:
// Pull fetches an image (by tag or digest, picking a platform from a
// manifest list or OCI index), verifies every blob against its digest and
// stores it through package image's stores, unpacking layers into
// snapshots while they download.
//
// The wire protocol, authentication and token exchange are
// go-containerregistry's (pkg/v1/remote, pkg/authn); this package decides
// what is fetched, in what order, and what is trusted: nothing the
// registry sends becomes visible in the content or snapshot store before
// its digest has been checked.
//
// A pull is planned, then applied:
//
//	resolve   ref -> top manifest (index? pick platform -> image manifest)
//	config    fetched, verified, stored; gives diff IDs and chain IDs
//	layers    up to 4 downloads at a time, each into the content store;
//	          the layer whose parent is already unpacked is also teed into
//	          snapshot.Store.Apply as it streams, the others are unpacked
//	          from content in chain order once their parent is in place
//	record    the image record (ID = config digest) with RepoTags and
//	          RepoDigests, written last
//
// A failed pull removes the blobs and layers it added that no image
// record references.
package registry
