package image

import (
	"encoding/json"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// InspectResponse is Docker's image-inspect JSON (GET /images/{name}/json),
// field for field, so docker inspect --format templates work unchanged.
type InspectResponse struct {
	ID            string `json:"Id"`
	RepoTags      []string
	RepoDigests   []string
	Parent        string
	Comment       string
	Created       string
	DockerVersion string
	Author        string
	Config        *InspectConfig
	Architecture  string
	Variant       string `json:",omitempty"`
	Os            string
	OsVersion     string `json:",omitempty"`
	Size          int64
	GraphDriver   GraphDriver
	RootFS        RootFS
	Metadata      Metadata
	Descriptor    *v1.Descriptor `json:",omitempty"`
}

// InspectConfig is the Config object of docker image inspect: the image's
// runtime defaults in Docker's container-config shape.
type InspectConfig struct {
	Hostname     string
	Domainname   string
	User         string
	AttachStdin  bool
	AttachStdout bool
	AttachStderr bool
	ExposedPorts map[string]struct{} `json:",omitempty"`
	Tty          bool
	OpenStdin    bool
	StdinOnce    bool
	Env          []string
	Cmd          []string
	Healthcheck  json.RawMessage `json:",omitempty"`
	ArgsEscaped  bool            `json:",omitempty"`
	Image        string
	Volumes      map[string]struct{}
	WorkingDir   string
	Entrypoint   []string
	OnBuild      []string
	Labels       map[string]string
	StopSignal   string   `json:",omitempty"`
	Shell        []string `json:",omitempty"`
}

// GraphDriver names the storage driver: berth's snapshot driver,
// "overlay" or "copy", where Docker says "overlay2".
type GraphDriver struct {
	Data map[string]string
	Name string
}

// RootFS lists the image's diffIDs.
type RootFS struct {
	Type   string
	Layers []string `json:",omitempty"`
}

// Metadata holds what the engine, not the image, knows.
type Metadata struct {
	LastTagTime time.Time `json:",omitempty"`
}

// Inspect returns docker image inspect's view of the image idOrRef names.
func (s *Service) Inspect(idOrRef string) (*InspectResponse, error) {
	img, err := s.Meta.Get(idOrRef)
	if err != nil {
		return nil, err
	}
	out := img.Inspect()
	out.GraphDriver.Name = s.Snapshots.Driver()
	return out, nil
}

// Inspect renders the record in Docker's image-inspect shape.
func (img *Image) Inspect() *InspectResponse {
	c := img.Config
	out := &InspectResponse{
		ID:            img.ID.String(),
		RepoTags:      familiarAll(img.RepoTags),
		RepoDigests:   familiarAll(img.RepoDigests),
		Comment:       img.comment(),
		DockerVersion: img.DockerVersion,
		Author:        c.Author,
		Architecture:  c.Architecture,
		Variant:       c.Variant,
		Os:            c.OS,
		OsVersion:     c.OSVersion,
		Size:          img.Size,
		GraphDriver:   GraphDriver{Name: "overlay"},
		RootFS:        RootFS{Type: c.RootFS.Type},
		Metadata:      Metadata{LastTagTime: img.LastTagTime},
		Config: &InspectConfig{
			User:         c.Config.User,
			ExposedPorts: c.Config.ExposedPorts,
			Env:          c.Config.Env,
			Cmd:          c.Config.Cmd,
			Healthcheck:  img.Healthcheck,
			ArgsEscaped:  c.Config.ArgsEscaped, //nolint:staticcheck // Docker still reports it
			Volumes:      c.Config.Volumes,
			WorkingDir:   c.Config.WorkingDir,
			Entrypoint:   c.Config.Entrypoint,
			OnBuild:      img.OnBuild,
			Labels:       c.Config.Labels,
			StopSignal:   c.Config.StopSignal,
			Shell:        img.Shell,
		},
	}
	if c.Created != nil {
		out.Created = c.Created.UTC().Format(time.RFC3339Nano)
	} else if !img.Created.IsZero() {
		out.Created = img.Created.UTC().Format(time.RFC3339Nano)
	}
	for _, d := range img.DiffIDs {
		out.RootFS.Layers = append(out.RootFS.Layers, d.String())
	}
	if img.ManifestDigest != "" {
		out.Descriptor = &v1.Descriptor{MediaType: img.ManifestMediaType, Digest: img.ManifestDigest}
	}
	return out
}

// comment is the config's comment, or for configs without one (OCI
// configs have no such field) the newest history comment, which is where
// docker import and commit put theirs too.
func (img *Image) comment() string {
	if img.Comment != "" {
		return img.Comment
	}
	if h := img.Config.History; len(h) > 0 {
		return h[len(h)-1].Comment
	}
	return ""
}

func familiarAll(refs []string) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		out = append(out, Familiar(r))
	}
	return out
}

// HistoryEntry is one line of docker history, in the API's shape
// (GET /images/{name}/history).
type HistoryEntry struct {
	ID        string `json:"Id"` // the image ID on the newest entry, "<missing>" below it
	Created   int64  // Unix seconds
	CreatedBy string
	Tags      []string
	Size      int64 // the uncompressed size of the layer the step made, 0 for empty layers
	Comment   string
}

// History returns the image's build steps, newest first.
func (s *Service) History(idOrRef string) ([]HistoryEntry, error) {
	img, err := s.Meta.Get(idOrRef)
	if err != nil {
		return nil, err
	}
	return img.History(), nil
}

// History returns the record's build steps, newest first.
func (img *Image) History() []HistoryEntry {
	hist := img.Config.History
	if len(hist) == 0 { // no history: one step per layer
		for range img.DiffIDs {
			hist = append(hist, v1.History{Created: img.Config.Created})
		}
	}
	var out []HistoryEntry
	layer := 0
	for _, h := range hist {
		e := HistoryEntry{ID: "<missing>", CreatedBy: h.CreatedBy, Comment: h.Comment, Tags: nil}
		if h.Created != nil {
			e.Created = h.Created.Unix()
		}
		if !h.EmptyLayer {
			if layer < len(img.LayerSizes) {
				e.Size = img.LayerSizes[layer]
			}
			layer++
		}
		out = append(out, e)
	}
	if len(out) > 0 {
		out[len(out)-1].ID = img.ID.String()
		out[len(out)-1].Tags = familiarAll(img.RepoTags)
	}
	for i, k := 0, len(out)-1; i < k; i, k = i+1, k-1 {
		out[i], out[k] = out[k], out[i]
	}
	return out
}
