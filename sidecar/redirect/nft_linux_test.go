package redirect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/skiff-io/skiff/test/testutil"
)

// TestExprs golden-tests the netlink expressions of each rule, printed as
// `nft --debug=netlink` prints them: the files were checked against nft's
// own encoding of the listing in testdata/NAME.nft (the kernel echoes the
// redirect back with proto_max set to proto_min).
func TestExprs(t *testing.T) {
	for _, tc := range goldenRules {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			for _, rl := range tc.rules.rules() {
				fmt.Fprintf(&b, "inet %s %s\n", TableName, ChainName)
				for _, e := range rl.exprs() {
					fmt.Fprintf(&b, "  [ %s ]\n", debugString(t, e))
				}
				b.WriteString("\n")
			}
			testutil.Golden(t, filepath.Join("testdata", tc.name+".netlink"), b.String(), *update)
		})
	}
}

// debugString prints an expression as libnftnl does.
func debugString(t *testing.T, e expr.Any) string {
	metaKeys := map[expr.MetaKey]string{expr.MetaKeySKUID: "skuid", expr.MetaKeyOIFNAME: "oifname", expr.MetaKeyNFPROTO: "nfproto", expr.MetaKeyL4PROTO: "l4proto"}
	bases := map[expr.PayloadBase]string{expr.PayloadBaseNetworkHeader: "network header", expr.PayloadBaseTransportHeader: "transport header"}
	switch e := e.(type) {
	case *expr.Meta:
		return fmt.Sprintf("meta load %s => reg %d", metaKeys[e.Key], e.Register)
	case *expr.Cmp:
		if e.Op != expr.CmpOpEq {
			t.Fatalf("unexpected cmp op %d", e.Op)
		}
		return fmt.Sprintf("cmp eq reg %d %s", e.Register, words(e.Data))
	case *expr.Payload:
		return fmt.Sprintf("payload load %db @ %s + %d => reg %d", e.Len, bases[e.Base], e.Offset, e.DestRegister)
	case *expr.Bitwise:
		return fmt.Sprintf("bitwise reg %d = ( reg %d & %s ) ^ %s", e.DestRegister, e.SourceRegister, words(e.Mask), words(e.Xor))
	case *expr.Immediate:
		return fmt.Sprintf("immediate reg %d %s", e.Register, words(e.Data))
	case *expr.Verdict:
		if e.Kind != expr.VerdictReturn {
			t.Fatalf("unexpected verdict %d", e.Kind)
		}
		return "immediate reg 0 return"
	case *expr.Redir:
		return fmt.Sprintf("redir proto_min reg %d flags 0x%x", e.RegisterProtoMin, e.Flags)
	}
	t.Fatalf("unexpected expression %T", e)
	return ""
}

// words prints data as 32-bit words in host order, zero-padded.
func words(data []byte) string {
	var w []string
	for i := 0; i < len(data); i += 4 {
		var word [4]byte
		copy(word[:], data[i:])
		w = append(w, fmt.Sprintf("0x%08x", binary.NativeEndian.Uint32(word[:])))
	}
	return strings.Join(w, " ")
}

func TestExplain(t *testing.T) {
	for _, tc := range []struct {
		errno       syscall.Errno
		want        string
		unsupported bool
	}{
		{syscall.EPERM, "install: needs CAP_NET_ADMIN in the pod's network namespace: netlink receive: operation not permitted", false},
		{syscall.EOPNOTSUPP, "install: not supported by this kernel: needs nf_tables (CONFIG_NF_TABLES): conn.Receive: netlink receive: operation not supported", true},
		{syscall.EPROTONOSUPPORT, "needs nf_tables (CONFIG_NF_TABLES)", true},
		{syscall.EAFNOSUPPORT, "needs the nf_tables inet family (CONFIG_NF_TABLES_INET)", true},
		{syscall.ENOENT, "needs nf_tables NAT chains and redirect (CONFIG_NFT_NAT, CONFIG_NFT_REDIR)", true},
		{syscall.ENOBUFS, "install: conn.Receive: netlink receive: no buffer space available", false},
	} {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			// As google/nftables's Flush returns them: a netlink error,
			// joined with those of the other messages, except EPERM.
			var in error = &netlink.OpError{Op: "receive", Err: tc.errno}
			if tc.errno != syscall.EPERM {
				in = fmt.Errorf("conn.Receive: %w", errors.Join(in))
			}
			err := explain("install", in)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("explain() = %q, want it to contain %q", err, tc.want)
			}
			if !errors.Is(err, tc.errno) {
				t.Errorf("explain() = %v does not wrap %v", err, tc.errno)
			}
			if errors.Is(err, ErrNotSupported) != tc.unsupported {
				t.Errorf("errors.Is(%v, ErrNotSupported) = %v, want %v", err, !tc.unsupported, tc.unsupported)
			}
			if tc.errno == syscall.EPERM && !errors.Is(err, os.ErrPermission) {
				t.Errorf("explain() = %v is no os.ErrPermission", err)
			}
		})
	}
}
