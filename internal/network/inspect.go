package network

import (
	"maps"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Resource is a network as `docker network inspect` shows it (Docker's
// NetworkResource), field for field and in its order.
type Resource struct {
	Name       string
	ID         string `json:"Id"`
	Created    time.Time
	Scope      string
	Driver     string
	EnableIPv6 bool
	IPAM       IPAM
	Internal   bool
	Attachable bool
	Ingress    bool
	ConfigFrom ConfigReference
	ConfigOnly bool
	Containers map[string]EndpointResource
	Options    map[string]string
	Labels     map[string]string
}

// IPAM is a network's address management in Docker's shape.
type IPAM struct {
	Driver  string
	Options map[string]string
	Config  []IPAMConfig
}

// IPAMConfig is one subnet of a network.
type IPAMConfig struct {
	Subnet  string `json:",omitempty"`
	IPRange string `json:",omitempty"`
	Gateway string `json:",omitempty"`
}

// ConfigReference is Docker's config-from (swarm config networks): always
// empty here.
type ConfigReference struct {
	Network string
}

// EndpointResource is one container on a network, keyed by container ID
// in Resource.Containers.
type EndpointResource struct {
	Name        string
	EndpointID  string
	MacAddress  string
	IPv4Address string
	IPv6Address string
}

// NewResource is n with its endpoints eps in Docker's inspect shape. Maps
// are empty rather than null, as dockerd shows them, except the IPAM
// options of the predefined networks.
func NewResource(n *Network, eps []*Endpoint) *Resource {
	r := &Resource{
		Name: n.Name, ID: n.ID, Created: n.Created.Local(), Scope: n.Scope, Driver: n.Driver,
		IPAM:       IPAM{Driver: "default", Config: []IPAMConfig{}},
		Internal:   n.Internal,
		Attachable: n.Attachable,
		Containers: map[string]EndpointResource{},
		Options:    maps.Clone(n.Options),
		Labels:     maps.Clone(n.Labels),
	}
	if !n.Predefined() {
		r.IPAM.Options = map[string]string{}
	}
	if r.Options == nil {
		r.Options = map[string]string{}
	}
	if r.Labels == nil {
		r.Labels = map[string]string{}
	}
	if n.Subnet.IsValid() {
		c := IPAMConfig{Subnet: n.Subnet.String()}
		if n.IPRange.IsValid() {
			c.IPRange = n.IPRange.String()
		}
		if n.Gateway.IsValid() {
			c.Gateway = n.Gateway.String()
		}
		r.IPAM.Config = append(r.IPAM.Config, c)
	}
	for _, e := range eps {
		er := EndpointResource{Name: e.Name, EndpointID: e.ID, MacAddress: e.MAC}
		if e.Address.IsValid() {
			er.IPv4Address = e.Address.String()
		}
		r.Containers[e.ContainerID] = er
	}
	return r
}

// Inspect returns the network ref and its endpoints in Docker's shape,
// read in one transaction.
func (m *Manager) Inspect(ref string) (*Resource, error) {
	var out *Resource
	err := m.db.View(func(tx *bolt.Tx) error {
		rec, err := lookup(tx, ref)
		if err != nil {
			return err
		}
		eb, err := endpointBucket(tx, rec.ID, false)
		if err != nil {
			return err
		}
		eps, err := decodeEndpoints(eb)
		if err != nil {
			return err
		}
		out = NewResource(&rec.Network, eps)
		return nil
	})
	return out, err
}
