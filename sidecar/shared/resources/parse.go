package resources

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// ServicesFromResources reads services back from the resources a client
// holds, keyed by resource name: every Listener or Cluster with skiff
// metadata is one service (the Listener's metadata wins when both are
// present, as they may briefly differ while an update arrives), and the
// ClusterLoadAssignment of the same name gives its local endpoints (with
// readiness) and, from the gateway endpoints, its remote sites. A service
// whose assignment has not arrived has no endpoints. Remote sites of a
// service without a gateway are not in the resources, so they cannot be
// read back.
//
// The services are returned in model order (Address, then Port; lists
// sorted as by model.Table.Normalize). Resources that cannot be read are
// left out and named in the error, which joins one error per resource;
// the services that could be read are returned all the same.
func ServicesFromResources(
	listeners map[string]*listenerv3.Listener,
	clusters map[string]*clusterv3.Cluster,
	clas map[string]*endpointv3.ClusterLoadAssignment,
) ([]model.Service, error) {
	names := map[string]bool{}
	for n := range listeners {
		names[n] = true
	}
	for n := range clusters {
		names[n] = true
	}
	var errs []error
	var out []model.Service
	for _, name := range slices.Sorted(maps.Keys(names)) {
		s, err := service(name, listeners[name], clusters[name], clas[name])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, s)
	}
	t := model.Table{Services: out}
	t.Normalize()
	return t.Services, errors.Join(errs...)
}

func service(name string, l *listenerv3.Listener, c *clusterv3.Cluster, cla *endpointv3.ClusterLoadAssignment) (model.Service, error) {
	var md *structpb.Struct
	kind := "listener"
	if l != nil {
		md = l.GetMetadata().GetFilterMetadata()[MetadataKey]
	} else {
		kind = "cluster"
		md = c.GetMetadata().GetFilterMetadata()[MetadataKey]
	}
	if md == nil {
		return model.Service{}, fmt.Errorf("%s %s: no %s metadata", kind, name, MetadataKey)
	}
	s, err := serviceFromMetadata(md)
	if err != nil {
		return model.Service{}, fmt.Errorf("%s %s: %w", kind, name, err)
	}
	if got := s.Key(); got != name {
		return model.Service{}, fmt.Errorf("%s %s: metadata names service %s", kind, name, got)
	}
	if cla == nil {
		return s, nil
	}
	if err := readEndpoints(&s, cla); err != nil {
		return model.Service{}, fmt.Errorf("cluster load assignment %s: %w", name, err)
	}
	return s, nil
}

func readEndpoints(s *model.Service, cla *endpointv3.ClusterLoadAssignment) error {
	for _, loc := range cla.GetEndpoints() {
		for _, lbe := range loc.GetLbEndpoints() {
			r := fieldReader{md: lbe.GetMetadata().GetFilterMetadata()[MetadataKey]}
			site := r.str(FieldSite, false)
			if site == "" {
				site = loc.GetLocality().GetZone()
			}
			if r.boolean(FieldIsGateway) {
				rs := model.RemoteSite{Site: site, Cost: r.integer(FieldCost, true), Endpoints: r.integer(FieldEndpoints, true)}
				if r.err != nil {
					return fmt.Errorf("gateway endpoint of site %s: %w", site, r.err)
				}
				s.Remote = append(s.Remote, rs)
				continue
			}
			sa := lbe.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				return fmt.Errorf("endpoint in site %s: no socket address", site)
			}
			e := model.Endpoint{
				IP:    sa.GetAddress(),
				Port:  int(sa.GetPortValue()),
				Ready: isReady(lbe.GetHealthStatus()),
				Name:  r.str(FieldName, false),
			}
			if r.err != nil {
				return fmt.Errorf("endpoint %s:%d: %w", e.IP, e.Port, r.err)
			}
			s.Endpoints = append(s.Endpoints, e)
		}
	}
	return nil
}

// isReady reports whether an endpoint of this health status takes
// traffic; Envoy treats UNKNOWN as healthy.
func isReady(h corev3.HealthStatus) bool {
	return h == corev3.HealthStatus_HEALTHY || h == corev3.HealthStatus_UNKNOWN
}
