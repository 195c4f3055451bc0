// Package resources is the contract between skiff's xDS server and its
// clients: the names of the xDS resources a service is translated into,
// the "skiff.io" metadata they carry, and ServicesFromResources, which
// turns received Listeners, Clusters and ClusterLoadAssignments back into
// model.Service values.
//
// Every network service address:port (model.Service.Key) is served as
// four resources that all carry that name: a Listener (with an
// api_listener, so that proxyless gRPC clients resolve
// xds:///address:port), a RouteConfiguration, a Cluster of type EDS and a
// ClusterLoadAssignment with one locality per site (zone = site name).
// The Listener and the Cluster carry the service's attributes in their
// filter metadata under MetadataKey; every lb_endpoint carries its site
// and either its name (local endpoints) or the remote site's cost and
// endpoint count (endpoints that stand for a remote site, reached through
// the local gateway).
//
// The package imports Envoy's protobuf types and nothing of the server,
// so that the router's xDS client can use it.
package resources

import (
	"fmt"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// MetadataKey is the filter_metadata key of skiff's metadata on
// Listeners, Clusters and lb_endpoints.
const MetadataKey = "skiff.io"

// Service metadata fields (Listener and Cluster).
const (
	FieldAddress  = "address"  // string
	FieldPort     = "port"     // number
	FieldProtocol = "protocol" // string: tcp, http, http2
	FieldRouting  = "routing"  // string: balanced, closest, multicast
	FieldVIPs     = "vips"     // list of strings
	FieldGateway  = "gateway"  // string host:port; absent when the site has no gateway for the service
	// FieldGatewayListen is the address the local gateway binds for the
	// service when it differs from gateway; absent when empty.
	FieldGatewayListen = "gatewayListen"
	// FieldNetwork is the service's name in the routers' stream headers
	// and site records when it is not address:port; absent when empty.
	FieldNetwork = "network"
	// FieldMulticastMode and FieldMulticastTimeout are how a multicast
	// service answers (model.MulticastSpec): its mode, aggregate or
	// events, and the deadline of a request's copies, a Go duration such
	// as "5s". Written for the routing multicast only, defaults filled
	// in; read with model.ParseMulticast (absent is its default).
	FieldMulticastMode    = "multicastMode"
	FieldMulticastTimeout = "multicastTimeout"
)

// Endpoint metadata fields (lb_endpoint).
const (
	FieldSite      = "site"      // string: the endpoint's site
	FieldName      = "name"      // string: a local endpoint's name (a pod); absent when empty
	FieldIsGateway = "gateway"   // bool: true when the endpoint is the local gateway standing for a remote site
	FieldCost      = "cost"      // number: the remote site's path cost (gateway endpoints only)
	FieldEndpoints = "endpoints" // number: the remote site's ready endpoints (gateway endpoints only)
)

// ServiceMetadata returns the metadata Struct of a Listener or Cluster
// for s.
func ServiceMetadata(s *model.Service) *structpb.Struct {
	vips := make([]*structpb.Value, len(s.VIPs))
	for i, v := range s.VIPs {
		vips[i] = structpb.NewStringValue(v)
	}
	f := map[string]*structpb.Value{
		FieldAddress:  structpb.NewStringValue(s.Address),
		FieldPort:     structpb.NewNumberValue(float64(s.Port)),
		FieldProtocol: structpb.NewStringValue(string(s.Protocol)),
		FieldRouting:  structpb.NewStringValue(string(s.Routing)),
		FieldVIPs:     structpb.NewListValue(&structpb.ListValue{Values: vips}),
	}
	for k, v := range map[string]string{FieldGateway: s.Gateway, FieldGatewayListen: s.GatewayListen, FieldNetwork: s.Network} {
		if v != "" {
			f[k] = structpb.NewStringValue(v)
		}
	}
	if s.Routing == model.Multicast {
		f[FieldMulticastMode] = structpb.NewStringValue(string(s.Multicast.ModeOrDefault()))
		f[FieldMulticastTimeout] = structpb.NewStringValue(s.Multicast.Deadline().String())
	}
	return &structpb.Struct{Fields: f}
}

// LocalEndpointMetadata returns the metadata Struct of a local endpoint.
func LocalEndpointMetadata(site string, e *model.Endpoint) *structpb.Struct {
	f := map[string]*structpb.Value{FieldSite: structpb.NewStringValue(site)}
	if e.Name != "" {
		f[FieldName] = structpb.NewStringValue(e.Name)
	}
	return &structpb.Struct{Fields: f}
}

// GatewayEndpointMetadata returns the metadata Struct of the endpoint that
// stands for the remote site r.
func GatewayEndpointMetadata(r *model.RemoteSite) *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		FieldSite:      structpb.NewStringValue(r.Site),
		FieldIsGateway: structpb.NewBoolValue(true),
		FieldCost:      structpb.NewNumberValue(float64(r.Cost)),
		FieldEndpoints: structpb.NewNumberValue(float64(r.Endpoints)),
	}}
}

