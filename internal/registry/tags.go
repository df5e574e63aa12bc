package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/reference"
)

// maxTagPages bounds how many pages of a tag list are followed, so a
// registry whose Link headers loop cannot keep us forever.
const maxTagPages = 1000

// Tags lists the tags of a repository ("localhost:5000/app", "busybox")
// at its registry, following the list's pages.
func Tags(ctx context.Context, repo string, opts ...Option) ([]string, error) {
	o := newOptions(opts)
	named, err := image.ParseRef(repo)
	if err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	if n, err := reference.ParseNormalizedNamed(repo); err != nil || !reference.IsNameOnly(n) {
		return nil, fmt.Errorf("list tags of %s: name the repository without a tag or digest: %w", repo, errdefs.ErrInvalidArgument)
	}
	c, err := o.dial(ctx, reference.Domain(named), reference.Path(named), false, transport.PullScope)
	if err != nil {
		return nil, fmt.Errorf("list tags of %s: %w", image.FamiliarString(named), err)
	}
	var tags []string
	next := c.base + "/v2/" + c.repo.RepositoryStr() + "/tags/list?n=1000"
	for page := 0; next != "" && page < maxTagPages; page++ {
		ts, link, err := c.tagPage(ctx, next)
		if err != nil {
			return nil, fmt.Errorf("list tags of %s: %w", image.FamiliarString(named), err)
		}
		tags = append(tags, ts...)
		next = link
	}
	return tags, nil
}

// tagPage fetches one page of a tag list and the next page's URL from
// its Link header ("" on the last page).
func (c *client) tagPage(ctx context.Context, u string) ([]string, string, error) {
	resp, err := c.do(ctx, func() (*http.Request, error) { return http.NewRequest(http.MethodGet, u, nil) }, http.StatusOK)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	var doc struct {
		Tags []string `json:"tags"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, MaxManifestSize)).Decode(&doc); err != nil {
		return nil, "", fmt.Errorf("tag list from %s: %v: %w", redact(u), err, errdefs.ErrInvalidArgument)
	}
	return doc.Tags, nextLink(u, resp.Header.Get("Link")), nil
}

// nextLink resolves a Link: <url>; rel="next" header against the page's URL.
func nextLink(page, link string) string {
	for _, part := range strings.Split(link, ",") {
		target, params, ok := strings.Cut(part, ";")
		if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
			continue
		}
		target = strings.Trim(strings.TrimSpace(target), "<>")
		base, err := url.Parse(page)
		if err != nil {
			return ""
		}
		ref, err := url.Parse(target)
		if err != nil {
			return ""
		}
		next := base.ResolveReference(ref)
		if next.Host != base.Host {
			return "" // never follow a tag list to another host with our token
		}
		return next.String()
	}
	return ""
}
