package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/sidecar/router"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
	"github.com/skiff-io/skiff/sidecar/shared/xdsclient"
)

// newXDSClient returns a client that follows the controller at addr over
// mutual TLS (xdsTLS) and applies what it learns to r, with its counters
// registered on reg. With accessLog, a gateway logs the requests of every
// listener the controller gives it (--access-log).
func newXDSClient(addr string, role router.Role, site *sitefile.Site, name string, accessLog bool, r *router.Router, reg prometheus.Registerer, log logr.Logger) (*xdsclient.Client, error) {
	kind := model.KindGateway
	if role == router.RoleSidecar {
		kind = model.KindSidecar
	}
	node := model.Node{Kind: kind, Site: site.Name, Name: name}
	creds, err := xdsTLS(site, role, node.ID())
	if err != nil {
		return nil, err
	}
	var refused string // what Apply last logged; the client calls Apply from one goroutine
	c, err := xdsclient.New(xdsclient.Options{
		Addr: addr,
		Node: node,
		TLS:  creds,
		Log:  log.WithName("xds"),
		Apply: func(ctx context.Context, services []model.Service) error {
			// The rest is served: refusing the update for the services
			// left out would hold back every other one too.
			rs, err := RouterServices(role, services)
			if role == router.RoleGateway && accessLog {
				for i := range rs.Listeners {
					rs.Listeners[i].AccessLog = true
				}
			}
			switch {
			case err == nil:
				refused = ""
			case err.Error() != refused: // once per distinct problem
				refused = err.Error()
				log.Error(err, "services left out: the router cannot serve them")
			}
			return r.SetServices(ctx, rs)
		},
	})
	if err != nil {
		return nil, err
	}
	reg.MustRegister(c.Collectors("router")...)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "skiff_xds_services", Help: "Services in the table the router serves."},
		func() float64 { return float64(c.Stats().Resources) }))
	return c, nil
}

// redirectToController returns the Config.OnRedirect of a router that
// follows a controller: it hands each state of the redirect self-check
// to the xDS client *xc, which reports it to the controller (a sidecar's
// only; a gateway checks no redirect). run sets *xc after router.New and
// before the router runs, and the self-check starts with the router's
// Run, so the client is there for its first report.
func redirectToController(xc **xdsclient.Client) func(model.Redirect) {
	return func(s model.Redirect) { (*xc).SetRedirect(s) }
}

// RouterServices turns the controller's services into what a router of
// the given role serves. A sidecar matches redirected connections on the
// services' virtual IPs; a gateway binds each service's gateway listener.
// Both deliver to the ready local endpoints, and route by the service's
// pattern, per request for HTTP protocols, a multicast service answering
// by its multicast mode and deadline; services are named by their network
// name.
//
// A service whose protocol and pattern model.CheckRouting refuses (a
// controller or a linked site of another version may send one) is left
// out, and the error names it in the validator's words; the rest is
// returned all the same.
func RouterServices(role router.Role, services []model.Service) (router.Services, error) {
	out := router.Services{Routing: map[string]string{}, Protocols: map[string]model.Protocol{}, Multicast: map[string]model.MulticastSpec{}}
	var errs []error
	for _, s := range services {
		name := s.NetworkName()
		if err := model.CheckRouting(s.Protocol, s.Routing); err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", name, err))
			continue
		}
		out.Routing[name] = string(s.Routing)
		// Every protocol, tcp too: the controller's word for the address
		// wins over what other sites' records declare.
		out.Protocols[name] = cmp.Or(s.Protocol, model.TCP)
		if s.Routing == model.Multicast {
			out.Multicast[name] = s.Multicast
		}
		if role == router.RoleSidecar {
			for _, vip := range s.VIPs {
				out.Listeners = append(out.Listeners, router.Listener{Address: name, Host: vip, Port: s.Port})
			}
		} else if bind := cmp.Or(s.GatewayListen, s.Gateway); bind != "" {
			if host, port, err := net.SplitHostPort(bind); err == nil {
				if p, err := strconv.Atoi(port); err == nil {
					out.Listeners = append(out.Listeners, router.Listener{Address: name, Host: host, Port: p})
				}
			}
		}
		for _, e := range s.Endpoints {
			if e.Ready {
				out.Connectors = append(out.Connectors, router.Connector{Address: name, Host: e.IP, Port: e.Port})
			}
		}
	}
	return out, errors.Join(errs...)
}