// serviceFromMetadata reads the service attributes of a Listener or
// Cluster's metadata.
func serviceFromMetadata(md *structpb.Struct) (model.Service, error) {
	var s model.Service
	var err error
	r := fieldReader{md: md}
	s.Address = r.str(FieldAddress, true)
	s.Port = r.integer(FieldPort, true)
	if s.Protocol, err = model.ParseProtocol(r.str(FieldProtocol, false)); err != nil {
		r.fail(err)
	}
	if s.Routing, err = model.ParsePattern(r.str(FieldRouting, false)); err != nil {
		r.fail(err)
	}
	// The multicast fields are checked whatever the routing, and kept for
	// the routing multicast only.
	if m, err := model.ParseMulticast(r.str(FieldMulticastMode, false), r.str(FieldMulticastTimeout, false)); err != nil {
		r.fail(err)
	} else if s.Routing == model.Multicast {
		s.Multicast = m
	}
	s.VIPs = r.strings(FieldVIPs)
	s.Gateway = r.str(FieldGateway, false)
	s.GatewayListen = r.str(FieldGatewayListen, false)
	s.Network = r.str(FieldNetwork, false)
	return s, r.err
}

// fieldReader reads typed fields of a Struct and keeps the first error.
type fieldReader struct {
	md  *structpb.Struct
	err error
}

func (r *fieldReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *fieldReader) value(name string, required bool) *structpb.Value {
	v, ok := r.md.GetFields()[name]
	if !ok && required {
		r.fail(fmt.Errorf("metadata field %q is missing", name))
	}
	return v
}

func (r *fieldReader) str(name string, required bool) string {
	v := r.value(name, required)
	if v == nil {
		return ""
	}
	s, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok {
		r.fail(fmt.Errorf("metadata field %q: want a string", name))
		return ""
	}
	return s.StringValue
}

func (r *fieldReader) integer(name string, required bool) int {
	v := r.value(name, required)
	if v == nil {
		return 0
	}
	n, ok := v.GetKind().(*structpb.Value_NumberValue)
	if !ok || n.NumberValue != float64(int(n.NumberValue)) {
		r.fail(fmt.Errorf("metadata field %q: want an integer", name))
		return 0
	}
	return int(n.NumberValue)
}

func (r *fieldReader) boolean(name string) bool {
	v := r.value(name, false)
	if v == nil {
		return false
	}
	b, ok := v.GetKind().(*structpb.Value_BoolValue)
	if !ok {
		r.fail(fmt.Errorf("metadata field %q: want a bool", name))
		return false
	}
	return b.BoolValue
}

func (r *fieldReader) strings(name string) []string {
	v := r.value(name, false)
	if v == nil {
		return nil
	}
	l, ok := v.GetKind().(*structpb.Value_ListValue)
	if !ok {
		r.fail(fmt.Errorf("metadata field %q: want a list", name))
		return nil
	}
	var out []string
	for _, e := range l.ListValue.GetValues() {
		s, ok := e.GetKind().(*structpb.Value_StringValue)
		if !ok {
			r.fail(fmt.Errorf("metadata field %q: want a list of strings", name))
			return nil
		}
		out = append(out, s.StringValue)
	}
	return out
}
