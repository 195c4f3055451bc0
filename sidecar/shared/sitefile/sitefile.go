package sitefile

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/names"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/policy"
)

// Site is a parsed and validated site file. Paths are absolute and
// defaults are filled in.
type Site struct {
	Path string // absolute path of the file
	// Modified is the file's modification time as Load found it before
	// reading it (zero from Parse): a watcher that starts later compares
	// with it, so that a change made meanwhile is not taken for the
	// running configuration.
	Modified time.Time
	Name     string
	DataDir  string // absolute; default "<name>-data" beside the file
	// CADir holds the site CA (ca.crt, ca.key); absolute; default
	// DataDir. In Kubernetes it is the controller's Secret, mounted
	// read-only.
	CADir string
	// StateSecret, in Kubernetes, is the Secret of the pod's namespace
	// that holds the token ledger and the link certificates (package
	// state); "" keeps them in DataDir.
	StateSecret string
	// Siblings are where the site's other gateways may be found
	// (host:port, each resolved to every address it has): a gateway links
	// to each of its siblings.
	Siblings   []string
	LinkAccess *LinkAccess // nil on a site that only dials out
	Links      []Link
	Listeners  []Listener
	Connectors []Connector
	// Routing maps an address to its pattern, by name (model.Pattern):
	// the ones model.CheckRouting accepts for the address's protocol, as
	// model.ParsePattern returns them; nil when the file has none.
	Routing map[string]string
	// Protocols maps an address to the protocol its listeners and
	// connectors name (model.ParseProtocol); an address none names is
	// TCP. nil when the file names none.
	Protocols map[string]model.Protocol
	// Multicast maps an address routed multicast to the mode and deadline
	// its listeners and connectors name (multicast, multicastTimeout;
	// model.ParseMulticast), the defaults filled in for the one they leave
	// out. An address none names is not in it (the defaults); nil when
	// the file names none.
	Multicast map[string]model.MulticastSpec
}

// LinkAccess is where the site accepts links from other sites.
type LinkAccess struct {
	Bind      string // host:port to listen on; the host may be empty (all interfaces)
	Advertise string // host:port other sites dial; goes into tokens; default Bind
}

// Link is a token issued by another site, which this site dials.
type Link struct {
	Token string // absolute path of the token file
	Cost  int    // >= 1; default 1
	// Policy is the link's allow lists (allow.advertise, allow.reach):
	// the addresses the peer may advertise into this site and those of
	// this site it may reach. The zero Policy, without allow, allows all.
	Policy policy.Policy
	Line   int // line of the entry in the site file
}

// Listener is a local entry point for a network address.
type Listener struct {
	Address string
	Host    string
	Port    int
	// Protocol is the one the entry names, "" if none (Site.Protocols
	// has the address's).
	Protocol model.Protocol
	// Multicast and MulticastTimeout are the multicast mode and deadline
	// the entry names, "" and 0 if none (Site.Multicast has the
	// address's).
	Multicast        model.MulticastMode
	MulticastTimeout time.Duration
	// AccessLog makes the gateway log every HTTP request of the
	// connections this listener accepts (field accessLog; default
	// false). Only requests of an HTTP address (one routed per request)
	// are logged.
	AccessLog bool
	Line      int
}

// Connector is a local target for a network address.
type Connector struct {
	Address string
	Host    string
	Port    int
	// Protocol is the one the entry names, "" if none (Site.Protocols
	// has the address's).
	Protocol model.Protocol
	// Multicast and MulticastTimeout are the multicast mode and deadline
	// the entry names, "" and 0 if none (Site.Multicast has the
	// address's).
	Multicast        model.MulticastMode
	MulticastTimeout time.Duration
	Line             int
}

// RoutingFor returns the routing pattern of an address: the one the file
// names, else balanced.
func (s *Site) RoutingFor(address string) model.Pattern {
	if p, ok := s.Routing[address]; ok {
		return model.Pattern(p)
	}
	return model.Balanced
}

