package inject

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/exclude"
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
	// AccessLog turns the sidecar's HTTP access log on (--access-log) or
	// off; nil: off.
	AccessLog *bool
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
			o.ExcludeOutboundPorts, err = exclude.ParsePorts(v)
		case contract.ConfigExcludeOutboundCIDRsAnnotation:
			o.ExcludeOutboundCIDRs, err = exclude.ParseCIDRs(v)
		case contract.ConfigAccessLogAnnotation:
			o.AccessLog, err = parseBool(v)
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
		a[contract.ConfigExcludeOutboundPortsAnnotation] = exclude.FormatPorts(o.ExcludeOutboundPorts)
	}
	if len(o.ExcludeOutboundCIDRs) > 0 {
		a[contract.ConfigExcludeOutboundCIDRsAnnotation] = exclude.FormatCIDRs(o.ExcludeOutboundCIDRs)
	}
	if o.AccessLog != nil {
		a[contract.ConfigAccessLogAnnotation] = strconv.FormatBool(*o.AccessLog)
	}
	return a
}

// parseBool reads "true" or "false", nothing else.
func parseBool(v string) (*bool, error) {
	switch v {
	case "true":
		return ptr(true), nil
	case "false":
		return ptr(false), nil
	}
	return nil, errors.New(`want "true" or "false"`)
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
