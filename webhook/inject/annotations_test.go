package inject

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
)

func TestParseAnnotations(t *testing.T) {
	q := func(s string) *resource.Quantity { v := resource.MustParse(s); return &v }
	for _, tc := range []struct {
		name    string
		in      map[string]string
		want    Overrides
		wantErr string
	}{
		{name: "none", in: map[string]string{"other": "x", contract.InjectAnnotation: "true"}},
		{name: "all", in: map[string]string{
			contract.ConfigProxyCPUAnnotation:             "0.5",
			contract.ConfigProxyMemoryAnnotation:          "1Gi",
			contract.ConfigLogLevelAnnotation:             "error",
			contract.ConfigExcludeOutboundPortsAnnotation: " 443 ,80,443",
			contract.ConfigExcludeOutboundCIDRsAnnotation: "10.1.2.3/8, 2001:db8::1, 10.0.0.0/8",
			contract.ConfigAccessLogAnnotation:            "true",
		}, want: Overrides{
			ProxyCPU:             q("500m"),
			ProxyMemory:          q("1Gi"),
			LogLevel:             "error",
			ExcludeOutboundPorts: []uint16{80, 443},
			ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::1/128")},
			AccessLog:            ptr(true),
		}},
		{name: "access log off", in: map[string]string{contract.ConfigAccessLogAnnotation: "false"}, want: Overrides{AccessLog: ptr(false)}},
		{name: "access log yes", in: map[string]string{contract.ConfigAccessLogAnnotation: "yes"},
			wantErr: `annotation config.skiff.io/access-log: "yes": want "true" or "false"`},
		{name: "access log True", in: map[string]string{contract.ConfigAccessLogAnnotation: "True"},
			wantErr: `annotation config.skiff.io/access-log: "True": want "true" or "false"`},
		{name: "access log empty", in: map[string]string{contract.ConfigAccessLogAnnotation: ""},
			wantErr: `annotation config.skiff.io/access-log: "": want "true" or "false"`},
		{name: "cpu words", in: map[string]string{contract.ConfigProxyCPUAnnotation: "two"},
			wantErr: `annotation config.skiff.io/proxy-cpu: "two": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`},
		{name: "memory zero", in: map[string]string{contract.ConfigProxyMemoryAnnotation: "0"},
			wantErr: `annotation config.skiff.io/proxy-memory: "0": want a positive quantity`},
		{name: "cpu negative", in: map[string]string{contract.ConfigProxyCPUAnnotation: "-1"},
			wantErr: `annotation config.skiff.io/proxy-cpu: "-1": want a positive quantity`},
		{name: "log level", in: map[string]string{contract.ConfigLogLevelAnnotation: "INFO"},
			wantErr: `annotation config.skiff.io/log-level: "INFO": want one of debug, info, error`},
		{name: "port range", in: map[string]string{contract.ConfigExcludeOutboundPortsAnnotation: "65536"},
			wantErr: `annotation config.skiff.io/exclude-outbound-ports: "65536": port "65536": want a number from 1 to 65535`},
		{name: "port empty item", in: map[string]string{contract.ConfigExcludeOutboundPortsAnnotation: "80,,443"},
			wantErr: `annotation config.skiff.io/exclude-outbound-ports: "80,,443": empty item 2 in comma-separated list`},
		{name: "ports empty", in: map[string]string{contract.ConfigExcludeOutboundPortsAnnotation: ""}},
		{name: "cidr junk", in: map[string]string{contract.ConfigExcludeOutboundCIDRsAnnotation: "10.0.0.0/8,example.com"},
			wantErr: `annotation config.skiff.io/exclude-outbound-cidrs: "10.0.0.0/8,example.com": ParseAddr("example.com"): unexpected character (at "example.com")`},
		{name: "cidr zone", in: map[string]string{contract.ConfigExcludeOutboundCIDRsAnnotation: "fe80::1%eth0"},
			wantErr: `annotation config.skiff.io/exclude-outbound-cidrs: "fe80::1%eth0": address "fe80::1%eth0": zones are not allowed`},
		{name: "unknown key", in: map[string]string{contract.ConfigAnnotationPrefix + "proxy-image": "evil"},
			wantErr: `annotation config.skiff.io/proxy-image: "evil": unknown configuration annotation`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAnnotations(tc.in)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
				var ae *AnnotationError
				if !errors.As(err, &ae) {
					t.Errorf("error %v is no *AnnotationError", err)
				}
			}
			if diff := cmp.Diff(gotErr, tc.wantErr); diff != "" {
				t.Errorf("error (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(got, tc.want, cmpOverrides); diff != "" {
				t.Errorf("ParseAnnotations (-got +want):\n%s", diff)
			}
		})
	}
	if _, err := ParseAnnotations(map[string]string{contract.ConfigAnnotationPrefix + "x": "y"}); !errors.Is(err, ErrUnknownAnnotation) {
		t.Errorf("unknown key: %v does not wrap ErrUnknownAnnotation", err)
	}
}

var cmpOverrides = cmp.Options{
	cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 && a.String() == b.String() }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

// FuzzParseAnnotations: parsing never panics, and any accepted set of
// values round-trips through Overrides.Annotations unchanged.
func FuzzParseAnnotations(f *testing.F) {
	f.Add("100m", "64Mi", "info", "80,443", "10.0.0.0/8,fd00::/8", "true")
	f.Add("1e3", "1.5Gi", "debug", " 53 , 53", "::ffff:10.0.0.1", "false")
	f.Add("two", "", "warn", "0", "10.0.0.0/33", "yes")
	f.Add("+.5", "-1", "error", "65535,1", "fe80::1%eth0/64", "")
	f.Fuzz(func(t *testing.T, cpu, mem, level, ports, cidrs, accessLog string) {
		in := map[string]string{}
		for k, v := range map[string]string{
			contract.ConfigProxyCPUAnnotation:             cpu,
			contract.ConfigProxyMemoryAnnotation:          mem,
			contract.ConfigLogLevelAnnotation:             level,
			contract.ConfigExcludeOutboundPortsAnnotation: ports,
			contract.ConfigExcludeOutboundCIDRsAnnotation: cidrs,
			contract.ConfigAccessLogAnnotation:            accessLog,
		} {
			if v != "" {
				in[k] = v
			}
		}
		o, err := ParseAnnotations(in)
		if err != nil {
			if !errors.As(err, new(*AnnotationError)) {
				t.Fatalf("error %v is no *AnnotationError", err)
			}
			return
		}
		rendered := o.Annotations()
		o2, err := ParseAnnotations(rendered)
		if err != nil {
			t.Fatalf("rendered %v does not parse: %v", rendered, err)
		}
		if diff := cmp.Diff(o2, o, cmpOverrides); diff != "" {
			t.Fatalf("round trip of %v via %v (-got +want):\n%s", in, rendered, diff)
		}
		if diff := cmp.Diff(o2.Annotations(), rendered); diff != "" {
			t.Fatalf("rendering is not canonical (-got +want):\n%s", diff)
		}
	})
}