// ProtocolFor returns the protocol of an address: the one its listeners
// and connectors name, else TCP.
func (s *Site) ProtocolFor(address string) model.Protocol {
	if p, ok := s.Protocols[address]; ok {
		return p
	}
	return model.TCP
}

// MulticastFor returns how an address routed multicast answers: the mode
// and deadline its listeners and connectors name, the zero value (the
// defaults) when they name none.
func (s *Site) MulticastFor(address string) model.MulticastSpec {
	return s.Multicast[address]
}

// Load reads and parses the site file at path.
func Load(path string) (*Site, error) {
	modified := ModTime(path)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read site file: %w", err)
	}
	s, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	s.Modified = modified
	return s, nil
}

// Parse parses and validates a site file's contents. path locates the file
// (relative paths inside it are resolved against its directory) and names
// it in errors. Every problem found is returned: one [*Error], or an
// [errors.Join] of several in line order.
func Parse(path string, data []byte) (*Site, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("site file %s: %w", path, err)
	}
	p := &parser{file: path}
	s := &Site{Path: abs}
	root := p.document(data)
	if root != nil || len(p.errs) == 0 {
		p.site(root, s)
	}
	switch len(p.errs) {
	case 0:
		return s, nil
	case 1:
		return nil, p.errs[0]
	}
	slices.SortStableFunc(p.errs, func(a, b *Error) int { return a.Line - b.Line })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e
	}
	return nil, errors.Join(errs...)
}

// site reads the top-level mapping; root is nil for an empty file.
func (p *parser) site(root *yaml.Node, s *Site) {
	dir := filepath.Dir(s.Path)
	f := map[string]entry{}
	line := 1
	if root != nil {
		line = root.Line
		f = p.fields(root, "", "name", "dataDir", "caDir", "stateSecret", "siblings", "linkAccess", "links", "listeners", "connectors", "routing")
	}
	p.name(f, root, line, s)
	p.dirs(f, dir, s)
	if e, ok := f["stateSecret"]; ok && !isNull(e.value) {
		if v, ok := p.str(e.value, "stateSecret"); ok {
			if !names.IsSubdomain(v) {
				p.errorf(e.value.Line, "stateSecret", "must be a Secret name (a DNS-1123 subdomain), got %q", v)
			}
			s.StateSecret = v
		}
	}
	if e, ok := f["siblings"]; ok && !isNull(e.value) {
		s.Siblings = p.siblings(e.value)
	}
	if e, ok := f["linkAccess"]; ok && !isNull(e.value) {
		s.LinkAccess = p.linkAccess(e.value)
	}
	if e, ok := f["siblings"]; ok && len(s.Siblings) > 0 && s.LinkAccess == nil {
		p.errorf(e.line, "siblings", "needs linkAccess: the gateways of a site link to each other on their link ports")
	}
	if e, ok := f["links"]; ok && !isNull(e.value) {
		s.Links = p.links(e.value, dir)
	}
	if e, ok := f["listeners"]; ok && !isNull(e.value) {
		s.Listeners = p.listeners(e.value)
	}
	if e, ok := f["connectors"]; ok && !isNull(e.value) {
		s.Connectors = p.connectors(e.value)
	}
	s.Protocols = p.protocols(s)
	var refused map[string]bool
	if e, ok := f["routing"]; ok && !isNull(e.value) {
		s.Routing, refused = p.routing(e.value, s)
	}
	s.Multicast = p.multicast(s, refused)
}

// name reads the site's required name; line is where the mapping starts.
func (p *parser) name(f map[string]entry, root *yaml.Node, line int, s *Site) {
	if e, ok := f["name"]; ok && !isNull(e.value) {
		if name, ok := p.str(e.value, "name"); ok {
			if msg := checkLabel(name); msg != "" {
				p.errorf(e.value.Line, "name", "%s", msg)
			}
			s.Name = name
		}
	} else if root == nil || root.Kind == yaml.MappingNode {
		p.errorf(line, "name", "required: the site's name, unique in the network")
	}
}

