// Package kube is the controller's Kubernetes source. In the site's
// namespace it turns Services annotated skiff.io/expose=true, with their
// ready EndpointSlice endpoints, into the site's services; it keeps one
// proxy Service per network address the site does not expose itself,
// selecting the gateway pods; and it finds the gateway whose view of the
// network the controller follows.
package kube

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/expose"
	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// AnnotationError is a bad skiff annotation on a Service (model's: the
// CLI checks the annotations it writes with the same expose.Parse).
type AnnotationError = expose.AnnotationError

// Exposed reports whether svc asks to be exposed to the network.
func Exposed(svc *corev1.Service) bool {
	return svc.Annotations[contract.ExposeAnnotation] == "true"
}

// servicePorts are a Service's ports as package expose reads them.
func servicePorts(svc *corev1.Service) []expose.Port {
	out := make([]expose.Port, len(svc.Spec.Ports))
	for i, sp := range svc.Spec.Ports {
		out[i] = expose.Port{Number: sp.Port, Transport: string(sp.Protocol), AppProtocol: ptrString(sp.AppProtocol)}
	}
	return out
}

// ExposedServices returns the services one exposed Service contributes, one
// per port, with the ready endpoints of its EndpointSlices. A bad
// annotation is an *AnnotationError (wrapped); the Service then
// contributes nothing. What the annotations ask for is decided by
// sidecar/shared/expose alone: Parse reads them (the CLI checks
// what it writes with the same functions), and Ports picks the TCP ports
// and gives each its protocol (the annotation, else its appProtocol),
// refusing, for the whole Service, a routing pattern the data plane
// cannot serve on any of them.
func ExposedServices(svc *corev1.Service, eps []discoveryv1.EndpointSlice) ([]model.Service, error) {
	x, err := expose.Parse(svc.Annotations)
	if err != nil {
		return nil, err
	}
	address := svc.Name
	if x.Address != "" {
		address = x.Address
	}
	var vips []string
	for _, ip := range svc.Spec.ClusterIPs {
		if ip != "" && ip != corev1.ClusterIPNone {
			vips = append(vips, ip)
		}
	}
	exposed, err := x.Ports(servicePorts(svc))
	if err != nil {
		return nil, err
	}
	out := make([]model.Service, 0, len(exposed))
	for _, p := range exposed {
		sp := svc.Spec.Ports[p.Index]
		s := model.Service{Address: address, Port: int(sp.Port), Protocol: p.Protocol, Routing: x.Routing, Multicast: x.Multicast, VIPs: slices.Clone(vips)}
		s.Network = s.Key()
		s.Endpoints = endpointsFor(sp, eps)
		out = append(out, s)
	}
	return out, nil
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
