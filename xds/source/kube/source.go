package kube

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/xds/federation"
)

// EventRecorder is the part of the events API recorder the source uses.
type EventRecorder interface {
	Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Source reconciles one site's namespace. All changes funnel into one
// reconcile of the whole site, which is cheap: it reads from the cache.
type Source struct {
	Client    client.Client // reads from the manager's cache
	Namespace string
	// GatewayService is the gateway's Service; its selector is what proxy
	// Services select.
	GatewayService string
	// OnLocal receives the site's services after every reconcile.
	OnLocal  func([]model.Service)
	Recorder EventRecorder
	Log      logr.Logger

	viewMu sync.Mutex
	view   *netview.Document
	kick   chan event.GenericEvent

	reported sync.Map // types.UID -> last problem reported for a Service
	// conflicts holds the name conflicts already raised as Events.
	conflicts sync.Map // "site/key" -> struct{}
}

var siteRequest = reconcile.Request{NamespacedName: types.NamespacedName{Name: "site"}}

// SetView hands the source a new view of the network: proxy Services
// follow it.
func (s *Source) SetView(d netview.Document) {
	s.viewMu.Lock()
	s.view = &d
	s.viewMu.Unlock()
	select {
	case s.kick <- event.GenericEvent{}:
	default: // a reconcile is already queued
	}
}

// SetupWithManager registers the source's controller on mgr.
func (s *Source) SetupWithManager(mgr manager.Manager) error {
	s.kick = make(chan event.GenericEvent, 1)
	c, err := controller.New("skiff-site", mgr, controller.Options{
		Reconciler: s, MaxConcurrentReconciles: 1,
		// The controller-runtime metrics are not served; tests run two
		// sites in one process.
		SkipNameValidation: ptr.To(true),
	})
	if err != nil {
		return fmt.Errorf("create site controller: %w", err)
	}
	all := func(context.Context, client.Object) []reconcile.Request { return []reconcile.Request{siteRequest} }
	for _, obj := range []client.Object{&corev1.Service{}, &discoveryv1.EndpointSlice{}} {
		if err := c.Watch(source.Kind(mgr.GetCache(), obj, handler.EnqueueRequestsFromMapFunc(all))); err != nil {
			return fmt.Errorf("watch %T: %w", obj, err)
		}
	}
	if err := c.Watch(source.Channel(s.kick, handler.EnqueueRequestsFromMapFunc(all))); err != nil {
		return fmt.Errorf("watch the network view: %w", err)
	}
	return nil
}

// Reconcile brings the proxy Services in line with the network and hands
// the site's services to OnLocal.
func (s *Source) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	byName, bySvc, err := s.list(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	local, selector := s.exposed(byName, bySvc)
	wanted := s.wantedProxies(byName)
	if selector == nil && len(wanted) > 0 {
		s.Log.Info("gateway Service not found; proxy Services wait for it", "gatewayService", s.GatewayService)
		wanted = nil
	}
	local, err = s.applyProxies(ctx, byName, wanted, selector, local)
	s.OnLocal(local)
	return reconcile.Result{}, err
}

// list reads the namespace's Services, by name, and their endpoint
// slices, by Service name.
func (s *Source) list(ctx context.Context) (map[string]*corev1.Service, map[string][]discoveryv1.EndpointSlice, error) {
	var svcs corev1.ServiceList
	if err := s.Client.List(ctx, &svcs, client.InNamespace(s.Namespace)); err != nil {
		return nil, nil, fmt.Errorf("list services: %w", err)
	}
	var slices_ discoveryv1.EndpointSliceList
	if err := s.Client.List(ctx, &slices_, client.InNamespace(s.Namespace)); err != nil {
		return nil, nil, fmt.Errorf("list endpoint slices: %w", err)
	}
	bySvc := map[string][]discoveryv1.EndpointSlice{}
	for _, es := range slices_.Items {
		if n := es.Labels[discoveryv1.LabelServiceName]; n != "" {
			bySvc[n] = append(bySvc[n], es)
		}
	}
	byName := make(map[string]*corev1.Service, len(svcs.Items))
	for i := range svcs.Items {
		byName[svcs.Items[i].Name] = &svcs.Items[i]
	}
	return byName, bySvc, nil
}

// exposed returns the site's own network services (Services annotated
// for exposure that the data plane can serve; a refused one gets a
// Warning Event) and the gateway Service's selector (nil without it).
func (s *Source) exposed(byName map[string]*corev1.Service, bySvc map[string][]discoveryv1.EndpointSlice) (local []model.Service, selector map[string]string) {
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		svc := byName[name]
		if svc.Name == s.GatewayService {
			selector = svc.Spec.Selector
		}
		if !Exposed(svc) || Owned(svc) {
			s.reported.Delete(svc.UID)
			continue
		}
		got, err := ExposedServices(svc, bySvc[svc.Name])
		if err != nil {
			s.report(svc, "InvalidExposure", err)
			continue
		}
		s.reported.Delete(svc.UID)
		local = append(local, got...)
	}
	return local, selector
}

