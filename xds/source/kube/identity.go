package kube

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/policy"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
	"github.com/skiff-io/skiff/sidecar/shared/state"
	"github.com/skiff-io/skiff/sidecar/shared/token"
)

// Secrets the controller keeps in the site's namespace. The CA, the
// state and the sidecars' credential are the site's identity and memory:
// they have no owner, so that `helm uninstall` and a new `helm install`
// keep the site and its links; deleting the namespace removes them. The
// site Secret is derived from the others and owned by the gateway
// Service.
const (
	// CASecret holds the site CA (ca.crt, ca.key).
	CASecret = "skiff-site-ca"
	// SiteSecret is the gateway's site: site.yaml, the CA and the tokens
	// of its links.
	SiteSecret = "skiff-site"
	// StateSecret is what the gateways remember (package state): the
	// ledger entries of the tokens this site issued (written here, with
	// the redemptions the gateways record) and the link certificates
	// peers issued to this site (written by the gateways).
	StateSecret = "skiff-site-state"
	// SidecarSecret holds token.yaml, the credential injected sidecars use
	// to reach the gateway.
	SidecarSecret = "skiff-sidecar"
)

// CA rotation, on the Secret skiff-site-ca: `kubectl annotate secret
// skiff-site-ca skiff.io/ca-rotation=start` makes a new CA the site's,
// the current one its previous one (both trusted); `...=finish --overwrite`
// drops the previous one. The controller sets the annotation to
// "started" or "finished" once done, and the time in
// skiff.io/ca-rotation-at (docs/install.md, Rotating the site CA).
const (
	CARotationAnnotation   = "skiff.io/ca-rotation"
	CARotationAtAnnotation = "skiff.io/ca-rotation-at"
)

// Paths inside the gateway pod (charts/skiff mounts SiteSecret there).
// The data dir is one the gateway creates, mode 0700, inside the emptyDir
// mounted at /var/lib/skiff: kubelet makes that one 0777 and root's, and a
// gateway that does not own it could not tighten it and would refuse it
// (pki.SecureDir).
const (
	GatewaySiteDir = "/etc/skiff/site"
	GatewayDataDir = "/var/lib/skiff/data"
)

// Identity reconciles the site's identity: the CA, the tokens it issues on
// request, the links it was given, the sidecars' credential, and the
// gateway's site Secret that carries all of it.
type Identity struct {
	Client    client.Client
	Reader    client.Reader // uncached, for the Secrets the cache may not hold yet
	Namespace string
	Site      string
	// GatewayService's DNS name (or load-balancer address) and link port
	// are the advertised link endpoint unless LinkAdvertise is set.
	GatewayService string
	LinkAdvertise  string
	// GatewaySiteDir, GatewayDataDir and LinkBind are the paths and bind
	// address written into the gateway's site file; defaults are those of
	// charts/skiff (tests run gateways elsewhere).
	GatewaySiteDir, GatewayDataDir, LinkBind string
	Recorder                                 EventRecorder
	Log                                      logr.Logger
	// Now is the clock (tests).
	Now func() time.Time

	reported sync.Map // problems reported, by Secret version and message
}

// SetupWithManager registers the identity controller on mgr.
func (id *Identity) SetupWithManager(mgr manager.Manager) error {
	if id.Now == nil {
		id.Now = time.Now
	}
	id.GatewaySiteDir = cmp.Or(id.GatewaySiteDir, GatewaySiteDir)
	id.GatewayDataDir = cmp.Or(id.GatewayDataDir, GatewayDataDir)
	id.LinkBind = cmp.Or(id.LinkBind, ":"+strconv.Itoa(contract.LinkPort))
	c, err := controller.New("skiff-identity", mgr, controller.Options{Reconciler: id, MaxConcurrentReconciles: 1, SkipNameValidation: ptr.To(true)})
	if err != nil {
		return fmt.Errorf("create identity controller: %w", err)
	}
	all := func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: "identity"}}}
	}
	for _, obj := range []client.Object{&corev1.Secret{}, &corev1.Service{}} {
		if err := c.Watch(source.Kind(mgr.GetCache(), obj, handler.EnqueueRequestsFromMapFunc(all))); err != nil {
			return fmt.Errorf("watch %T: %w", obj, err)
		}
	}
	return nil
}

