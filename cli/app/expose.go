package app

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/utils/ptr"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/expose"
)

// exposureAnnotations are the annotations expose sets and unexpose
// removes.
var exposureAnnotations = []string{contract.ExposeAnnotation, contract.AddressAnnotation, contract.RoutingAnnotation,
	contract.ProtocolAnnotation, contract.MulticastAnnotation, contract.MulticastTimeoutAnnotation}

// exposeService annotates a Service for the controller to expose it,
// refusing, before it writes anything, what the controller would refuse
// (expose.Parse and PortProtocol: the controller's own checks).
func exposeService(ctx context.Context, e *env, args []string) error {
	s, err := e.kube()
	if err != nil {
		return err
	}
	svc, err := s.service(ctx, args[0])
	if err != nil {
		return err
	}
	ann := map[string]string{}
	for k, v := range svc.Annotations {
		ann[k] = v
	}
	ann[contract.ExposeAnnotation] = "true"
	for flag, key := range map[string]string{"address": contract.AddressAnnotation, "routing": contract.RoutingAnnotation, "protocol": contract.ProtocolAnnotation} {
		if v := e.str(flag); v != "" {
			ann[key] = v
		}
	}
	x, err := expose.Parse(ann)
	if err != nil {
		return err
	}
	in := make([]expose.Port, len(svc.Spec.Ports))
	for i, p := range svc.Spec.Ports {
		in[i] = expose.Port{Number: p.Port, Transport: string(p.Protocol), AppProtocol: ptr.Deref(p.AppProtocol, "")}
	}
	exposed, err := x.Ports(in)
	if err != nil {
		return fmt.Errorf("the Service %s/%s: %w", s.ns, args[0], err)
	}
	ports := make([]string, len(exposed))
	for i, p := range exposed {
		ports[i] = fmt.Sprintf("%d (%s)", svc.Spec.Ports[p.Index].Port, p.Protocol)
	}
	svc.Annotations = ann
	if err := s.c.Update(ctx, svc); err != nil {
		return fmt.Errorf("annotating the Service %s/%s: %w", s.ns, args[0], err)
	}
	address := x.Address
	if address == "" {
		address = svc.Name
	}
	fmt.Fprintf(e.out, "Service %s exposed as %s, routed %s, port %s.\n", svc.Name, address, x.Routing, strings.Join(ports, ", "))
	return nil
}

// unexposeService removes the exposure annotations from a Service; the
// controller then withdraws it from the network.
func unexposeService(ctx context.Context, e *env, args []string) error {
	s, err := e.kube()
	if err != nil {
		return err
	}
	svc, err := s.service(ctx, args[0])
	if err != nil {
		return err
	}
	if svc.Annotations[contract.ExposeAnnotation] != "true" {
		return fmt.Errorf("the Service %s/%s is not exposed (no %s=true)", s.ns, args[0], contract.ExposeAnnotation)
	}
	for _, k := range exposureAnnotations {
		delete(svc.Annotations, k)
	}
	if err := s.c.Update(ctx, svc); err != nil {
		return fmt.Errorf("removing the annotations of the Service %s/%s: %w", s.ns, args[0], err)
	}
	fmt.Fprintf(e.out, "Service %s withdrawn from the network.\n", svc.Name)
	return nil
}