// dirs reads dataDir (default <name>-data) and caDir (default dataDir),
// both relative to the site file's directory dir.
func (p *parser) dirs(f map[string]entry, dir string, s *Site) {
	s.DataDir = s.Name + "-data"
	if e, ok := f["dataDir"]; ok && !isNull(e.value) {
		if d, ok := p.str(e.value, "dataDir"); ok {
			if d == "" {
				p.errorf(e.value.Line, "dataDir", "must not be empty; leave it out for the default %q", s.DataDir)
			}
			s.DataDir = d
		}
	}
	s.DataDir = resolvePath(dir, s.DataDir)
	s.CADir = s.DataDir
	if e, ok := f["caDir"]; ok && !isNull(e.value) {
		if d, ok := p.str(e.value, "caDir"); ok {
			if d == "" {
				p.errorf(e.value.Line, "caDir", "must not be empty; leave it out to keep the CA in dataDir")
			}
			s.CADir = resolvePath(dir, d)
		}
	}
}

// siblings reads the host:port link addresses of the site's other
// gateways.
func (p *parser) siblings(n *yaml.Node) []string {
	var out []string
	for i, item := range p.items(n, "siblings") {
		v, ok := p.str(item, index("siblings", i))
		if !ok {
			continue
		}
		if msg := checkHostPort(v, false); msg != "" {
			p.errorf(item.Line, index("siblings", i), "%s", msg)
			continue
		}
		out = append(out, v)
	}
	return out
}

func (p *parser) linkAccess(n *yaml.Node) *LinkAccess {
	f := p.fields(n, "linkAccess", "bind", "advertise")
	if resolve(n).Kind != yaml.MappingNode {
		return nil
	}
	la := &LinkAccess{}
	bind, ok := f["bind"]
	if !ok {
		p.errorf(n.Line, "linkAccess.bind", "required: the host:port to accept links on, e.g. 0.0.0.0:%d", contract.LinkPort)
	} else if v, ok := p.str(bind.value, "linkAccess.bind"); ok {
		if msg := checkHostPort(v, true); msg != "" {
			p.errorf(bind.value.Line, "linkAccess.bind", "%s", msg)
		}
		la.Bind = v
	}
	if adv, ok := f["advertise"]; ok {
		if v, ok := p.str(adv.value, "linkAccess.advertise"); ok {
			if msg := checkHostPort(v, false); msg != "" {
				p.errorf(adv.value.Line, "linkAccess.advertise", "%s", msg)
			}
			la.Advertise = v
		}
	} else if la.Bind != "" {
		la.Advertise = la.Bind
		if checkHostPort(la.Bind, true) == "" && checkHostPort(la.Bind, false) != "" {
			p.errorf(bind.value.Line, "linkAccess.advertise", "required when bind (%s) names no host other sites can dial; set advertise to this site's reachable host:port", la.Bind)
		}
	}
	return la
}

func (p *parser) links(n *yaml.Node, dir string) []Link {
	var out []Link
	seen := map[string]int{} // token path -> index
	for i, item := range p.items(n, "links") {
		field := index("links", i)
		if item.Kind == yaml.ScalarNode && item.ShortTag() == "!!str" {
			p.errorf(item.Line, field, "must be a mapping such as {token: %s}, got %s", item.Value, kindOf(item))
			continue
		}
		f := p.fields(item, field, "token", "cost", "allow")
		if item.Kind != yaml.MappingNode {
			continue
		}
		l := Link{Cost: 1, Line: item.Line}
		if e, has := f["token"]; !has {
			p.errorf(item.Line, field+".token", "required: the path of a token file issued by another site")
		} else if v, good := p.str(e.value, field+".token"); good && v == "" {
			p.errorf(e.value.Line, field+".token", "must not be empty")
		} else if good {
			l.Token = resolvePath(dir, v)
			if j, dup := seen[l.Token]; dup {
				p.errorf(e.value.Line, field+".token", "duplicate of links[%d] (line %d): both dial %s", j, out[j].Line, v)
			} else {
				seen[l.Token] = len(out)
			}
		}
		if e, has := f["cost"]; has {
			if v, good := p.integer(e.value, field+".cost"); good {
				switch {
				case v < 1:
					p.errorf(e.value.Line, field+".cost", "must be >= 1, got %d", v)
				case v > netview.MaxCost:
					p.errorf(e.value.Line, field+".cost", "must be <= %d, got %d", netview.MaxCost, v)
				}
				l.Cost = v
			}
		}
		if e, has := f["allow"]; has && !isNull(e.value) {
			l.Policy = p.allow(e.value, field+".allow")
		}
		out = append(out, l)
	}
	return out
}