// Reconcile brings the identity Secrets in line. An update that lost a
// race with another writer of the same Secret (a gateway saving a renewed
// link certificate or a redemption into the state Secret) is no failure:
// it reads again, a second later, without an error in the log.
func (id *Identity) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	res, err := id.reconcile(ctx)
	if apierrors.IsConflict(err) {
		id.Log.V(1).Info("a Secret changed while it was updated; reconciling again", "error", err.Error())
		return reconcile.Result{RequeueAfter: time.Second}, nil
	}
	return res, err
}

func (id *Identity) reconcile(ctx context.Context) (reconcile.Result, error) {
	// Everything below is owned by the gateway Service; without it (not
	// installed yet, or being uninstalled) nothing is created, so that an
	// uninstall is not undone by a controller still shutting down. Every
	// object is created with this owner: should the Service go while this
	// reconcile runs, what it creates is garbage-collected all the same.
	owner := GatewayOwner(ctx, id.Reader, id.Namespace, id.GatewayService)
	if owner == nil {
		id.Log.V(1).Info("gateway service not found; site identity waits for it", "gatewayService", id.GatewayService)
		return reconcile.Result{RequeueAfter: 5 * time.Second}, nil
	}
	ca, err := id.ensureCA(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	id.warnExpiry(owner, ca)
	endpoint, err := id.endpoint(ctx)
	if err != nil {
		id.Log.Info("link endpoint not known yet", "error", err.Error())
		return reconcile.Result{RequeueAfter: 5 * time.Second}, nil
	}
	var secrets corev1.SecretList
	if err := id.Client.List(ctx, &secrets, client.InNamespace(id.Namespace), client.HasLabels{contract.TypeLabel}); err != nil {
		return reconcile.Result{}, fmt.Errorf("list skiff secrets: %w", err)
	}
	site, err := id.siteCA(ctx, ca)
	if err != nil {
		return reconcile.Result{}, err
	}
	st, err := id.ensureState(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	w := &siteWant{site: site, st: st, ledger: map[string]ledgerEntry{}}
	if err := id.readSecrets(ctx, w, secrets.Items, ca, endpoint); err != nil {
		return reconcile.Result{}, err
	}
	member, err := id.ensureSidecarCredential(ctx, ca, endpoint)
	if err != nil {
		return reconcile.Result{}, err
	}
	w.ledger[member.ID] = ledgerEntry{tok: member}
	if err := id.applyLedger(ctx, st, w.ledger); err != nil {
		return reconcile.Result{}, err
	}
	site["site.yaml"] = id.siteFile(endpoint, w.links)
	if err := id.applySecret(ctx, SiteSecret, site, owner); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: time.Hour}, nil // renew the sidecar credential in time
}

// siteWant is what one reconcile gathers from the site's Secrets for the
// gateway's site Secret and for the ledger.
type siteWant struct {
	site map[string][]byte // the site Secret's data
	st   *corev1.Secret    // the state Secret, as read
	// The ledger as it should be: entries of the tokens in use, by id
	// (kept: entries left as they are, their request's policy refused).
	ledger map[string]ledgerEntry
	links  []linkEntry
	last   *lastWritten // read when a policy annotation is refused
}

// linkEntry is a link as the gateway's site file lists it.
type linkEntry struct {
	file   string
	cost   int
	policy policy.Policy
}

// recorded reports whether the state Secret holds a ledger entry of the
// token tokID.
func (w *siteWant) recorded(tokID string) bool {
	_, ok := w.st.Data[state.DataKey(state.Tokens, token.EntryName(tokID))]
	return ok
}

// siteCA starts the site Secret's data with the site CA: its certificate,
// and the rest of the CA Secret.
func (id *Identity) siteCA(ctx context.Context, ca *pki.CA) (map[string][]byte, error) {
	site := map[string][]byte{pki.CACertFile: ca.CertPEM}
	caSecret, err := id.getSecret(ctx, CASecret)
	if err != nil {
		return nil, err
	}
	// The gateways' copy of the CA, with the previous one during a
	// rotation: they take a change while they run.
	for _, k := range []string{pki.CAKeyFile, pki.CAPrevCertFile, pki.CAPrevKeyFile} {
		if v, ok := caSecret.Data[k]; ok {
			site[k] = v
		}
	}
	return site, nil
}

// readSecrets gathers into w what the site's token-request and link
// Secrets ask for, in the order listed. It fails only when the site
// Secret last written cannot be read; a Secret with a problem is
// reported and left out.
func (id *Identity) readSecrets(ctx context.Context, w *siteWant, secrets []corev1.Secret, ca *pki.CA, endpoint string) error {
	for i := range secrets {
		s := &secrets[i]
		switch s.Labels[contract.TypeLabel] {
		case "token-request":
			id.readTokenRequest(ctx, w, s, ca, endpoint)
		case "link":
			if err := id.readLink(ctx, w, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// readTokenRequest fills the token request s (tokenRequest) and adds its
// token's ledger entry to w, with the request's policy. With a policy
// annotation refused, a request without a token gets none, and a token
// issued before keeps the entry last written.
func (id *Identity) readTokenRequest(ctx context.Context, w *siteWant, s *corev1.Secret, ca *pki.CA, endpoint string) {
	pol, polErr := allowAnnotations(s)
	if polErr != nil && len(s.Data[contract.TokenKey]) == 0 {
		id.report(s, "InvalidTokenRequest", fmt.Errorf("%w; no token is issued until it is fixed", polErr))
		return
	}
	tok, err := id.tokenRequest(ctx, s, ca, endpoint, w.recorded)
	if err != nil {
		id.report(s, "InvalidTokenRequest", err)
		return
	}
	if tok == nil {
		return // relabelled as a link; the next reconcile reads it
	}
	if polErr != nil {
		// Issued before: its links keep the entry last written.
		if w.recorded(tok.ID) {
			id.warn(s, "InvalidTokenRequest", "token policy refused; its last good policy is kept", fmt.Errorf("%w; links made with token %s keep their last good policy", polErr, tok.ID))
			w.ledger[tok.ID] = ledgerEntry{keep: true}
		} else {
			id.report(s, "InvalidTokenRequest", fmt.Errorf("%w; links made with token %s are refused until it is fixed", polErr, tok.ID))
		}
		return
	}
	w.ledger[tok.ID] = ledgerEntry{tok: tok, policy: pol}
}

// readLink adds the link Secret s to w: its token to the site Secret's
// data, and its entry to the links. With its policy annotation refused,
// the link keeps its last good policy, or is not made without one. It
// fails only when the site Secret last written cannot be read.
func (id *Identity) readLink(ctx context.Context, w *siteWant, s *corev1.Secret) error {
	_, cost, err := parseLink(s, id.Site)
	if err != nil {
		id.report(s, "InvalidLink", err)
		return nil
	}
	file := "link-" + s.Name + ".yaml"
	pol, err := allowAnnotations(s)
	if err != nil {
		l, lerr := id.lastGood(ctx, w)
		if lerr != nil {
			return lerr
		}
		prev, ok := l.links[file]
		if !ok {
			id.report(s, "InvalidLink", fmt.Errorf("%w; the link is not made until it is fixed", err))
			return nil
		}
		id.warn(s, "InvalidLink", "link policy refused; its last good policy is kept", fmt.Errorf("%w; the link keeps its last good policy (%v)", err, prev))
		pol = prev
	}
	w.site[file] = s.Data[contract.TokenKey]
	w.links = append(w.links, linkEntry{file, cost, pol})
	return nil
}

// lastGood returns the site Secret as last written (lastWritten), reading
// it on the first call of a reconcile only.
func (id *Identity) lastGood(ctx context.Context, w *siteWant) (*lastWritten, error) {
	if w.last == nil {
		l, err := id.lastWritten(ctx)
		if err != nil {
			return nil, err
		}
		w.last = l
	}
	return w.last, nil
}

// siteFile is the gateway's site.yaml: the site, its paths, its link
// endpoint and its links, sorted by token file. It sorts links.
func (id *Identity) siteFile(endpoint string, links []linkEntry) []byte {
	slices.SortFunc(links, func(a, b linkEntry) int { return strings.Compare(a.file, b.file) })
	var b strings.Builder
	// The gateway's replicas find each other through the chart's headless
	// Service <gateway service>-siblings (every gateway pod, ready or not).
	_, linkPort, _ := net.SplitHostPort(id.LinkBind)
	siblings := net.JoinHostPort(id.GatewayService+"-siblings."+id.Namespace+".svc", cmp.Or(linkPort, strconv.Itoa(contract.LinkPort)))
	fmt.Fprintf(&b, "# Written by skiff-controller from the site's Secrets; do not edit.\nname: %s\ndataDir: %s\ncaDir: %s\nstateSecret: %s\nsiblings: [%q]\nlinkAccess:\n  bind: %q\n  advertise: %q\n",
		id.Site, id.GatewayDataDir, id.GatewaySiteDir, StateSecret, siblings, id.LinkBind, endpoint)
	if len(links) > 0 {
		b.WriteString("links:\n")
		for _, l := range links {
			fmt.Fprintf(&b, "  - token: %s\n    cost: %d\n", l.file, l.cost)
			writeAllow(&b, l.policy)
		}
	}
	return []byte(b.String())
}

// ensureCA loads the site CA from its Secret, creating both when missing.
// The Secret has no owner: the site keeps its CA, and so its name and its
// links, through an uninstall and a new install. One an earlier version
// made with an owner loses it.
func (id *Identity) ensureCA(ctx context.Context) (*pki.CA, error) {
	s, err := id.getSecret(ctx, CASecret)
	if apierrors.IsNotFound(err) {
		certPEM, keyPEM, err := pki.NewCAPEM(id.Site)
		if err != nil {
			return nil, err
		}
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: CASecret, Namespace: id.Namespace, Labels: ownLabels()},
			Data:       map[string][]byte{pki.CACertFile: certPEM, pki.CAKeyFile: keyPEM},
		}
		if err := id.Client.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create site CA secret: %w", err)
		} else if err != nil {
			if s, err = id.getSecret(ctx, CASecret); err != nil {
				return nil, err
			}
		} else {
			id.Log.Info("site CA created", "secret", CASecret)
		}
	} else if err != nil {
		return nil, err
	}
	if err := id.disown(ctx, s); err != nil {
		return nil, err
	}
	if s, err = id.rotateCA(ctx, s); err != nil {
		return nil, err
	}
	ca, err := pki.ParseCAWithPrevious(s.Data[pki.CACertFile], s.Data[pki.CAKeyFile], s.Data[pki.CAPrevCertFile], s.Data[pki.CAPrevKeyFile])
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", CASecret, err)
	}
	return ca, nil
}

// rotateCA carries out what the CA Secret's skiff.io/ca-rotation
// annotation asks: "start" a rotation (a new CA; the current one becomes
// the previous one, still trusted) or "finish" it (the previous one
// dropped). Anything else is left alone. A start while a rotation is
// under way is refused with a Warning Event and changes nothing.
func (id *Identity) rotateCA(ctx context.Context, s *corev1.Secret) (*corev1.Secret, error) {
	ask := s.Annotations[CARotationAnnotation]
	var data map[string][]byte
	var done string
	switch ask {
	case "start":
		d, err := pki.RotatePEM(s.Data, id.Site)
		if err != nil {
			id.warn(s, "CARotationRefused", "CA rotation not started", err)
			return s, nil
		}
		data, done = d, "started"
	case "finish":
		data, done = pki.FinishPEM(s.Data), "finished"
	default:
		return s, nil
	}
	next := s.DeepCopy()
	next.Data = data
	next.Annotations[CARotationAnnotation] = done
	next.Annotations[CARotationAtAnnotation] = id.Now().UTC().Format(time.RFC3339)
	if err := id.Client.Update(ctx, next); err != nil {
		return nil, fmt.Errorf("%s the CA rotation in secret %s: %w", ask, CASecret, err)
	}
	msg := "site CA rotation started: a new CA signs from now on, the previous one stays trusted; gateways send it to linked sites over their links. Finish it (skiff.io/ca-rotation=finish) once every linked site has it"
	if done == "finished" {
		msg = "site CA rotation finished: the previous CA is no longer trusted"
	}
	id.Log.Info(msg, "secret", CASecret)
	if id.Recorder != nil {
		id.Recorder.Eventf(next, nil, corev1.EventTypeNormal, "CARotation", "Rotate", "%s", msg)
	}
	return next, nil
}

// CAExpiryWarning is how long before the site CA expires the controller
// warns: the CA is not renewed by itself; it is rotated on demand
// (CARotationAnnotation).
const CAExpiryWarning = 30 * 24 * time.Hour

// warnExpiry raises a Warning Event (CertificateExpiring) on the gateway
// Service, and a log line, once a day while the site CA expires within
// CAExpiryWarning.
func (id *Identity) warnExpiry(owner []metav1.OwnerReference, ca *pki.CA) {
	left := ca.Cert.NotAfter.Sub(id.Now())
	if left > CAExpiryWarning || len(owner) == 0 {
		return
	}
	key := "ca-expiry/" + id.Now().UTC().Format(time.DateOnly)
	if _, seen := id.reported.LoadOrStore(key, true); seen {
		return
	}
	msg := fmt.Sprintf("the site CA (Secret %s) expires at %s, in %s: links and credentials it issued stop working then; rotate it: kubectl annotate secret %s %s=start --overwrite (docs/install.md)", CASecret, ca.Cert.NotAfter.UTC().Format(time.RFC3339), left.Round(time.Hour), CASecret, CARotationAnnotation)
	id.Log.Info("Warning: site CA expiring", "expires", ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	if id.Recorder != nil {
		gw := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: owner[0].Name, Namespace: id.Namespace, UID: owner[0].UID}}
		id.Recorder.Eventf(gw, nil, corev1.EventTypeWarning, "CertificateExpiring", "Certificate", "%s", msg)
	}
}

