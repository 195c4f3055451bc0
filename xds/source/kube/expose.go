// Package kube is the controller's Kubernetes source. In the site's
// namespace it turns Services annotated skiff.io/expose=true, with their
// ready EndpointSlice endpoints, into the site's services; it keeps one
// proxy Service per network address the site does not expose itself,
// selecting the gateway pods; and it finds the gateway whose view of the
// network the controller follows.
package kube

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// AnnotationError is a bad skiff annotation on a Service.
type AnnotationError struct {
	Annotation, Value string
	// Err says why: for skiff.io/routing and skiff.io/protocol, the error
	// of sidecar/shared/model's ParsePattern, ParseProtocol or CheckRouting,
	// for skiff.io/multicast and skiff.io/multicast-timeout that of
	// ParseMulticast, in the words every source uses.
	Err error
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("annotation %s: %q: %v", e.Annotation, e.Value, e.Err)
}

func (e *AnnotationError) Unwrap() error { return e.Err }

// Exposed reports whether svc asks to be exposed to the network.
func Exposed(svc *corev1.Service) bool {
	return svc.Annotations[contract.ExposeAnnotation] == "true"
}

// ExposedServices returns the services one exposed Service contributes, one
// per port, with the ready endpoints of its EndpointSlices. A bad
// annotation is an *AnnotationError (wrapped); the Service then
// contributes nothing. Protocols and routing patterns are decided by
// sidecar/shared/model alone: ParseProtocol and ParsePattern read the annotations
// (empty is the same as absent), AppProtocol a port's appProtocol, and
// CheckRouting refuses, for the whole Service, a pattern the data plane
// cannot serve on any of its ports. ParseMulticast reads the multicast
// mode and deadline; bad values are refused whatever the routing, and
// the services of a multicast Service carry them (those of another
// pattern carry none).
func ExposedServices(svc *corev1.Service, eps []discoveryv1.EndpointSlice) ([]model.Service, error) {
	address := svc.Name
	if a, ok := svc.Annotations[contract.AddressAnnotation]; ok {
		if msgs := validation.IsDNS1123Label(a); len(msgs) > 0 {
			return nil, &AnnotationError{contract.AddressAnnotation, a, errors.New(strings.Join(msgs, "; "))}
		}
		address = a
	}
	routingValue := svc.Annotations[contract.RoutingAnnotation]
	routing, err := model.ParsePattern(routingValue)
	if err != nil {
		return nil, &AnnotationError{contract.RoutingAnnotation, routingValue, err}
	}
	multicast, err := exposedMulticast(svc.Annotations)
	if err != nil {
		return nil, err
	}
	if routing != model.Multicast {
		multicast = model.MulticastSpec{}
	}
	var protoOverride model.Protocol
	if p := svc.Annotations[contract.ProtocolAnnotation]; p != "" {
		if protoOverride, err = model.ParseProtocol(p); err != nil {
			return nil, &AnnotationError{contract.ProtocolAnnotation, p, err}
		}
	}
	var vips []string
	for _, ip := range svc.Spec.ClusterIPs {
		if ip != "" && ip != corev1.ClusterIPNone {
			vips = append(vips, ip)
		}
	}
	var out []model.Service
	var errs []error
	for _, sp := range svc.Spec.Ports {
		if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
			errs = append(errs, fmt.Errorf("port %d: protocol %s: only TCP ports are exposed", sp.Port, sp.Protocol))
			continue
		}
		proto := protoOverride
		if proto == "" {
			proto = model.AppProtocol(ptrString(sp.AppProtocol))
		}
		if err := model.CheckRouting(proto, routing); err != nil {
			return nil, &AnnotationError{contract.RoutingAnnotation, routingValue, err}
		}
		s := model.Service{Address: address, Port: int(sp.Port), Protocol: proto, Routing: routing, Multicast: multicast, VIPs: slices.Clone(vips)}
		s.Network = s.Key()
		s.Endpoints = endpointsFor(sp, eps)
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.Join(append(errs, errors.New("no TCP port to expose"))...)
	}
	return out, nil
}

// exposedMulticast reads skiff.io/multicast and skiff.io/multicast-timeout
// with model.ParseMulticast (empty is the same as absent); a bad one is an
// *AnnotationError naming it.
func exposedMulticast(ann map[string]string) (model.MulticastSpec, error) {
	mode, timeout := ann[contract.MulticastAnnotation], ann[contract.MulticastTimeoutAnnotation]
	if _, err := model.ParseMulticast(mode, ""); err != nil {
		return model.MulticastSpec{}, &AnnotationError{contract.MulticastAnnotation, mode, err}
	}
	m, err := model.ParseMulticast(mode, timeout)
	if err != nil {
		return model.MulticastSpec{}, &AnnotationError{contract.MulticastTimeoutAnnotation, timeout, err}
	}
	return m, nil
}

// endpointsFor returns the endpoints of the EndpointSlices for one Service
// port: the slice port with the same name gives the target port. Only
// ready endpoints are listed as ready; terminating and unready ones are
// listed as not ready.
func endpointsFor(sp corev1.ServicePort, eps []discoveryv1.EndpointSlice) []model.Endpoint {
	var out []model.Endpoint
	seen := map[string]bool{}
	for _, es := range eps {
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port := -1
		for _, p := range es.Ports {
			if p.Port != nil && ptrString(p.Name) == sp.Name && (p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP) {
				port = int(*p.Port)
			}
		}
		if port < 1 {
			continue
		}
		for _, e := range es.Endpoints {
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			name := ""
			if e.TargetRef != nil {
				name = e.TargetRef.Name
			}
			for _, ip := range e.Addresses {
				key := fmt.Sprintf("%s/%d", ip, port)
				if seen[key] {
					continue
				}
				seen[key] = true
				out = append(out, model.Endpoint{IP: ip, Port: port, Ready: ready, Name: name})
			}
		}
	}
	slices.SortFunc(out, func(a, b model.Endpoint) int { return strings.Compare(a.IP, b.IP) })
	return out
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
