package model

// MaxStatusServices bounds the services listed in the status ConfigMap, so
// that it stays far below etcd's object size limit however large the
// network grows; the counts are always complete.
const MaxStatusServices = 500

// SiteStatus is the JSON document in the status ConfigMap (key
// status.json): small, replaced in place, written only when it changes.
type SiteStatus struct {
	Site     string          `json:"site"`
	Version  string          `json:"version"`
	Sites    []Site          `json:"sites"`
	Counts   StatusCounts    `json:"counts"`
	Services []StatusService `json:"services,omitempty"`
	// Truncated is how many services were left out of Services.
	Truncated int `json:"truncated,omitempty"`
}

// StatusCounts are totals over the whole table.
type StatusCounts struct {
	Sites, Services, LocalEndpoints, ReadyLocalEndpoints int
}

// StatusService is one service in the status.
type StatusService struct {
	Name     string `json:"name"` // address:port
	Protocol string `json:"protocol"`
	Routing  string `json:"routing"`
	Ready    int    `json:"readyLocal"`
	// Remote are the other sites that serve it, with their ready
	// endpoints and path cost.
	Remote []RemoteSite `json:"remote,omitempty"`
}

// NewSiteStatus summarises a table whose content hash is version.
func NewSiteStatus(t *Table, version string) SiteStatus {
	st := SiteStatus{Site: t.Site, Version: version, Sites: t.Sites}
	st.Counts.Sites = len(t.Sites)
	st.Counts.Services = len(t.Services)
	for i := range t.Services {
		s := &t.Services[i]
		st.Counts.LocalEndpoints += len(s.Endpoints)
		st.Counts.ReadyLocalEndpoints += s.ReadyEndpoints()
		if len(st.Services) == MaxStatusServices {
			st.Truncated++
			continue
		}
		ss := StatusService{Name: s.Key(), Protocol: string(s.Protocol), Routing: string(s.Routing), Ready: s.ReadyEndpoints(), Remote: s.Remote}
		st.Services = append(st.Services, ss)
	}
	return st
}