// allow reads a link's policy: the allow lists advertise and reach, each
// a list of address patterns. An empty list is refused: it would read as
// "nothing" but mean "every address".
func (p *parser) allow(n *yaml.Node, field string) policy.Policy {
	var pol policy.Policy
	for _, e := range p.entries(n, field, "advertise", "reach") {
		list := p.patterns(e, join(field, e.key))
		if e.key == "advertise" {
			pol.Advertise = list
		} else {
			pol.Reach = list
		}
	}
	return pol
}

// patterns reads one allow list.
func (p *parser) patterns(e entry, field string) []string {
	if isNull(e.value) || (e.value.Kind == yaml.SequenceNode && len(e.value.Content) == 0) {
		p.errorf(e.line, field, "must list at least one address pattern; leave %s out to allow every address", e.key)
		return nil
	}
	var out []string
	for i, item := range p.items(e.value, field) {
		v, ok := p.str(item, index(field, i))
		if !ok {
			continue
		}
		if err := policy.CheckPattern(v); err != nil {
			p.errorf(item.Line, index(field, i), "%v", err)
			continue
		}
		out = append(out, v)
	}
	return out
}

// endpoint is the common shape of listeners and connectors.
type endpoint struct {
	address, host string
	port          int
	protocol      model.Protocol // "" if the entry names none
	// multicast and multicastTimeout are "" and 0 if the entry names
	// none.
	multicast        model.MulticastMode
	multicastTimeout time.Duration
	accessLog        bool // listeners only
	line             int
	ok               bool // every field present and valid
}

// endpoint reads a listener (listener true: it may have accessLog) or a
// connector.
func (p *parser) endpoint(item *yaml.Node, field, hostWhat string, listener bool) endpoint {
	known := []string{"address", "host", "port", "protocol", "multicast", "multicastTimeout"}
	if listener {
		known = append(known, "accessLog")
	}
	f := p.fields(item, field, known...)
	ep := endpoint{line: item.Line, ok: item.Kind == yaml.MappingNode}
	if !ep.ok {
		return ep
	}
	var good bool
	ep.address, good = p.requiredString(f, item, field+".address", "the network address, e.g. backend", checkAddress)
	ep.ok = ep.ok && good
	ep.host, good = p.requiredString(f, item, field+".host", hostWhat, checkHost)
	ep.ok = ep.ok && good
	if e, has := f["port"]; !has {
		p.errorf(item.Line, field+".port", "required: a port between 1 and 65535")
		ep.ok = false
	} else if v, good := p.integer(e.value, field+".port"); !good {
		ep.ok = false
	} else {
		if v < 1 || v > 65535 {
			p.errorf(e.value.Line, field+".port", "must be between 1 and 65535, got %d", v)
			ep.ok = false
		}
		ep.port = v
	}
	if e, has := f["protocol"]; has && !isNull(e.value) {
		if v, good := p.str(e.value, field+".protocol"); good {
			proto, err := model.ParseProtocol(v)
			if err != nil {
				p.errorf(e.value.Line, field+".protocol", "%v", err)
			}
			ep.protocol = proto
		}
	}
	if e, has := f["multicast"]; has && !isNull(e.value) {
		if v, good := p.str(e.value, field+".multicast"); good {
			if m, err := model.ParseMulticast(v, ""); err != nil {
				p.errorf(e.value.Line, field+".multicast", "%v", err)
			} else {
				ep.multicast = m.Mode
			}
		}
	}
	if e, has := f["multicastTimeout"]; has && !isNull(e.value) {
		if v, good := p.str(e.value, field+".multicastTimeout"); good {
			if m, err := model.ParseMulticast("", v); err != nil {
				p.errorf(e.value.Line, field+".multicastTimeout", "%v", err)
			} else {
				ep.multicastTimeout = m.Timeout
			}
		}
	}
	if e, has := f["accessLog"]; has && !isNull(e.value) {
		ep.accessLog, _ = p.boolean(e.value, field+".accessLog")
	}
	return ep
}

