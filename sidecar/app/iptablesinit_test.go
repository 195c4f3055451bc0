package app

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/sidecar/redirect"
)

func parseIPTablesInit(args ...string) (IPTablesInitOptions, error) {
	fs := flag.NewFlagSet("iptables-init", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o IPTablesInitOptions
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	return o, o.Validate()
}

func TestIPTablesInitOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    redirect.Rules
		wantErr string
	}{
		{name: "defaults", want: redirect.Rules{OutboundPort: 15001, ProxyUID: 1337}},
		{name: "all", args: []string{"--outbound-port=15006", "--proxy-uid=101", "--exclude-outbound-ports=53,5432", "--exclude-outbound-cidrs=10.96.0.0/12,fd00::/8"},
			want: redirect.Rules{OutboundPort: 15006, ProxyUID: 101, ExcludePorts: []uint16{53, 5432},
				ExcludeCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00::/8")}}},
		{name: "empty excludes", args: []string{"--exclude-outbound-ports=", "--exclude-outbound-cidrs="}, want: redirect.Rules{OutboundPort: 15001, ProxyUID: 1337}},
		{name: "bad port", args: []string{"--exclude-outbound-ports=53,x"}, wantErr: `port "x"`},
		{name: "bad CIDR", args: []string{"--exclude-outbound-cidrs=10.0.0.0/33"}, wantErr: "10.0.0.0/33"},
		{name: "bad UID", args: []string{"--proxy-uid=-1"}, wantErr: "want a number from 1 to 4294967295"},
		{name: "UID 0", args: []string{"--proxy-uid=0"}, wantErr: "proxy UID 0"},
		{name: "outbound port", args: []string{"--outbound-port=70000"}, wantErr: "outbound port 70000"},
		{name: "dry-run and remove", args: []string{"--dry-run", "--remove"}, wantErr: "--dry-run and --remove exclude each other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseIPTablesInit(tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(o.Rules, tc.want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("rules (-got +want):\n%s", diff)
			}
		})
	}
}

// The skiff-init arguments in the injector's golden patches are accepted.
func TestIPTablesInitAcceptsInjectorArgs(t *testing.T) {
	files, err := filepath.Glob("../../webhook/inject/testdata/*.golden")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, args := range initArgs(doc) {
			found++
			if _, err := parseIPTablesInit(args[1:]...); err != nil {
				t.Errorf("%s: %q: %v", file, args, err)
			}
		}
	}
	if found < 2 {
		t.Fatalf("found %d iptables-init argument lists in the injector's golden files, want at least 2", found)
	}
}

// initArgs finds the string lists starting with "iptables-init" in doc.
func initArgs(doc any) [][]string {
	var out [][]string
	switch v := doc.(type) {
	case []any:
		if len(v) > 0 && v[0] == "iptables-init" {
			args := make([]string, len(v))
			for i, a := range v {
				args[i], _ = a.(string)
			}
			return [][]string{args}
		}
		for _, e := range v {
			out = append(out, initArgs(e)...)
		}
	case map[string]any:
		for _, e := range v {
			out = append(out, initArgs(e)...)
		}
	}
	return out
}

func TestRunIPTablesInitDryRun(t *testing.T) {
	o, err := parseIPTablesInit("--dry-run", "--exclude-outbound-ports=53")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := RunIPTablesInit(o, &out, logr.Discard()); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != o.Rules.String() || !strings.Contains(got, "\t\ttcp dport 53 return\n") {
		t.Errorf("dry run printed:\n%s", got)
	}
}
