package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// site is a Kubernetes site as the CLI reaches it: the API server and
// the site's namespace.
type site struct {
	c    client.Client
	cs   kubernetes.Interface // for what c does not do: logs, the pod proxy
	ns   string
	name string // the program's name, for advice in errors
}

// requestTimeout bounds each call to the API server.
const requestTimeout = 30 * time.Second

// connect finds the API server and the namespace as kubectl does: the
// kubeconfig (--kubeconfig, else $KUBECONFIG, else ~/.kube/config), its
// context (--context, else the current one), and the namespace (-n, else
// the context's, else default).
func connect(_ context.Context, name string, o options) (*site, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.context}
	overrides.Context.Namespace = o.namespace
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no Kubernetes cluster to talk to: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, fmt.Errorf("the namespace: %w", err)
	}
	cfg.Timeout = requestTimeout
	// controller-runtime's client logs through its global logger, and
	// warns on stderr, with a stack, when nobody set one; the CLI says
	// what went wrong in its errors.
	ctrllog.SetLogger(logr.Discard())
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, fmt.Errorf("the Kubernetes client: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("the Kubernetes client: %w", err)
	}
	return &site{c: c, cs: cs, ns: ns, name: name}, nil
}

// status reads the site's status document, which the controller keeps in
// the namespace; its absence means there is no site there (yet).
func (s *site) status(ctx context.Context) (*model.SiteStatus, error) {
	var cm corev1.ConfigMap
	err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: contract.StatusConfigMap}, &cm)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("no skiff site in namespace %s (no ConfigMap %s): install one with `helm install skiff charts/skiff -n %s`, or wait for its controller to start",
			s.ns, contract.StatusConfigMap, s.ns)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the site's status in namespace %s: %w", s.ns, err)
	}
	var st model.SiteStatus
	if err := json.Unmarshal([]byte(cm.Data[contract.StatusKey]), &st); err != nil {
		return nil, fmt.Errorf("the site's status (ConfigMap %s/%s, key %s) is not valid: %w", s.ns, contract.StatusConfigMap, contract.StatusKey, err)
	}
	if st.Site == "" {
		return nil, fmt.Errorf("the site's status (ConfigMap %s/%s) names no site", s.ns, contract.StatusConfigMap)
	}
	return &st, nil
}

// kubeStatus connects to the Kubernetes site and reads its status.
func (e *env) kubeStatus(ctx context.Context) (*site, *model.SiteStatus, error) {
	s, err := e.kube()
	if err != nil {
		return nil, nil, err
	}
	st, err := s.status(ctx)
	if err != nil {
		return nil, nil, err
	}
	return s, st, nil
}

// service reads the Service name of the site's namespace.
func (s *site) service(ctx context.Context, name string) (*corev1.Service, error) {
	var svc corev1.Service
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: name}, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no Service %s in namespace %s", name, s.ns)
		}
		return nil, fmt.Errorf("reading the Service %s/%s: %w", s.ns, name, err)
	}
	return &svc, nil
}

// admin reads path from a pod's admin port (contract.MetricsPort)
// through the API server's pod proxy: at most max bytes, and whether
// there was more.
func (s *site) admin(ctx context.Context, pod, path string, max int64) (b []byte, more bool, err error) {
	return s.adminQuery(ctx, pod, path, nil, max)
}

// adminQuery is admin with a query (parameters by name).
func (s *site) adminQuery(ctx context.Context, pod, path string, query map[string]string, max int64) (b []byte, more bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	r, err := s.cs.CoreV1().Pods(s.ns).ProxyGet("http", pod, strconv.Itoa(contract.MetricsPort), path, query).Stream(ctx)
	if err != nil {
		return nil, false, err
	}
	defer r.Close()
	b, err = io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, false, err
	}
	if int64(len(b)) > max {
		return b[:max], true, nil
	}
	return b, false, nil
}

// event is a Warning the controller recorded on an object of the site.
type event struct {
	Time    time.Time `json:"time"`
	Object  string    `json:"object"` // Kind/name
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
}

// warnings lists the site's Warning events (of the controller and of
// the other components), newest first, at most max; name, if set, keeps
// those about that object only.
func (s *site) warnings(ctx context.Context, kind, name string, max int) ([]event, error) {
	var evs eventsv1.EventList
	if err := s.c.List(ctx, &evs, client.InNamespace(s.ns), client.Limit(1000)); err != nil {
		return nil, fmt.Errorf("listing the events of namespace %s: %w", s.ns, err)
	}
	var out []event
	for _, e := range evs.Items {
		if e.Type != corev1.EventTypeWarning || (name != "" && (e.Regarding.Name != name || e.Regarding.Kind != kind)) {
			continue
		}
		t := e.EventTime.Time
		if e.Series != nil {
			t = e.Series.LastObservedTime.Time
		}
		if t.IsZero() {
			t = e.DeprecatedLastTimestamp.Time
		}
		if t.IsZero() {
			t = e.CreationTimestamp.Time
		}
		out = append(out, event{Time: t, Object: e.Regarding.Kind + "/" + e.Regarding.Name, Reason: e.Reason, Message: e.Note})
	}
	slices.SortFunc(out, func(a, b event) int { return b.Time.Compare(a.Time) })
	if len(out) > max {
		out = out[:max]
	}
	return out, nil
}