// disown drops the owner references of a Secret the site keeps through
// an uninstall (made with one by an earlier version).
func (id *Identity) disown(ctx context.Context, s *corev1.Secret) error {
	if len(s.OwnerReferences) == 0 || s.Labels[ManagedByLabel] != ManagedBy {
		return nil
	}
	s.OwnerReferences = nil
	if err := id.Client.Update(ctx, s); err != nil {
		return fmt.Errorf("keep secret %s through uninstalls (drop its owner): %w", s.Name, err)
	}
	id.Log.Info("secret kept through uninstalls from now on", "secret", s.Name)
	return nil
}

// ensureState returns the state Secret, creating it (empty, no owner)
// when missing.
func (id *Identity) ensureState(ctx context.Context) (*corev1.Secret, error) {
	s, err := id.getSecret(ctx, StateSecret)
	if apierrors.IsNotFound(err) {
		s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: StateSecret, Namespace: id.Namespace, Labels: ownLabels()}}
		if err := id.Client.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create secret %s: %w", StateSecret, err)
		}
		return id.getSecret(ctx, StateSecret)
	}
	return s, err
}

// ledgerEntry is a token's entry as the ledger should hold it: written
// from the token and its policy, or kept as it is.
type ledgerEntry struct {
	tok    *token.Token
	policy policy.Policy
	keep   bool
}

