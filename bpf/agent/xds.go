package agent

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/xdsclient"
)

// NodeKind is the node agent's kind in its xDS node ID:
// node~<site>~<node name>. The controller serves it the same table as
// every other client; the agent reads only the services' VIPs and ports.
const NodeKind = model.KindNode

// newXDSClient returns a client that follows the controller and keeps the
// services map equal to the VIP:port of every service it serves. With
// --credentials-dir it proves that it belongs to the site with the member
// token there (mutual TLS, as a sidecar does). While the
// controller is away the map keeps its last content (the client applies
// nothing then), as it does while no agent runs.
func (d *daemon) newXDSClient(reg prometheus.Registerer) (*xdsclient.Client, error) {
	o := xdsclient.Options{
		Addr:  d.o.Controller,
		Node:  model.Node{Kind: NodeKind, Site: d.o.Site, Name: d.o.NodeName},
		Log:   d.log.WithName("xds"),
		Apply: d.applyServices,
	}
	if d.o.CredentialsDir != "" {
		o.TLS = xdsclient.TokenTLS(filepath.Join(d.o.CredentialsDir, "token.yaml"), d.o.Site)
	} else {
		d.log.Info("no --credentials-dir: dialing the controller in plaintext, which only its loopback plaintext listener accepts", "controller", d.o.Controller)
	}
	c, err := xdsclient.New(o)
	if err != nil {
		return nil, err
	}
	reg.MustRegister(c.Collectors("node agent")...)
	return c, nil
}

// applyServices writes the services' VIP:port set to the services map. An
// error NACKs the update; the map then keeps what it had. The first table
// applied arms the site's self-check: from then on a sidecar that verifies
// its redirection is redirected for this site's services.
func (d *daemon) applyServices(_ context.Context, services []model.Service) error {
	addrs, skipped := serviceAddrs(services)
	d.svcMu.Lock()
	defer d.svcMu.Unlock()
	if err := d.r.SetServices(addrs); err != nil {
		return fmt.Errorf("services map: %w", err)
	}
	if err := d.armProbe(); err != nil {
		d.log.Error(err, "arm the self-check; the next update tries again")
	}
	d.m.services.Set(float64(len(addrs)))
	if !slices.Equal(skipped, d.skipped) && len(skipped) > 0 {
		d.log.Info("VIPs skipped: not addresses the programs redirect", "vips", skipped)
	}
	d.skipped = skipped
	if !slices.Equal(addrs, d.services) {
		d.log.Info("services map updated", "services", len(services), "addresses", len(addrs))
		d.services = addrs
	}
	return nil
}

// serviceAddrs returns each service's VIPs at its port, sorted and without
// duplicates, and the VIPs that cannot be redirected ("vip:port": not an
// IP address, loopback, unspecified, with a zone, or a port out of range),
// which the sidecar would never match either.
func serviceAddrs(services []model.Service) (addrs []netip.AddrPort, skipped []string) {
	for _, s := range services {
		for _, v := range s.VIPs {
			a, err := netip.ParseAddr(v)
			ok := err == nil && s.Port > 0 && s.Port <= 65535
			if ok {
				a = a.Unmap()
				ok = a.Zone() == "" && !a.IsLoopback() && !a.IsUnspecified()
			}
			if !ok {
				skipped = append(skipped, v+":"+fmt.Sprint(s.Port))
				continue
			}
			addrs = append(addrs, netip.AddrPortFrom(a, uint16(s.Port)))
		}
	}
	slices.SortFunc(addrs, func(a, b netip.AddrPort) int { return a.Compare(b) })
	slices.Sort(skipped)
	return slices.Compact(addrs), slices.Compact(skipped)
}

// armProbe arms the site's self-check (bpf.Redirector.ArmProbe), once.
func (d *daemon) armProbe() error {
	if d.armed.Load() {
		return nil
	}
	if err := d.r.ArmProbe(); err != nil {
		return err
	}
	d.armed.Store(true)
	d.log.Info("self-check armed: the site's sidecars verify their redirection", "probe", contract.RedirectProbeSiteAddr(d.o.Site).String())
	return nil
}
