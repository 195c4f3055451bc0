package redirect

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []uint16
		wantErr string
	}{
		{in: ""},
		{in: "53", want: []uint16{53}},
		{in: "53,5432,1,65535", want: []uint16{53, 5432, 1, 65535}},
		{in: "0", wantErr: `port "0": want a decimal number from 1 to 65535`},
		{in: "65536", wantErr: `port "65536"`},
		{in: "-1", wantErr: `port "-1"`},
		{in: "+80", wantErr: `port "+80"`},
		{in: "080", wantErr: `port "080"`},
		{in: "http", wantErr: `port "http"`},
		{in: "80-90", wantErr: `port "80-90"`}, // no ranges: the injector writes none
		{in: "53, 80", wantErr: `port " 80"`},
		{in: "53,", wantErr: `empty item 2 in "53,"`},
		{in: ",", wantErr: "empty item 1"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePorts(tc.in)
			checkParse(t, got, tc.want, err, tc.wantErr)
		})
	}
}

func TestParseCIDRs(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []netip.Prefix
		wantErr string
	}{
		{in: ""},
		{in: "10.0.0.0/8", want: prefixes("10.0.0.0/8")},
		{in: "10.96.0.0/12,fd00::/8,192.0.2.1/32,::ffff:10.0.0.1/128,0.0.0.0/0", want: prefixes("10.96.0.0/12", "fd00::/8", "192.0.2.1/32", "::ffff:10.0.0.1/128", "0.0.0.0/0")},
		{in: "10.0.0.0/33", wantErr: "10.0.0.0/33"},
		{in: "10.0.0.1/8", wantErr: `CIDR "10.0.0.1/8": host bits set, want 10.0.0.0/8`},
		{in: "fd00::1/8", wantErr: "want fd00::/8"},
		{in: "10.0.0.1", wantErr: "10.0.0.1"}, // the injector writes 10.0.0.1/32
		{in: "FD00::/8", wantErr: `CIDR "FD00::/8": want the canonical form fd00::/8`},
		{in: "fd00:0::/16", wantErr: "want the canonical form fd00::/16"},
		{in: "fe80::/10%eth0", wantErr: "fe80::/10%eth0"},
		{in: "10.0.0.0/8, fd00::/8", wantErr: " fd00::/8"},
		{in: "10.0.0.0/8,,fd00::/8", wantErr: "empty item 2"},
		{in: "banana", wantErr: "banana"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseCIDRs(tc.in)
			checkParse(t, got, tc.want, err, tc.wantErr)
		})
	}
}

func checkParse[T comparable](t *testing.T, got, want []T, err error, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("error = %v, want one containing %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("error = %v", err)
	}
	if diff := cmp.Diff(got, want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}