// applyLedger brings the ledger entries of the state Secret st in line
// with want: entries are written from their tokens (keeping the
// redemptions the gateways recorded), and those of tokens no longer
// wanted are deleted, which revokes them, but for member tokens' entries
// until they expire (sidecars started with the credential before it was
// renewed still use them). Link certificates and other keys stay. An
// update that lost a race with a gateway fails and is retried by the
// next reconcile.
func (id *Identity) applyLedger(ctx context.Context, st *corev1.Secret, want map[string]ledgerEntry) error {
	data := maps.Clone(st.Data)
	if data == nil {
		data = map[string][]byte{}
	}
	for key, cur := range st.Data {
		name, ok := strings.CutPrefix(key, state.Tokens+".")
		if !ok {
			continue
		}
		tokID, _ := strings.CutSuffix(name, ".yaml")
		if _, ok := want[tokID]; ok {
			continue
		}
		if info, err := token.ParseEntryInfo(cur); err == nil && info.Member && id.Now().Before(info.Expires) {
			continue
		}
		delete(data, key)
		id.Log.Info("ledger entry removed: its token request is gone, and with it the token and its links", "token", tokID)
	}
	for tokID, e := range want {
		if e.keep {
			continue
		}
		key := state.DataKey(state.Tokens, token.EntryName(tokID))
		entry, err := token.LedgerEntry(e.tok, e.policy, st.Data[key])
		if err != nil {
			return err
		}
		data[key] = entry
	}
	if sameData(st.Data, data) {
		return nil
	}
	upd := st.DeepCopy()
	upd.Data = data
	if err := id.Client.Update(ctx, upd); err != nil {
		return fmt.Errorf("update secret %s: %w", StateSecret, err)
	}
	return nil
}

