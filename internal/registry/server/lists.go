package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// page applies the spec's n and last to a sorted list: the entries after
// last, at most n of them (n < 0: all). more says whether entries remain,
// for the Link header.
func page(all []string, n int, last string) (out []string, more bool) {
	i := 0
	if last != "" {
		i = sort.SearchStrings(all, last)
		if i < len(all) && all[i] == last {
			i++
		}
	}
	rest := all[i:]
	if n < 0 || n >= len(rest) {
		return rest, false
	}
	return rest[:n], n > 0
}

// nextLink is the RFC 5988 Link header for the page after out.
func nextLink(path string, n int, out []string) string {
	q := url.Values{}
	q.Set("n", strconv.Itoa(n))
	q.Set("last", out[len(out)-1])
	return "<" + path + "?" + q.Encode() + `>; rel="next"`
}

func writeJSON(w http.ResponseWriter, r *http.Request, contentType string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(data)
	}
	return nil
}

// listParams reads n and last.
func listParams(r *http.Request) (int, string, error) {
	n, err := atoiParam(r, "n")
	if err != nil {
		return 0, "", err
	}
	return n, r.URL.Query().Get("last"), nil
}

// getTags is GET /v2/<name>/tags/list[?n=&last=].
func (g *Registry) getTags(w http.ResponseWriter, r *http.Request, name string) error {
	n, last, err := listParams(r)
	if err != nil {
		return err
	}
	if served, err := g.proxy.serveTags(g, w, r, name); served || err != nil {
		return err
	}
	ok, err := g.store.RepositoryExists(name)
	if err != nil {
		return err
	}
	if !ok {
		return &Error{Code: CodeNameUnknown, Message: "repository name not known to registry", Detail: map[string]string{"name": name}}
	}
	all, err := g.store.Tags(name)
	if err != nil {
		return err
	}
	tags, more := page(all, n, last)
	if more {
		w.Header().Set("Link", nextLink("/v2/"+name+"/tags/list", n, tags))
	}
	return writeJSON(w, r, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{name, append([]string{}, tags...)})
}

// getCatalog is GET /v2/_catalog[?n=&last=].
func (g *Registry) getCatalog(w http.ResponseWriter, r *http.Request) error {
	n, last, err := listParams(r)
	if err != nil {
		return err
	}
	all, err := g.store.Repositories()
	if err != nil {
		return err
	}
	repos, more := page(all, n, last)
	if more {
		w.Header().Set("Link", nextLink("/v2/_catalog", n, repos))
	}
	return writeJSON(w, r, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{append([]string{}, repos...)})
}

// getReferrers is GET /v2/<name>/referrers/<digest>[?artifactType=]. It is
// 200 with an empty index for a subject nothing refers to, and for a
// repository that does not exist: the spec forbids 404 here, which
// clients read as "no referrers API".
func (g *Registry) getReferrers(w http.ResponseWriter, r *http.Request, name, ref string) error {
	d, err := ParseDigest(ref)
	if err != nil {
		return apiError(CodeDigestInvalid, err)
	}
	descs, err := g.store.Referrers(name, d)
	if err != nil {
		return err
	}
	if at := r.URL.Query().Get("artifactType"); at != "" {
		kept := descs[:0]
		for _, desc := range descs {
			if desc.ArtifactType == at {
				kept = append(kept, desc)
			}
		}
		descs = kept
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	return writeJSON(w, r, ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: descs,
	})
}