// wantedProxies returns the proxy Services the site needs: the ports of
// every address that the network serves and this site does not expose
// itself. It also reports the view's name conflicts.
func (s *Source) wantedProxies(byName map[string]*corev1.Service) map[string][]int {
	s.viewMu.Lock()
	view := s.view
	s.viewMu.Unlock()
	if view == nil {
		return nil
	}
	s.reportConflicts(byName[s.GatewayService], view.Conflicts)
	wanted := map[string][]int{} // address -> ports
	for name, targets := range view.Addresses {
		address, port, ok := federation.SplitName(name)
		if !ok || !served(targets) {
			continue
		}
		if cur := byName[address]; cur != nil && !Owned(cur) && Exposed(cur) {
			continue // the site's own Service of that name serves it
		}
		wanted[address] = append(wanted[address], port)
	}
	return wanted
}

// applyProxies creates, updates and deletes the proxy Services so that
// there is one per wanted address, and adds their cluster IPs to local
// (the site's services as the xDS table lists them).
func (s *Source) applyProxies(ctx context.Context, byName map[string]*corev1.Service, wanted map[string][]int, selector map[string]string, local []model.Service) ([]model.Service, error) {
	existing := map[string]int{} // address:port -> target port
	for _, svc := range byName {
		if !Owned(svc) {
			continue
		}
		for _, p := range svc.Spec.Ports {
			existing[svc.Labels[ProxyForLabel]+":"+strconv.Itoa(int(p.Port))] = p.TargetPort.IntValue()
		}
	}
	var keys []string
	for a, ports := range wanted {
		for _, p := range ports {
			keys = append(keys, a+":"+strconv.Itoa(p))
		}
	}
	alloc, err := AllocatePorts(keys, existing)
	if err != nil {
		return local, err
	}
	var errs []error
	for _, address := range slices.Sorted(maps.Keys(wanted)) {
		var ports []ProxyPort
		for _, p := range wanted[address] {
			ports = append(ports, ProxyPort{Port: p, TargetPort: alloc[address+":"+strconv.Itoa(p)]})
		}
		want := ProxyService(s.Namespace, address, ports, selector)
		cur := byName[address]
		switch {
		case cur != nil && !Owned(cur):
			s.report(cur, "ProxyConflict", fmt.Errorf("the network serves %q, but this Service is not skiff's; skiff leaves it alone and creates no proxy for the address", address))
			continue
		case cur == nil:
			if want.OwnerReferences = GatewayOwner(ctx, s.Client, s.Namespace, s.GatewayService); want.OwnerReferences == nil {
				continue // the gateway Service is gone: the site is being uninstalled
			}
			if err := s.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
				errs = append(errs, fmt.Errorf("create proxy service %s: %w", address, err))
				continue
			}
			s.Log.Info("proxy service created", "service", address, "ports", len(ports))
		case !sameProxy(cur, want):
			upd := cur.DeepCopy()
			upd.Labels, upd.Annotations = want.Labels, want.Annotations
			upd.Spec.Selector, upd.Spec.Ports = want.Spec.Selector, want.Spec.Ports
			if err := s.Client.Update(ctx, upd); err != nil {
				errs = append(errs, fmt.Errorf("update proxy service %s: %w", address, err))
				continue
			}
			s.Log.Info("proxy service updated", "service", address, "ports", len(ports))
		}
		if cur != nil && cur.Spec.ClusterIP != "" && cur.Spec.ClusterIP != corev1.ClusterIPNone {
			for _, p := range ports {
				local = mergeProxy(local, proxyEntry(address, p, cur.Spec.ClusterIPs))
			}
		}
	}
	for _, svc := range byName {
		if Owned(svc) && wanted[svc.Labels[ProxyForLabel]] == nil {
			if err := s.Client.Delete(ctx, svc); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete proxy service %s: %w", svc.Name, err))
				continue
			}
			s.Log.Info("proxy service deleted", "service", svc.Name)
		}
	}
	if len(errs) > 0 {
		return local, fmt.Errorf("reconcile proxy services: %v", errs)
	}
	return local, nil
}

