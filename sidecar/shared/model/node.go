package model

import (
	"fmt"
	"strings"
)

// NodeKind is the kind of xDS client.
type NodeKind string

// Node kinds.
const (
	KindGateway NodeKind = "gateway"
	KindSidecar NodeKind = "sidecar"
	// KindNode is a node agent, which fills its node's eBPF services map.
	KindNode NodeKind = "node"
	// KindClient is any other xDS client, such as a proxyless gRPC
	// application; its node ID need not follow skiff's format.
	KindClient NodeKind = "client"
)

// Node identifies an xDS client. Its ID has the form
//
//	<kind>~<site>~<name>
//
// for example "sidecar~east~shop/client-7d9f6" (name: namespace/pod) or
// "gateway~east~skiff-gateway-0" or "node~east~worker-1". An ID of any other form is a KindClient
// of the controller's own site named by the whole ID.
type Node struct {
	Kind NodeKind
	Site string
	Name string
}

// ID returns the node ID of n.
func (n Node) ID() string { return string(n.Kind) + "~" + n.Site + "~" + n.Name }

// ParseNodeID parses a node ID; localSite is used for IDs that do not
// follow skiff's format. It fails only for a skiff-format ID with an empty
// site or name.
func ParseNodeID(id, localSite string) (Node, error) {
	parts := strings.SplitN(id, "~", 3)
	if len(parts) == 3 {
		switch k := NodeKind(parts[0]); k {
		case KindGateway, KindSidecar, KindNode:
			if parts[1] == "" || parts[2] == "" {
				return Node{}, fmt.Errorf("node ID %q: want %s~<site>~<name>", id, k)
			}
			return Node{Kind: k, Site: parts[1], Name: parts[2]}, nil
		}
	}
	return Node{Kind: KindClient, Site: localSite, Name: id}, nil
}