// endpoint is the link endpoint other sites dial: the load balancer's
// address for a LoadBalancer Service, else the Service's DNS name
// (<service>.<namespace>.svc), which, unlike its cluster IP, stays the
// same when the Service is made again (an uninstall and a new install):
// tokens and links already out there keep reaching the site.
func (id *Identity) endpoint(ctx context.Context) (string, error) {
	if id.LinkAdvertise != "" {
		return id.LinkAdvertise, nil
	}
	var svc corev1.Service
	if err := id.Client.Get(ctx, client.ObjectKey{Namespace: id.Namespace, Name: id.GatewayService}, &svc); err != nil {
		return "", fmt.Errorf("gateway service %s: %w", id.GatewayService, err)
	}
	port := contract.LinkPort
	for _, p := range svc.Spec.Ports {
		if p.Name == "link" {
			port = int(p.Port)
		}
	}
	host := svc.Name + "." + svc.Namespace + ".svc"
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		host = ""
		for _, in := range svc.Status.LoadBalancer.Ingress {
			host = cmp.Or(in.IP, in.Hostname)
			break
		}
		if host == "" {
			return "", fmt.Errorf("gateway service %s has no load-balancer address yet", id.GatewayService)
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// tokenRequest fills a token request with a token of this site, or, when
// it holds another site's token (a request Secret copied here from the
// issuing site), relabels it as a link and returns nil.
func (id *Identity) tokenRequest(ctx context.Context, s *corev1.Secret, ca *pki.CA, endpoint string, recorded func(id string) bool) (*token.Token, error) {
	if data := s.Data[contract.TokenKey]; len(data) > 0 {
		tok, err := token.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("data %s: %w", contract.TokenKey, err)
		}
		if tok.Site != id.Site {
			upd := s.DeepCopy()
			upd.Labels[contract.TypeLabel] = "link"
			if err := id.Client.Update(ctx, upd); err != nil {
				return nil, fmt.Errorf("relabel as a link: %w", err)
			}
			id.Log.Info("token of another site became a link", "secret", s.Name, "peerSite", tok.Site)
			return nil, nil
		}
		// A token this site's ledger holds stays whichever CA issued it: a
		// CA rotation must not revoke the links made with its tokens.
		if !issuedBy(tok, ca) && !recorded(tok.ID) {
			return nil, fmt.Errorf("token %s was issued by another CA of site %s", tok.ID, id.Site)
		}
		return tok, nil
	}
	ttl := 15 * time.Minute
	if v, ok := s.Annotations[contract.ExpiresAnnotation]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("annotation %s: %q: want a positive duration such as 15m", contract.ExpiresAnnotation, v)
		}
		ttl = d
	}
	redemptions := 1
	if v, ok := s.Annotations[contract.RedemptionsAnnotation]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("annotation %s: %q: want a whole number >= 1", contract.RedemptionsAnnotation, v)
		}
		redemptions = n
	}
	tok, err := token.Issue(ca, id.Site, endpoint, ttl, redemptions, id.Now())
	if err != nil {
		return nil, err
	}
	data, err := tok.Marshal()
	if err != nil {
		return nil, err
	}
	upd := s.DeepCopy()
	if upd.Data == nil {
		upd.Data = map[string][]byte{}
	}
	upd.Data[contract.TokenKey] = data
	if upd.Annotations == nil {
		upd.Annotations = map[string]string{}
	}
	upd.Annotations[contract.TokenIDAnnotation] = tok.ID
	if err := id.Client.Update(ctx, upd); err != nil {
		return nil, fmt.Errorf("write token: %w", err)
	}
	id.Log.Info("token issued", "secret", s.Name, "token", tok.ID, "expires", tok.Expires.Format(time.RFC3339), "redemptions", redemptions)
	return tok, nil
}