// proxyEntry is the local service of one proxy Service port: clients dial
// its ClusterIP, which leads to the gateway's listener on the target port.
// It names no protocol or routing pattern: federation.Build gives it
// those the sites serving the address declare.
func proxyEntry(address string, p ProxyPort, clusterIPs []string) model.Service {
	s := model.Service{Address: address, Port: p.Port}
	s.Network = s.Key()
	for _, ip := range clusterIPs {
		if ip != "" && ip != corev1.ClusterIPNone {
			s.VIPs = append(s.VIPs, ip)
		}
	}
	if len(s.VIPs) > 0 {
		s.Gateway = net.JoinHostPort(s.VIPs[0], strconv.Itoa(p.Port))
	}
	s.GatewayListen = ":" + strconv.Itoa(p.TargetPort)
	return s
}

func served(targets []netview.Target) bool {
	for _, t := range targets {
		if t.Endpoints > 0 {
			return true
		}
	}
	return false
}

// mergeProxy adds a proxy Service's entry to the local services; when the
// site also exposes the address (under another Service name), the proxy's
// virtual IP and gateway entry join that service instead.
func mergeProxy(local []model.Service, p model.Service) []model.Service {
	for i := range local {
		if local[i].NetworkName() == p.NetworkName() {
			local[i].VIPs = append(local[i].VIPs, p.VIPs...)
			local[i].Gateway, local[i].GatewayListen = p.Gateway, p.GatewayListen
			return local
		}
	}
	return append(local, p)
}

func sameProxy(cur, want *corev1.Service) bool {
	if cur.Labels[ProxyForLabel] != want.Labels[ProxyForLabel] || len(cur.Spec.Ports) != len(want.Spec.Ports) {
		return false
	}
	for k, v := range want.Spec.Selector {
		if cur.Spec.Selector[k] != v {
			return false
		}
	}
	if len(cur.Spec.Selector) != len(want.Spec.Selector) {
		return false
	}
	for i, p := range want.Spec.Ports {
		c := cur.Spec.Ports[i]
		if c.Port != p.Port || c.TargetPort != p.TargetPort || c.Protocol != p.Protocol || c.Name != p.Name {
			return false
		}
	}
	return true
}

// report logs a problem with a Service and records an Event on it, once
// per distinct problem.
func (s *Source) report(svc *corev1.Service, reason string, err error) {
	msg := err.Error()
	if last, ok := s.reported.Load(svc.UID); ok && last == msg {
		return
	}
	s.reported.Store(svc.UID, msg)
	s.Log.Info("service not exposed", "service", svc.Name, "reason", reason, "error", msg)
	if s.Recorder != nil {
		s.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, reason, "Expose", "%s", msg)
	}
}

// GatewayAdminAddrs returns the admin addresses (pod IP and the metrics
// port), sorted, of every gateway replica: the pods the gateway Service
// selects that are ready and not terminating. No such pod is an empty
// list, not an error.
func (s *Source) GatewayAdminAddrs(ctx context.Context) ([]string, error) {
	var svc corev1.Service
	if err := s.Client.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: s.GatewayService}, &svc); err != nil {
		return nil, fmt.Errorf("get gateway service %s: %w", s.GatewayService, err)
	}
	if len(svc.Spec.Selector) == 0 {
		return nil, fmt.Errorf("gateway service %s has no pod selector", s.GatewayService)
	}
	var pods corev1.PodList
	if err := s.Client.List(ctx, &pods, client.InNamespace(s.Namespace), client.MatchingLabels(svc.Spec.Selector)); err != nil {
		return nil, fmt.Errorf("list gateway pods: %w", err)
	}
	addrs := []string{}
	for _, p := range pods.Items {
		if p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				addrs = append(addrs, net.JoinHostPort(p.Status.PodIP, strconv.Itoa(contract.MetricsPort)))
				break
			}
		}
	}
	slices.Sort(addrs)
	return slices.Compact(addrs), nil
}

// reportConflicts raises a Warning Event on the gateway Service for each
// new name conflict the gateway saw: a record or link for a site name
// signed with another key than the one that holds the name.
func (s *Source) reportConflicts(gw *corev1.Service, conflicts []netview.Conflict) {
	for _, c := range conflicts {
		if _, seen := s.conflicts.LoadOrStore(c.Site+"/"+c.Key, struct{}{}); seen {
			continue
		}
		msg := fmt.Sprintf("site %q: a record or link signed by key %s was refused; the name is held by key %s (a site forged it, or two sites use one name)", c.Site, c.Key, c.HeldBy)
		s.Log.Info("Warning: site name conflict", "peerSite", c.Site, "key", c.Key, "heldBy", c.HeldBy)
		if s.Recorder != nil && gw != nil {
			s.Recorder.Eventf(gw, nil, corev1.EventTypeWarning, "SiteNameConflict", "Link", "%s", msg)
		}
	}
}
