// Package expose decides what a Kubernetes Service's skiff.io/
// annotations ask for: the network address, the routing pattern, the
// protocol of each port and the multicast mode. The controller, which
// exposes the Service, and the CLI, which writes the annotations, both
// ask it, so that they accept and refuse the same annotations in the
// same words. The names of protocols and patterns are sidecar/shared/model's.
package expose

import (
	"errors"
	"fmt"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/names"
)

// Exposure is what a Kubernetes Service's skiff.io/ annotations ask for.
// Parse decides it, for the controller that exposes the Service
// and for the CLI that writes the annotations, in the same words.
type Exposure struct {
	Address   string              // the network address; "" is the Service's name
	Routing   model.Pattern       // Balanced unless annotated
	Protocol  model.Protocol      // "" unless annotated: each port's appProtocol decides
	Multicast model.MulticastSpec // zero unless Routing is Multicast
	routing   string              // the annotation's value, for errors
}

// AnnotationError is a bad skiff annotation on a Service.
type AnnotationError struct {
	Annotation, Value string
	// Err says why: for skiff.io/routing and skiff.io/protocol, the error
	// of ParsePattern, ParseProtocol or CheckRouting, for
	// skiff.io/multicast and skiff.io/multicast-timeout that of
	// ParseMulticast, in the words every source uses.
	Err error
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("annotation %s: %q: %v", e.Annotation, e.Value, e.Err)
}

func (e *AnnotationError) Unwrap() error { return e.Err }

// Parse reads a Service's annotations: skiff.io/address (a
// DNS-1123 label), skiff.io/routing and skiff.io/protocol (ParsePattern,
// ParseProtocol; empty is the same as absent), skiff.io/multicast and
// skiff.io/multicast-timeout (ParseMulticast; bad values are refused
// whatever the routing, and kept only for multicast). A bad one is an
// *AnnotationError. Whether the routing suits each port is PortProtocol's
// decision.
func Parse(ann map[string]string) (Exposure, error) {
	var x Exposure
	if a, ok := ann[contract.AddressAnnotation]; ok {
		if !names.IsLabel(a) {
			return x, &AnnotationError{contract.AddressAnnotation, a, errors.New("a network address must be a DNS-1123 label: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit")}
		}
		x.Address = a
	}
	x.routing = ann[contract.RoutingAnnotation]
	routing, err := model.ParsePattern(x.routing)
	if err != nil {
		return x, &AnnotationError{contract.RoutingAnnotation, x.routing, err}
	}
	x.Routing = routing
	mode, timeout := ann[contract.MulticastAnnotation], ann[contract.MulticastTimeoutAnnotation]
	if _, err := model.ParseMulticast(mode, ""); err != nil {
		return x, &AnnotationError{contract.MulticastAnnotation, mode, err}
	}
	m, err := model.ParseMulticast(mode, timeout)
	if err != nil {
		return x, &AnnotationError{contract.MulticastTimeoutAnnotation, timeout, err}
	}
	if routing == model.Multicast {
		x.Multicast = m
	}
	if p := ann[contract.ProtocolAnnotation]; p != "" {
		if x.Protocol, err = model.ParseProtocol(p); err != nil {
			return x, &AnnotationError{contract.ProtocolAnnotation, p, err}
		}
	}
	return x, nil
}

// PortProtocol returns the protocol of a port whose appProtocol is
// appProtocol (the annotated one wins), or an *AnnotationError on
// skiff.io/routing when the routing cannot be served with it
// (CheckRouting).
func (x Exposure) PortProtocol(appProtocol string) (model.Protocol, error) {
	proto := x.Protocol
	if proto == "" {
		proto = model.AppProtocol(appProtocol)
	}
	if err := model.CheckRouting(proto, x.Routing); err != nil {
		return "", &AnnotationError{contract.RoutingAnnotation, x.routing, err}
	}
	return proto, nil
}

// Port is one port of a Service: its number, its transport protocol ("" is
// TCP) and its appProtocol.
type Port struct {
	Number      int32
	Transport   string
	AppProtocol string
}

// ExposedPort is a port of a Service that is exposed: its index among the
// Service's ports, and its protocol.
type ExposedPort struct {
	Index    int
	Protocol model.Protocol
}

// Ports returns the Service's exposed ports: every TCP port, with its
// protocol (PortProtocol). It refuses the whole Service with an
// *AnnotationError when the routing cannot be served on one of them, and,
// when it has no TCP port, with why each port is left out.
func (x Exposure) Ports(ports []Port) ([]ExposedPort, error) {
	var out []ExposedPort
	var errs []error
	for i, p := range ports {
		if p.Transport != "" && p.Transport != "TCP" {
			errs = append(errs, fmt.Errorf("port %d: protocol %s: only TCP ports are exposed", p.Number, p.Transport))
			continue
		}
		proto, err := x.PortProtocol(p.AppProtocol)
		if err != nil {
			return nil, err
		}
		out = append(out, ExposedPort{Index: i, Protocol: proto})
	}
	if len(out) == 0 {
		return nil, errors.Join(append(errs, errors.New("no TCP port to expose"))...)
	}
	return out, nil
}