// issuedBy reports whether tok was issued by ca, or by the CA before it
// during a rotation: the first certificate of its CA field is one of them.
func issuedBy(tok *token.Token, ca *pki.CA) bool {
	c, err := pki.ParseCertificate([]byte(tok.CA))
	if err != nil {
		return false
	}
	return c.Equal(ca.Cert) || (ca.Prev != nil && c.Equal(ca.Prev.Cert))
}

// allowAnnotations reads the policy annotations of a link or
// token-request Secret; without them, everything is allowed.
func allowAnnotations(s *corev1.Secret) (policy.Policy, error) {
	var p policy.Policy
	for _, a := range []struct {
		key  string
		list *[]string
	}{{contract.AllowAdvertiseAnnotation, &p.Advertise}, {contract.AllowReachAnnotation, &p.Reach}} {
		v, ok := s.Annotations[a.key]
		if !ok {
			continue
		}
		l, err := policy.Parse(v)
		if err != nil {
			return policy.Policy{}, fmt.Errorf("annotation %s: %w", a.key, err)
		}
		*a.list = l
	}
	return p, nil
}

// writeAllow writes a link's policy into the gateway's site file (the
// patterns are valid, so quoting them is all YAML needs).
func writeAllow(b *strings.Builder, p policy.Policy) {
	if p.IsZero() {
		return
	}
	b.WriteString("    allow:\n")
	for _, l := range []struct {
		key  string
		list []string
	}{{"advertise", p.Advertise}, {"reach", p.Reach}} {
		if len(l.list) == 0 {
			continue
		}
		quoted := make([]string, len(l.list))
		for i, pat := range l.list {
			quoted[i] = strconv.Quote(pat)
		}
		fmt.Fprintf(b, "      %s: [%s]\n", l.key, strings.Join(quoted, ", "))
	}
}

