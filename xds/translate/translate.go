// Package translate turns a service table into xDS resources: for every
// service address:port a Listener (api_listener with an
// HttpConnectionManager that reads its routes over ADS), a
// RouteConfiguration, an EDS Cluster and a ClusterLoadAssignment, all
// named address:port (see package resources for the names and metadata
// the clients rely on).
//
// Translate is a pure function: no I/O, no clock, deterministic output.
// Its results are checked against golden files in testdata/ (go test
// ./xds/translate -update rewrites them).
//
// Localities and priorities: the ClusterLoadAssignment has one locality
// per site (locality.zone = site name). The local site's locality lists
// the local endpoints (HEALTHY when ready, UNHEALTHY otherwise); each
// remote site that has ready endpoints is one endpoint at the local
// gateway's address, and only when the service has a gateway. Every
// locality's load_balancing_weight is max(1, round(ready×100/(1+cost))).
// With routing "closest" the priority of a locality is the rank of its
// site's cost among the localities that have ready endpoints (equal costs
// share a rank, the local site has cost 0); a local locality without a
// ready endpoint is kept, so that clients still see its endpoints and
// their health, at the lowest priority (one past the last rank).
// Priorities are contiguous from 0, as Envoy and gRPC require. With
// "balanced" and "multicast" every locality has priority 0.
package translate

import (
	"cmp"
	"fmt"
	"math"
	"net"
	"reflect"
	"slices"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/resources"
)

// ConnectTimeout is every Cluster's connect_timeout.
const ConnectTimeout = 3 * time.Second

// Resources are the four xDS resources of one service.
type Resources struct {
	Listener  *listenerv3.Listener
	Route     *routev3.RouteConfiguration
	Cluster   *clusterv3.Cluster
	Endpoints *endpointv3.ClusterLoadAssignment
}

// Translate validates t and returns its xDS resources as one snapshot whose
// version, for every resource type, is t.Hash(): equal tables give equal
// versions, and a snapshot changes version exactly when the table
// changes. t is not modified.
func Translate(t *model.Table) (*cache.Snapshot, error) {
	snap, _, err := translate(t, t.Hash(), "", nil)
	return snap, err
}

// A Translator translates tables as Translate does, and reuses the
// resource messages of every service that is the same as in its previous
// table: unchanged services keep the very same pointers, so that a
// consumer can skip marshalling and hashing them again. A table equal to
// the previous one gives the previous snapshot. A Translator is not safe
// for concurrent use; its zero value is ready.
type Translator struct {
	site    string
	memo    map[string]memo
	version string
	snap    *cache.Snapshot
}

type memo struct {
	svc   model.Service
	res   Resources
	route string // the route name in the listener's api_listener
}

// Translate is Translate with reuse.
func (tr *Translator) Translate(t *model.Table) (*cache.Snapshot, error) {
	version := t.Hash()
	if tr.snap != nil && version == tr.version {
		return tr.snap, nil
	}
	snap, next, err := translate(t, version, tr.site, tr.memo)
	if err != nil {
		return nil, err
	}
	tr.site, tr.memo, tr.version, tr.snap = t.Site, next, version, snap
	return snap, nil
}

func translate(t *model.Table, version, prevSite string, prev map[string]memo) (*cache.Snapshot, map[string]memo, error) {
	if err := t.Validate(); err != nil {
		return nil, nil, fmt.Errorf("validate service table: %w", err)
	}
	c := t.Clone()
	c.Normalize()
	n := len(c.Services)
	ls, rs, cs, es := make([]types.Resource, 0, n), make([]types.Resource, 0, n), make([]types.Resource, 0, n), make([]types.Resource, 0, n)
	next := make(map[string]memo, n)
	for i := range c.Services {
		s := &c.Services[i]
		m, ok := prev[s.Key()]
		if !ok || prevSite != c.Site || !reflect.DeepEqual(&m.svc, s) {
			r, err := Service(c.Site, s)
			if err != nil {
				return nil, nil, err
			}
			route, err := apiListenerRoute(r.Listener)
			if err != nil {
				return nil, nil, err
			}
			m = memo{svc: *s, res: r, route: route}
		}
		next[s.Key()] = m
		ls, rs, cs, es = append(ls, m.res.Listener), append(rs, m.res.Route), append(cs, m.res.Cluster), append(es, m.res.Endpoints)
	}
	snap, err := cache.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ListenerType: ls,
		resource.RouteType:    rs,
		resource.ClusterType:  cs,
		resource.EndpointType: es,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot %s: %w", version, err)
	}
	routes := make(map[string]string, n) // listener name → route name
	for _, m := range next {
		routes[m.res.Listener.GetName()] = m.route
	}
	if err := consistent(snap, func(l *listenerv3.Listener) (string, error) { return routes[l.GetName()], nil }); err != nil {
		return nil, nil, fmt.Errorf("snapshot %s: %w", version, err)
	}
	return snap, next, nil
}