// requiredString reads the string field key (the last element of name)
// from f, reporting it missing with what it should hold, or failing check.
func (p *parser) requiredString(f map[string]entry, item *yaml.Node, name, what string, check func(string) string) (string, bool) {
	key := name[strings.LastIndexByte(name, '.')+1:]
	e, has := f[key]
	if !has {
		p.errorf(item.Line, name, "required: %s", what)
		return "", false
	}
	v, good := p.str(e.value, name)
	if !good {
		return "", false
	}
	if msg := check(v); msg != "" {
		p.errorf(e.value.Line, name, "%s", msg)
		return v, false
	}
	return v, true
}

func (p *parser) listeners(n *yaml.Node) []Listener {
	var out []Listener
	seen := map[string]int{} // host:port -> index
	for i, item := range p.items(n, "listeners") {
		field := index("listeners", i)
		ep := p.endpoint(item, field, "the local IP or host name to listen on", true)
		if item.Kind != yaml.MappingNode {
			continue
		}
		if ep.ok {
			key := hostPort(ep.host, ep.port)
			if j, dup := seen[key]; dup {
				p.errorf(ep.line, field, "duplicate of listeners[%d] (line %d): both listen on %s", j, out[j].Line, key)
			} else {
				seen[key] = len(out)
			}
		}
		out = append(out, Listener{Address: ep.address, Host: ep.host, Port: ep.port, Protocol: ep.protocol,
			Multicast: ep.multicast, MulticastTimeout: ep.multicastTimeout, AccessLog: ep.accessLog, Line: ep.line})
	}
	return out
}

func (p *parser) connectors(n *yaml.Node) []Connector {
	var out []Connector
	seen := map[string]int{} // address host:port -> index
	for i, item := range p.items(n, "connectors") {
		field := index("connectors", i)
		ep := p.endpoint(item, field, "the IP or host name of the local target", false)
		if item.Kind != yaml.MappingNode {
			continue
		}
		if ep.ok {
			key := ep.address + " " + hostPort(ep.host, ep.port)
			if j, dup := seen[key]; dup {
				p.errorf(ep.line, field, "duplicate of connectors[%d] (line %d): both connect %s to %s", j, out[j].Line, ep.address, hostPort(ep.host, ep.port))
			} else {
				seen[key] = len(out)
			}
		}
		out = append(out, Connector{Address: ep.address, Host: ep.host, Port: ep.port, Protocol: ep.protocol,
			Multicast: ep.multicast, MulticastTimeout: ep.multicastTimeout, Line: ep.line})
	}
	return out
}

// protocols returns the protocol of every address whose listeners or
// connectors name one; entries of one address that name two protocols
// are an error.
func (p *parser) protocols(s *Site) map[string]model.Protocol {
	type named struct {
		protocol model.Protocol
		field    string
		line     int
	}
	first := map[string]named{}
	check := func(address string, proto model.Protocol, field string, line int) {
		if proto == "" {
			return
		}
		if was, ok := first[address]; ok {
			if was.protocol != proto {
				p.errorf(line, field+".protocol", "address %s is %s here and %s in %s (line %d): one address, one protocol", address, proto, was.protocol, was.field, was.line)
			}
			return
		}
		first[address] = named{proto, field, line}
	}
	for i, l := range s.Listeners {
		check(l.Address, l.Protocol, index("listeners", i), l.Line)
	}
	for i, c := range s.Connectors {
		check(c.Address, c.Protocol, index("connectors", i), c.Line)
	}
	if len(first) == 0 {
		return nil
	}
	out := make(map[string]model.Protocol, len(first))
	for a, n := range first {
		out[a] = n.protocol
	}
	return out
}