// lastWritten is the site Secret as the controller last wrote it: where a
// Secret whose policy annotation is refused finds its last good policy.
type lastWritten struct {
	links map[string]policy.Policy // the links of its site.yaml, by token file
}

// lastWritten reads the site Secret. Without one, or with a site.yaml
// that does not parse, there is no last good policy.
func (id *Identity) lastWritten(ctx context.Context) (*lastWritten, error) {
	l := &lastWritten{links: map[string]policy.Policy{}}
	s, err := id.getSecret(ctx, SiteSecret)
	if apierrors.IsNotFound(err) {
		return l, nil
	}
	if err != nil {
		return nil, err
	}
	site, err := sitefile.Parse(filepath.Join(id.GatewaySiteDir, "site.yaml"), s.Data["site.yaml"])
	if err != nil {
		id.Log.Info("site file last written does not parse; no last good link policies", "secret", SiteSecret, "error", err.Error())
		return l, nil
	}
	for _, link := range site.Links {
		l.links[filepath.Base(link.Token)] = link.Policy
	}
	return l, nil
}

// parseLink reads a link Secret: another site's token and the cost.
func parseLink(s *corev1.Secret, self string) (*token.Token, int, error) {
	tok, err := token.Parse(s.Data[contract.TokenKey])
	if err != nil {
		return nil, 0, fmt.Errorf("data %s: %w", contract.TokenKey, err)
	}
	if err := tok.VerifyIntegrity(); err != nil {
		return nil, 0, fmt.Errorf("data %s: %w", contract.TokenKey, err)
	}
	if tok.Site == self {
		return nil, 0, fmt.Errorf("the token was issued by this site (%s); apply it in the site that should link here", self)
	}
	cost := 1
	if v, ok := s.Annotations[contract.CostAnnotation]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, 0, fmt.Errorf("annotation %s: %q: want a whole number >= 1", contract.CostAnnotation, v)
		}
		cost = n
	}
	return tok, cost, nil
}