// Consistent checks that every Cluster's EDS service name has exactly one
// ClusterLoadAssignment and every Listener's api_listener route name
// exactly one RouteConfiguration, and the reverse.
//
// go-control-plane's Snapshot.Consistent finds route names only in
// listeners' filter chains, not in an api_listener, so on skiff's
// snapshots it reports every route as unreferenced. Consistent therefore
// runs Snapshot.Consistent on the snapshot without its routes (which
// checks clusters against assignments) and checks listeners against
// routes itself.
func Consistent(snap *cache.Snapshot) error {
	return consistent(snap, apiListenerRoute)
}

// consistent is Consistent with the listeners' route names given by
// routeOf.
func consistent(snap *cache.Snapshot, routeOf func(*listenerv3.Listener) (string, error)) error {
	view := cache.Snapshot{Resources: snap.Resources}
	view.Resources[types.Route] = cache.Resources{}
	if err := view.Consistent(); err != nil {
		return fmt.Errorf("check consistency: %w", err)
	}
	routes := snap.Resources[types.Route].Items
	referenced := make(map[string]bool, len(routes))
	for name, r := range snap.Resources[types.Listener].Items {
		l, ok := r.Resource.(*listenerv3.Listener)
		if !ok {
			return fmt.Errorf("listener %s: resource is a %T", name, r.Resource)
		}
		route, err := routeOf(l)
		if err != nil {
			return err
		}
		if _, ok := routes[route]; !ok {
			return fmt.Errorf("listener %s: route configuration %q is not in the snapshot", name, route)
		}
		referenced[route] = true
	}
	if len(referenced) != len(routes) {
		for name := range routes {
			if !referenced[name] {
				return fmt.Errorf("route configuration %s: no listener refers to it", name)
			}
		}
	}
	return nil
}

// apiListenerRoute returns the RDS route name of a listener's
// api_listener.
func apiListenerRoute(l *listenerv3.Listener) (string, error) {
	var hcm hcmv3.HttpConnectionManager
	if err := l.GetApiListener().GetApiListener().UnmarshalTo(&hcm); err != nil {
		return "", fmt.Errorf("listener %s: api_listener: %w", l.GetName(), err)
	}
	return hcm.GetRds().GetRouteConfigName(), nil
}

// Service returns the resources of service s in site, all named s.Key().
// s must be valid and normalized (see model.Table).
func Service(site string, s *model.Service) (Resources, error) {
	name := s.Key()
	md := resources.ServiceMetadata(s)
	cla, err := assignment(site, s)
	if err != nil {
		return Resources{}, fmt.Errorf("service %s: %w", name, err)
	}
	return Resources{
		Listener:  listener(name, md),
		Route:     route(name, s),
		Cluster:   cluster(name, md),
		Endpoints: cla,
	}, nil
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func metadata(md *structpb.Struct) *corev3.Metadata {
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{resources.MetadataKey: md}}
}

// routerConfig is shared by every listener; clients only read it.
var routerConfig = mustAny(&routerv3.Router{})

// mustAny wraps m in an Any; marshalling a well-formed message built here
// cannot fail.
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", m, err))
	}
	return a
}

func listener(name string, md *structpb.Struct) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: name,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       wellknown.Router,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: routerConfig},
		}},
	}
	return &listenerv3.Listener{
		Name:        name,
		ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(hcm)},
		Metadata:    metadata(md),
	}
}

// RetryAttempts is how many times a proxyless client sends an RPC of an
// HTTP address again when it failed UNAVAILABLE: as a router does with a
// request that reached no endpoint (package sidecar/l7 tries three
// candidates).
const RetryAttempts = 2

