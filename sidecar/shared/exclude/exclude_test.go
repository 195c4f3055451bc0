package exclude

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		ports, cidrs string
		wantPorts    []uint16
		wantCIDRs    []netip.Prefix
		wantErr      string
	}{
		{},
		{ports: " 443 ,80,443,080", wantPorts: []uint16{80, 443}},
		{cidrs: "10.1.2.3/8, 2001:db8::1, 10.0.0.0/8", wantCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::1/128")}},
		{ports: "65536", wantErr: `port "65536": want a number from 1 to 65535`},
		{ports: "0", wantErr: `port "0": want a number from 1 to 65535`},
		{ports: "-1", wantErr: `port "-1": want a number from 1 to 65535`},
		{ports: "+80", wantErr: `port "+80": want a number from 1 to 65535`},
		{ports: "80-90", wantErr: `port "80-90": want a number from 1 to 65535`}, // no ranges
		{cidrs: "FD00::/8,::ffff:10.0.0.1/128", wantCIDRs: []netip.Prefix{netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("::ffff:10.0.0.1/128")}},
		{ports: "80,,443", wantErr: "empty item 2 in comma-separated list"},
		{ports: " ", wantErr: "empty item 1 in comma-separated list"},
		{ports: strings.Repeat("1,", MaxItems) + "1", wantErr: "65 items: at most 64"},
		{cidrs: "10.0.0.0/8,example.com", wantErr: `ParseAddr("example.com"): unexpected character (at "example.com")`},
		{cidrs: "10.0.0.0/33", wantErr: `netip.ParsePrefix("10.0.0.0/33"): prefix length out of range`},
		{cidrs: "fe80::1%eth0", wantErr: `address "fe80::1%eth0": zones are not allowed`},
		{cidrs: "fe80::1%eth0/64", wantErr: `netip.ParsePrefix("fe80::1%eth0/64"): IPv6 zones cannot be present in a prefix`},
	} {
		ports, perr := ParsePorts(tc.ports)
		cidrs, cerr := ParseCIDRs(tc.cidrs)
		err := perr
		if err == nil {
			err = cerr
		}
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.wantErr {
			t.Errorf("Parse(%q, %q): error %q, want %q", tc.ports, tc.cidrs, got, tc.wantErr)
		}
		if !slices.Equal(ports, tc.wantPorts) || !slices.Equal(cidrs, tc.wantCIDRs) {
			t.Errorf("Parse(%q, %q) = %v, %v; want %v, %v", tc.ports, tc.cidrs, ports, cidrs, tc.wantPorts, tc.wantCIDRs)
		}
	}
}

// FuzzParse: parsing never panics and never accepts more than MaxItems;
// what it accepts formats to a canonical form that parses to the same
// list and formats to itself.
func FuzzParse(f *testing.F) {
	f.Add("53,5432", "10.96.0.0/12,fd00::/8")
	f.Add("", "::ffff:10.0.0.1/128,0.0.0.0/0")
	f.Add("0,65536", "10.0.0.1/8")
	f.Add("080, 1", "FD00::/8,,fe80::%eth0/64")
	f.Fuzz(func(t *testing.T, ports, cidrs string) {
		if ps, err := ParsePorts(ports); err == nil {
			s := FormatPorts(ps)
			again, err := ParsePorts(s)
			if err != nil || !slices.Equal(again, ps) || FormatPorts(again) != s || len(ps) > MaxItems {
				t.Errorf("ParsePorts(%q) = %v formats as %q, which parses to %v, %v", ports, ps, s, again, err)
			}
		}
		if cs, err := ParseCIDRs(cidrs); err == nil {
			s := FormatCIDRs(cs)
			again, err := ParseCIDRs(s)
			if err != nil || !slices.Equal(again, cs) || FormatCIDRs(again) != s || len(cs) > MaxItems {
				t.Errorf("ParseCIDRs(%q) = %v formats as %q, which parses to %v, %v", cidrs, cs, s, again, err)
			}
			for _, p := range cs {
				if p != p.Masked() || p.Addr().Zone() != "" {
					t.Errorf("ParseCIDRs(%q) holds %v", cidrs, p)
				}
			}
		}
	})
}