// SidecarCredentialValidity is how long the sidecars' credential lasts; it
// is renewed when a third of that is left.
const SidecarCredentialValidity = 365 * 24 * time.Hour

// ensureSidecarCredential keeps SidecarSecret holding a valid member token
// of this site for the current endpoint and CA. The Secret has no owner:
// injected pods that outlive an uninstall and a new install keep working.
func (id *Identity) ensureSidecarCredential(ctx context.Context, ca *pki.CA, endpoint string) (*token.Token, error) {
	s, err := id.getSecret(ctx, SidecarSecret)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	if err == nil {
		if err := id.disown(ctx, s); err != nil {
			return nil, err
		}
		if tok, perr := token.Parse(s.Data[contract.TokenKey]); perr == nil && tok.Endpoint == endpoint && tok.CA == string(ca.BundlePEM()) &&
			tok.IsMember() && tok.Expires.Sub(id.Now()) > SidecarCredentialValidity/3 {
			return tok, nil
		}
	}
	// A member token, redeemed by this site only, so every sidecar of the
	// site may use it (and no other site could).
	tok, err := token.IssueMember(ca, id.Site, endpoint, SidecarCredentialValidity, id.Now())
	if err != nil {
		return nil, err
	}
	data, err := tok.Marshal()
	if err != nil {
		return nil, err
	}
	if err := id.applySecret(ctx, SidecarSecret, map[string][]byte{contract.TokenKey: data}, nil); err != nil {
		return nil, err
	}
	id.Log.Info("sidecar credential issued", "secret", SidecarSecret, "token", tok.ID, "expires", tok.Expires.Format(time.RFC3339))
	return tok, nil
}

func (id *Identity) getSecret(ctx context.Context, name string) (*corev1.Secret, error) {
	var s corev1.Secret
	if err := id.Reader.Get(ctx, client.ObjectKey{Namespace: id.Namespace, Name: name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, err
		}
		return nil, fmt.Errorf("get secret %s: %w", name, err)
	}
	return &s, nil
}

// applySecret creates or updates one of the controller's Secrets when its
// data differs; it gives an unowned one the owner.
func (id *Identity) applySecret(ctx context.Context, name string, data map[string][]byte, owner []metav1.OwnerReference) error {
	cur, err := id.getSecret(ctx, name)
	if apierrors.IsNotFound(err) {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: id.Namespace, Labels: ownLabels(),
			OwnerReferences: owner}, Data: data}
		if err := id.Client.Create(ctx, s); err != nil {
			return fmt.Errorf("create secret %s: %w", name, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if len(cur.OwnerReferences) > 0 {
		owner = cur.OwnerReferences
	}
	if sameData(cur.Data, data) && len(owner) == len(cur.OwnerReferences) {
		return nil
	}
	cur.Data, cur.OwnerReferences = data, owner
	if err := id.Client.Update(ctx, cur); err != nil {
		return fmt.Errorf("update secret %s: %w", name, err)
	}
	return nil
}

func sameData(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

func ownLabels() map[string]string {
	return map[string]string{ManagedByLabel: ManagedBy, PartOfLabel: "skiff"}
}

func (id *Identity) report(s *corev1.Secret, reason string, err error) {
	id.warn(s, reason, "secret not used", err)
}

// warn reports a problem with a Secret once per version of it: a log line
// (msg) and a Warning Event on the Secret.
func (id *Identity) warn(s *corev1.Secret, reason, msg string, err error) {
	key := string(s.UID) + "/" + s.ResourceVersion + "/" + err.Error()
	if _, seen := id.reported.LoadOrStore(key, true); seen {
		return
	}
	id.Log.Info(msg, "secret", s.Name, "reason", reason, "error", err.Error())
	if id.Recorder != nil {
		id.Recorder.Eventf(s, nil, corev1.EventTypeWarning, reason, "Link", "%s", err.Error())
	}
}