// route is a service's RouteConfiguration: every request to its cluster.
// Proxyless gRPC clients pick an endpoint of the cluster per RPC (round
// robin in a locality, localities by weight and priority); for an HTTP
// address (protocol http, http2 or grpc, routed per request) the virtual
// host also carries a retry policy, so that an RPC the gateway or an
// endpoint answered UNAVAILABLE (a gateway answers so for a request no
// endpoint took) is sent to another pick, RetryAttempts times at most.
func route(name string, s *model.Service) *routev3.RouteConfiguration {
	vh := &routev3.VirtualHost{
		Name:    name,
		Domains: []string{name, s.Address},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: ""}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}},
		}},
	}
	if s.Protocol.IsHTTP() {
		vh.RetryPolicy = &routev3.RetryPolicy{RetryOn: "unavailable", NumRetries: wrapperspb.UInt32(RetryAttempts)}
	}
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{vh}}
}

func cluster(name string, md *structpb.Struct) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		ConnectTimeout:       durationpb.New(ConnectTimeout),
		Metadata:             metadata(md),
	}
}

// locality is one site's share of a service before it becomes a
// LocalityLbEndpoints.
type locality struct {
	site  string
	cost  int
	ready int
	lbes  []*endpointv3.LbEndpoint
}

func assignment(site string, s *model.Service) (*endpointv3.ClusterLoadAssignment, error) {
	var locs []locality
	if len(s.Endpoints) > 0 {
		l := locality{site: site, ready: s.ReadyEndpoints()}
		for i := range s.Endpoints {
			e := &s.Endpoints[i]
			health := corev3.HealthStatus_UNHEALTHY
			if e.Ready {
				health = corev3.HealthStatus_HEALTHY
			}
			l.lbes = append(l.lbes, lbEndpoint(e.IP, e.Port, health, resources.LocalEndpointMetadata(site, e)))
		}
		locs = append(locs, l)
	}
	if s.Gateway != "" {
		host, port, err := splitHostPort(s.Gateway)
		if err != nil {
			return nil, err
		}
		for i := range s.Remote {
			r := &s.Remote[i]
			if r.Endpoints <= 0 {
				continue
			}
			locs = append(locs, locality{
				site:  r.Site,
				cost:  r.Cost,
				ready: r.Endpoints,
				lbes:  []*endpointv3.LbEndpoint{lbEndpoint(host, port, corev3.HealthStatus_HEALTHY, resources.GatewayEndpointMetadata(r))},
			})
		}
	}
	prio := priorities(s.Routing, locs)
	out := make([]*endpointv3.LocalityLbEndpoints, len(locs))
	for i, l := range locs {
		out[i] = &endpointv3.LocalityLbEndpoints{
			Locality:            &corev3.Locality{Zone: l.site},
			LbEndpoints:         l.lbes,
			LoadBalancingWeight: wrapperspb.UInt32(Weight(l.ready, l.cost)),
			Priority:            prio[i],
		}
	}
	slices.SortStableFunc(out, func(a, b *endpointv3.LocalityLbEndpoints) int {
		return cmp.Compare(a.Priority, b.Priority)
	})
	return &endpointv3.ClusterLoadAssignment{ClusterName: s.Key(), Endpoints: out}, nil
}

// Weight is a locality's load_balancing_weight: max(1,
// round(ready×100/(1+cost))).
func Weight(ready, cost int) uint32 {
	w := math.Round(float64(ready) * 100 / float64(1+max(cost, 0)))
	return uint32(max(1, min(w, math.MaxUint32)))
}

// priorities returns the priority of each locality (see the package
// comment). locs holds the local locality first, if any, then the
// remote ones by cost.
func priorities(routing model.Pattern, locs []locality) []uint32 {
	prio := make([]uint32, len(locs))
	if routing != model.Closest {
		return prio
	}
	var costs []int
	for _, l := range locs {
		if l.ready > 0 {
			costs = append(costs, l.cost)
		}
	}
	slices.Sort(costs)
	costs = slices.Compact(costs)
	for i, l := range locs {
		if l.ready == 0 {
			prio[i] = uint32(len(costs))
			continue
		}
		rank, _ := slices.BinarySearch(costs, l.cost)
		prio[i] = uint32(rank)
	}
	return prio
}

func lbEndpoint(host string, port int, health corev3.HealthStatus, md *structpb.Struct) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Protocol:      corev3.SocketAddress_TCP,
				Address:       host,
				PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
			}}},
		}},
		HealthStatus: health,
		Metadata:     metadata(md),
	}
}

func splitHostPort(hostport string) (string, int, error) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, fmt.Errorf("gateway %q: %w", hostport, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 || host == "" {
		return "", 0, fmt.Errorf("gateway %q: want host:port with a port in 1-65535", hostport)
	}
	return host, port, nil
}
