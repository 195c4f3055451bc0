package bpf

import (
	"net/netip"
	"testing"
)

func TestServiceKeyRoundTrip(t *testing.T) {
	for _, s := range []string{"10.96.0.10:80", "[fd00::10]:8080", "[::ffff:10.0.0.1]:443", "255.255.255.255:65535"} {
		ap := netip.MustParseAddrPort(s)
		got := serviceOf(serviceKey(ap))
		want := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if got != want {
			t.Errorf("%s: round trip gave %s, want %s", s, got, want)
		}
	}
	// IPv4 and its mapped form are one service: connect4 and a dual-stack
	// connect6 look up the same key.
	if serviceKey(netip.MustParseAddrPort("10.0.0.1:80")) != serviceKey(netip.MustParseAddrPort("[::ffff:10.0.0.1]:80")) {
		t.Error("IPv4 and IPv4-mapped keys differ")
	}
}

func TestIPWordsAreNetworkOrder(t *testing.T) {
	// The programs compare words with bpf_htonl constants; the bytes in
	// memory must be the address in network order.
	w := ipWords(netip.MustParseAddr("10.1.2.3"))
	var b [16]byte
	for i := range w {
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(w[i]), byte(w[i]>>8), byte(w[i]>>16), byte(w[i]>>24)
	}
	want := [16]byte{10: 0xff, 11: 0xff, 12: 10, 13: 1, 14: 2, 15: 3}
	if b != want {
		t.Errorf("words of 10.1.2.3 in memory: % x, want % x", b, want)
	}
}

func TestCIDRKey(t *testing.T) {
	for _, c := range []struct {
		prefix string
		bits   uint32
	}{
		{"10.0.0.0/8", 64 + 96 + 8},
		{"10.1.2.3/32", 64 + 128},
		{"0.0.0.0/0", 64 + 96},
		{"fd00::/8", 64 + 8},
		{"::/0", 64},
		{"10.1.2.3/8", 64 + 96 + 8}, // masked
	} {
		p := netip.MustParsePrefix(c.prefix)
		k := cidrKey(0x1122334455667788, p)
		if k.Prefixlen != c.bits {
			t.Errorf("%s: prefixlen %d, want %d", c.prefix, k.Prefixlen, c.bits)
		}
		id, back := prefixOf(k)
		if id != 0x1122334455667788 || back != p.Masked() {
			t.Errorf("%s: decoded %x %s", c.prefix, id, back)
		}
	}
}

func TestCheckService(t *testing.T) {
	for s, ok := range map[string]bool{
		"10.96.0.10:80":        true,
		"[fd00::1]:80":         true,
		"127.0.0.1:80":         false,
		"127.1.2.3:80":         false,
		"[::1]:80":             false,
		"[::ffff:127.0.0.1]:1": false,
		"0.0.0.0:80":           false,
		"[::]:80":              false,
		"10.0.0.1:0":           false,
		"[fe80::1%eth0]:80":    false,
	} {
		if err := checkService(netip.MustParseAddrPort(s)); (err == nil) != ok {
			t.Errorf("checkService(%s) = %v, want ok=%v", s, err, ok)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, false},
		{"a site", Config{Site: "east"}, true},
		{"a pin dir", Config{PinDir: "/sys/fs/bpf/x"}, true},
		{"a bad site", Config{Site: "../east"}, false},
		{"a bad site with a pin dir", Config{Site: "East", PinDir: "/sys/fs/bpf/x"}, false},
		{"relative pin dir", Config{PinDir: "skiff"}, false},
		{"IPv6 as IPv4", Config{Site: "east", SidecarIPv4: netip.MustParseAddr("::1")}, false},
		{"mapped as IPv6", Config{Site: "east", SidecarIPv6: netip.MustParseAddr("::ffff:127.0.0.1")}, false},
		{"huge map", Config{Site: "east", MaxServices: 1 << 30}, false},
		{"explicit", Config{Site: "east", PinDir: "/sys/fs/bpf/x", SidecarIPv4: netip.MustParseAddr("127.0.0.2"), SidecarIPv6: netip.MustParseAddr("::1"), SidecarPort: 15006}, true},
	} {
		c.cfg.setDefaults()
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", c.name, err, c.ok)
		}
	}
	c := Config{Site: "east"}
	c.setDefaults()
	if c.PinDir != "/sys/fs/bpf/skiff/sites/east" || c.SidecarPort != 15001 || c.ExcludeUID != 1337 || c.SidecarIPv4.String() != "127.0.0.1" || c.SidecarIPv6.String() != "::1" {
		t.Errorf("defaults: %+v", c)
	}
	if _, err := SitePinDir(DefaultBPFFS, "a/../../b"); err == nil {
		t.Error("SitePinDir accepted a path as a site name")
	}
}

func TestExclusionsValidate(t *testing.T) {
	if err := (Exclusions{Ports: []uint16{0}}).Validate(); err == nil {
		t.Error("port 0 accepted")
	}
	if err := (Exclusions{CIDRs: []netip.Prefix{{}}}).Validate(); err == nil {
		t.Error("invalid prefix accepted")
	}
	if err := (Exclusions{Ports: []uint16{80}, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}).Validate(); err != nil {
		t.Error(err)
	}
}