// routing reads the routing patterns, each checked against the protocol
// of its address (s.Protocols, read before). It returns them and the
// addresses whose pattern it refused.
func (p *parser) routing(n *yaml.Node, s *Site) (map[string]string, map[string]bool) {
	out := map[string]string{}
	refused := map[string]bool{}
	for _, e := range p.entries(n, "routing") {
		field := "routing." + e.key
		if msg := checkAddress(e.key); msg != "" {
			p.errorf(e.line, field, "%s", msg)
			continue
		}
		v, ok := p.str(e.value, field)
		if !ok {
			refused[e.key] = true
			continue
		}
		pattern, err := model.ParsePattern(v)
		if err == nil {
			err = model.CheckRouting(s.ProtocolFor(e.key), pattern)
		}
		if err != nil {
			p.errorf(e.value.Line, field, "%v", err)
			refused[e.key] = true
			continue
		}
		out[e.key] = string(pattern)
	}
	return out, refused
}

// multicast returns the multicast mode and deadline of every address
// routed multicast whose listeners or connectors name one (s.Routing,
// read before). Entries of one address that name two modes, or two
// deadlines, are an error, and so is either named for an address routed
// otherwise (refused holds the addresses whose routing was refused: their
// error is that one).
func (p *parser) multicast(s *Site, refused map[string]bool) map[string]model.MulticastSpec {
	type named struct {
		value string              // as messages write it
		spec  model.MulticastSpec // the mode or the deadline
		field string
		line  int
	}
	modes, timeouts := map[string]named{}, map[string]named{}
	// check records n, the entry's key (what it names), for address.
	check := func(first map[string]named, address string, n named, key, what string) {
		if r := s.RoutingFor(address); r != model.Multicast {
			if !refused[address] {
				p.errorf(n.line, n.field+"."+key, "multicast applies to routing multicast; address %s is routed %s: set routing.%s to multicast, or leave %s out", address, r, address, key)
			}
			return
		}
		if was, ok := first[address]; ok {
			if was.value != n.value {
				p.errorf(n.line, n.field+"."+key, "address %s has %s %s here and %s in %s (line %d): one address, one %s", address, key, n.value, was.value, was.field, was.line, what)
			}
			return
		}
		first[address] = n
	}
	entry := func(address string, mode model.MulticastMode, timeout time.Duration, field string, line int) {
		if mode != "" {
			check(modes, address, named{string(mode), model.MulticastSpec{Mode: mode}, field, line}, "multicast", "multicast mode")
		}
		if timeout > 0 {
			check(timeouts, address, named{timeout.String(), model.MulticastSpec{Timeout: timeout}, field, line}, "multicastTimeout", "multicast timeout")
		}
	}
	for i, l := range s.Listeners {
		entry(l.Address, l.Multicast, l.MulticastTimeout, index("listeners", i), l.Line)
	}
	for i, c := range s.Connectors {
		entry(c.Address, c.Multicast, c.MulticastTimeout, index("connectors", i), c.Line)
	}
	if len(modes) == 0 && len(timeouts) == 0 {
		return nil
	}
	out := map[string]model.MulticastSpec{}
	for a, n := range modes {
		out[a] = n.spec
	}
	for a, n := range timeouts {
		m := out[a]
		m.Timeout = n.spec.Timeout
		out[a] = m
	}
	for a, m := range out {
		out[a] = model.MulticastSpec{Mode: m.ModeOrDefault(), Timeout: m.Deadline()}
	}
	return out
}

// resolvePath makes p absolute against dir.
func resolvePath(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

func hostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
