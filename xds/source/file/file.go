// Package file is the controller's site-file source: the listeners,
// connectors and routing of a Linux site's file (docs/site-file.md) become
// the site's local services.
package file

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
)

// Services returns the local services of a site file. Each address named
// by a listener or a connector is one service, with the network name as
// written in the file:
//   - its port is the listener's port (what local clients dial), else the
//     first connector's;
//   - a listener is the gateway's entry point (Gateway) and, when its host
//     is an IP, the virtual IP sidecars match;
//   - connectors are its ready local endpoints (host names are resolved);
//   - an address routed multicast has the multicast mode and deadline its
//     entries name (sitefile.Site.MulticastFor; the zero value, the
//     defaults, when they name none).
func Services(site *sitefile.Site) ([]model.Service, error) {
	byName := map[string]*model.Service{}
	var order []string
	get := func(address string, port int) *model.Service {
		s, ok := byName[address]
		if !ok {
			// sitefile refused the patterns model.CheckRouting refuses
			// for the address's protocol, so every service here can be
			// served.
			s = &model.Service{Address: address, Port: port, Protocol: site.ProtocolFor(address), Routing: site.RoutingFor(address),
				Multicast: site.MulticastFor(address), Network: address}
			if host, sport, err := net.SplitHostPort(address); err == nil {
				if n, err := strconv.Atoi(sport); err == nil && host != "" {
					// A name of the form address:port keeps its parts, so
					// that it matches a Kubernetes site's service.
					s.Address, s.Port = host, n
				}
			}
			byName[address] = s
			order = append(order, address)
		}
		return s
	}
	for _, l := range site.Listeners {
		s := get(l.Address, l.Port)
		if s.Gateway != "" {
			return nil, fmt.Errorf("%s:%d: address %q has two listeners; the controller serves one entry point per address", site.Path, l.Line, l.Address)
		}
		s.Gateway = net.JoinHostPort(l.Host, strconv.Itoa(l.Port))
		if ip, err := netip.ParseAddr(l.Host); err == nil && !ip.IsUnspecified() {
			s.VIPs = append(s.VIPs, ip.String())
		}
	}
	for _, c := range site.Connectors {
		s := get(c.Address, c.Port)
		ips, err := resolve(c.Host)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: connector %s: %w", site.Path, c.Line, c.Address, err)
		}
		for _, ip := range ips {
			s.Endpoints = append(s.Endpoints, model.Endpoint{IP: ip, Port: c.Port, Ready: true, Name: net.JoinHostPort(c.Host, strconv.Itoa(c.Port))})
		}
	}
	out := make([]model.Service, 0, len(order))
	for _, a := range order {
		out = append(out, *byName[a])
	}
	return out, nil
}

func resolve(host string) ([]string, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []string{ip.String()}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w", host, err)
	}
	return addrs[:1], nil
}

// Watch calls update with the services of the site file at path whenever
// the file changes (checked every second), until ctx ends. A file that no
// longer loads, or whose services are invalid, is reported and the last
// good services stay.
func Watch(ctx context.Context, path string, log logr.Logger, update func([]model.Service)) {
	sitefile.Watch(ctx, path, sitefile.WatchOptions{}, log, func(site *sitefile.Site, _ time.Time) {
		svcs, err := Services(site)
		if err != nil {
			log.Error(err, "site file changed but its services are invalid; keeping the last services", "siteFile", path)
			return
		}
		update(svcs)
	})
}
