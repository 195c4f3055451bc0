//go:build linux

package redirect

import (
	"errors"
	"fmt"
	"net"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Install replaces the table inet skiff of the current network namespace
// with r's rules, in one netlink batch: the kernel applies all of it or
// nothing, and a second Install with the same rules gives the same ruleset.
func Install(r Rules) error {
	if err := r.Validate(); err != nil {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables netlink connection: %w", err)
	}
	t := dropTable(c)
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{
		Name:     ChainName,
		Table:    t,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookOutput,
		Priority: nftables.ChainPriorityRef(ChainPriority),
	})
	for _, rl := range r.rules() {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: rl.exprs()})
	}
	if err := c.Flush(); err != nil {
		return explain("install table inet "+TableName, err)
	}
	return nil
}

// Remove deletes the table inet skiff of the current network namespace,
// if there is one.
func Remove() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables netlink connection: %w", err)
	}
	dropTable(c)
	if err := c.Flush(); err != nil {
		return explain("remove table inet "+TableName, err)
	}
	return nil
}

// dropTable queues, in c's batch, the deletion of table skiff: an add (a
// no-op if the table exists) and then the delete, which thus never fails.
// The batch is one transaction: when Install then builds the table afresh,
// no packet sees it missing or half built.
func dropTable(c *nftables.Conn) *nftables.Table {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	c.AddTable(t)
	c.DelTable(t)
	return t
}

// explain says which capability or kernel feature an error of the batch
// points to.
func explain(what string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%s: needs CAP_NET_ADMIN in the pod's network namespace: %w", what, err)
	case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%s: %w: needs nf_tables (CONFIG_NF_TABLES): %w", what, ErrNotSupported, err)
	case errors.Is(err, unix.EAFNOSUPPORT):
		return fmt.Errorf("%s: %w: needs the nf_tables inet family (CONFIG_NF_TABLES_INET): %w", what, ErrNotSupported, err)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%s: %w: needs nf_tables NAT chains and redirect (CONFIG_NFT_NAT, CONFIG_NFT_REDIR): %w", what, ErrNotSupported, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// reg is the register every expression uses (NFT_REG_1), as nft does.
const reg = unix.NFT_REG_1

// exprs are the rule's expressions, the ones nft itself generates for the
// rule's listing (`nft --debug=netlink`), so that nft lists the table as
// Rules.String does.
func (rl rule) exprs() []expr.Any {
	var e []expr.Any
	switch rl.kind {
	case redirectProbe:
		e = append(daddr(rl), isTCP()...)
		e = append(e, dport(rl.dport)...)
		return append(e, redirectTo(rl.port)...)
	case matchUID:
		e = []expr.Any{
			&expr.Meta{Key: expr.MetaKeySKUID, Register: reg},
			cmpEq(binaryutil.NativeEndian.PutUint32(rl.uid)),
		}
	case matchOIFName:
		name := make([]byte, unix.IFNAMSIZ)
		copy(name, rl.ifname)
		e = []expr.Any{&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg}, cmpEq(name)}
	case matchDaddr:
		e = daddr(rl)
	case matchDport:
		e = append(isTCP(), dport(rl.dport)...)
	case redirectToTCP:
		return append(isTCP(), redirectTo(rl.port)...)
	default:
		panic(fmt.Sprintf("redirect: unknown rule kind %d", rl.kind))
	}
	return append(e, &expr.Verdict{Kind: expr.VerdictReturn})
}

// daddr matches the family, then as many bytes of the destination as the
// prefix covers, through a mask when it does not end on a byte.
func daddr(rl rule) []expr.Any {
	family, offset := byte(unix.NFPROTO_IPV4), uint32(16) // struct iphdr.daddr
	if rl.prefix.Addr().Is6() {
		family, offset = unix.NFPROTO_IPV6, 24 // struct ipv6hdr.daddr
	}
	e := []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg}, cmpEq([]byte{family})}
	bits, addr := rl.prefix.Bits(), rl.prefix.Addr().AsSlice()
	switch {
	case bits == 0:
		return e
	case bits%8 == 0:
		return append(e,
			&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(bits / 8)},
			cmpEq(addr[:bits/8]))
	}
	n := uint32(len(addr))
	return append(e,
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: n},
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: n, Mask: net.CIDRMask(bits, 8*len(addr)), Xor: make([]byte, n)},
		cmpEq(addr))
}

// dport matches the TCP destination port; isTCP must come first.
func dport(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		cmpEq(binaryutil.BigEndian.PutUint16(port)),
	}
}

// redirectTo redirects to port on the loopback address of the packet's
// family.
func redirectTo(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: reg, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.Redir{RegisterProtoMin: reg, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	}
}

func isTCP() []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}, cmpEq([]byte{unix.IPPROTO_TCP})}
}

func cmpEq(data []byte) *expr.Cmp {
	return &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: data}
}
