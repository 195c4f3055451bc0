package kube

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Labels of the proxy Services skiff owns.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "skiff-controller"
	ProxyForLabel  = "skiff.io/proxy-for"
	PartOfLabel    = "app.kubernetes.io/part-of"
)

// Gateway ports for proxy listeners are allocated in this range; the
// gateway's own ports (15021, 15090, 55671) lie outside it.
const (
	MinGatewayPort = 20000
	MaxGatewayPort = 29999
)

// Owned reports whether svc is a proxy Service skiff created.
func Owned(svc *corev1.Service) bool {
	return svc.Labels[ManagedByLabel] == ManagedBy && svc.Labels[ProxyForLabel] != ""
}

// ProxyPort is one port of a proxy Service: the service port clients dial
// and the gateway port it forwards to.
type ProxyPort struct {
	Port, TargetPort int
}

// ProxyService returns the proxy Service for a network address: named by
// the address, with its ports, selecting the gateway pods.
func ProxyService(namespace, address string, ports []ProxyPort, selector map[string]string) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:      address,
			Namespace: namespace,
			Labels:    map[string]string{ManagedByLabel: ManagedBy, ProxyForLabel: address, PartOfLabel: "skiff"},
			Annotations: map[string]string{
				"skiff.io/description": "proxy for the network service " + address + "; managed by skiff-controller",
			},
		},
		Spec: corev1.ServiceSpec{Selector: maps.Clone(selector), Type: corev1.ServiceTypeClusterIP},
	}
	ports = slices.Clone(ports)
	slices.SortFunc(ports, func(a, b ProxyPort) int { return a.Port - b.Port })
	for _, p := range ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name:       "tcp-" + strconv.Itoa(p.Port),
			Protocol:   corev1.ProtocolTCP,
			Port:       int32(p.Port),
			TargetPort: intstr.FromInt32(int32(p.TargetPort)),
		})
	}
	return svc
}

// AllocatePorts gives every key (address:port) a gateway port in
// [MinGatewayPort, MaxGatewayPort]: the one it has in existing if still
// free, else one derived from a hash of the key, probing upwards. The
// result is stable: keys keep their ports as others come and go.
func AllocatePorts(keys []string, existing map[string]int) (map[string]int, error) {
	const span = MaxGatewayPort - MinGatewayPort + 1
	if len(keys) > span {
		return nil, fmt.Errorf("allocate gateway ports: %d services exceed the %d ports of %d-%d", len(keys), span, MinGatewayPort, MaxGatewayPort)
	}
	keys = slices.Clone(keys)
	slices.Sort(keys)
	out := make(map[string]int, len(keys))
	used := map[int]bool{}
	for _, k := range keys {
		if p, ok := existing[k]; ok && p >= MinGatewayPort && p <= MaxGatewayPort && !used[p] {
			out[k] = p
			used[p] = true
		}
	}
	for _, k := range keys {
		if _, ok := out[k]; ok {
			continue
		}
		h := fnv.New32a()
		h.Write([]byte(k))
		p := MinGatewayPort + int(h.Sum32()%span)
		for used[p] {
			p++
			if p > MaxGatewayPort {
				p = MinGatewayPort
			}
		}
		out[k] = p
		used[p] = true
	}
	return out, nil
}
