package inject

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/skiff-io/skiff/sidecar/contract"
)

// Overrides are the per-pod settings read from config.skiff.io/
// annotations. A zero field means "not set": the site-wide Config applies.
type Overrides struct {
	// ProxyCPU becomes the sidecar's CPU request (and its CPU limit when the
	// configured limit is lower).
	ProxyCPU *resource.Quantity
	// ProxyMemory becomes the sidecar's memory request and limit.
	ProxyMemory *resource.Quantity
	// LogLevel is one of LogLevels.
	LogLevel string
	// ExcludeOutboundPorts are destination ports never redirected, ascending
	// and without duplicates.
	ExcludeOutboundPorts []uint16
	// ExcludeOutboundCIDRs are destination prefixes never redirected, masked,
	// in the order given, without duplicates.
	ExcludeOutboundCIDRs []netip.Prefix
}

// AnnotationError is a config.skiff.io/ annotation the injector cannot use.
type AnnotationError struct {
	Key, Value string
	Err        error
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("annotation %s: %q: %v", e.Key, e.Value, e.Err)
}

func (e *AnnotationError) Unwrap() error { return e.Err }

// ErrUnknownAnnotation is wrapped by the AnnotationError of a
// config.skiff.io/ key the injector does not know.
var ErrUnknownAnnotation = errors.New("unknown configuration annotation")

// ParseAnnotations reads the config.skiff.io/ annotations of a pod; other
// annotations are ignored. Every unknown key and every malformed value is
// reported (as *AnnotationError, joined in key order).
func ParseAnnotations(annotations map[string]string) (Overrides, error) {
	var o Overrides
	var errs []error
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, contract.ConfigAnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := annotations[k]
		var err error
		switch k {
		case contract.ConfigProxyCPUAnnotation:
			o.ProxyCPU, err = parseQuantity(v)
		case contract.ConfigProxyMemoryAnnotation:
			o.ProxyMemory, err = parseQuantity(v)
		case contract.ConfigLogLevelAnnotation:
			if !validLogLevel(v) {
				err = fmt.Errorf("want one of %s", strings.Join(LogLevels, ", "))
			}
			o.LogLevel = v
		case contract.ConfigExcludeOutboundPortsAnnotation:
			o.ExcludeOutboundPorts, err = parsePorts(v)
		case contract.ConfigExcludeOutboundCIDRsAnnotation:
			o.ExcludeOutboundCIDRs, err = parseCIDRs(v)
		default:
			err = ErrUnknownAnnotation
		}
		if err != nil {
			errs = append(errs, &AnnotationError{Key: k, Value: v, Err: err})
		}
	}
	if len(errs) > 0 {
		return Overrides{}, errors.Join(errs...)
	}
	return o, nil
}

// Annotations renders o as the annotations ParseAnnotations reads, in
// canonical form.
func (o Overrides) Annotations() map[string]string {
	a := map[string]string{}
	if o.ProxyCPU != nil {
		a[contract.ConfigProxyCPUAnnotation] = o.ProxyCPU.String()
	}
	if o.ProxyMemory != nil {
		a[contract.ConfigProxyMemoryAnnotation] = o.ProxyMemory.String()
	}
	if o.LogLevel != "" {
		a[contract.ConfigLogLevelAnnotation] = o.LogLevel
	}
	if len(o.ExcludeOutboundPorts) > 0 {
		a[contract.ConfigExcludeOutboundPortsAnnotation] = formatPorts(o.ExcludeOutboundPorts)
	}
	if len(o.ExcludeOutboundCIDRs) > 0 {
		a[contract.ConfigExcludeOutboundCIDRsAnnotation] = formatCIDRs(o.ExcludeOutboundCIDRs)
	}
	return a
}

func parseQuantity(v string) (*resource.Quantity, error) {
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return nil, err
	}
	if q.Sign() <= 0 {
		return nil, fmt.Errorf("want a positive quantity")
	}
	return &q, nil
}

// splitList splits a comma-separated list; spaces around items are allowed,
// empty items are not.
func splitList(v string) ([]string, error) {
	items := strings.Split(v, ",")
	for i, it := range items {
		it = strings.TrimSpace(it)
		if it == "" {
			return nil, fmt.Errorf("empty item %d in comma-separated list", i+1)
		}
		items[i] = it
	}
	return items, nil
}

func parsePorts(v string) ([]uint16, error) {
	items, err := splitList(v)
	if err != nil {
		return nil, err
	}
	ports := make([]uint16, 0, len(items))
	for _, it := range items {
		n, err := strconv.ParseUint(it, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("port %q: want a number from 1 to 65535", it)
		}
		ports = append(ports, uint16(n))
	}
	slices.Sort(ports)
	return slices.Compact(ports), nil
}

func formatPorts(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// parseCIDRs accepts IPv4 and IPv6 prefixes ("10.0.0.0/8", "fd00::/8") and
// bare addresses (a single host); host bits are masked off.
func parseCIDRs(v string) ([]netip.Prefix, error) {
	items, err := splitList(v)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, it := range items {
		var p netip.Prefix
		if strings.Contains(it, "/") {
			p, err = netip.ParsePrefix(it)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(it)
			if err == nil && a.Zone() != "" {
				err = fmt.Errorf("address %q: zones are not allowed", it)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return nil, err // netip's errors name the item
		}
		p = p.Masked()
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func formatCIDRs(cidrs []netip.Prefix) string {
	s := make([]string, len(cidrs))
	for i, p := range cidrs {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
