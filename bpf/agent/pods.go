package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/skiff-io/skiff/bpf"
	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/exclude"
)

type podKey = types.NamespacedName

// daemon is the running agent: the pod controller's reconciler, the
// sweeper and the xDS client's Apply.
type daemon struct {
	o        DaemonOptions
	r        *bpf.Redirector
	log      logr.Logger
	m        *metrics
	pods     client.Reader // the manager's cache: pods on this node
	recorder events.EventRecorder

	mu       sync.Mutex // one reconcile or sweep at a time
	attached map[podKey]attachment
	waiting  map[podKey]*waiting // pods whose cgroup is not there yet
	refused  map[podKey]string   // the refusal last recorded, to record it once

	ready atomic.Bool
	armed atomic.Bool // the site's self-check (armProbe)

	svcMu    sync.Mutex // one Apply at a time
	services []netip.AddrPort
	skipped  []string
}

// attachment is a pod this agent has attached (or found attached).
type attachment struct {
	uid  types.UID
	id   uint64 // cgroup id
	path string
	ex   bpf.Exclusions
}

func (a attachment) equal(b attachment) bool {
	return a.uid == b.uid && a.id == b.id && a.path == b.path &&
		slices.Equal(a.ex.Ports, b.ex.Ports) && slices.Equal(a.ex.CIDRs, b.ex.CIDRs)
}

// waiting counts the retries of a pod whose cgroup does not exist yet.
type waiting struct {
	since time.Time
	tries int
}

// Retries of a pod whose cgroup is missing: the delay doubles from
// cgroupRetryMin to cgroupRetryMax; the first miss is logged at V(1), the
// cgroupWaitLogAt-th (about half a minute) at V(0), once.
const (
	cgroupRetryMin  = 100 * time.Millisecond
	cgroupRetryMax  = 2 * time.Second
	cgroupWaitLogAt = 20
)

// Event reason of a pod the agent refuses to redirect.
const eventReasonRefused = "RedirectRefused"

// skip says why a pod of the site's namespace on this node is not
// redirected by the agent of site, or "" when it is: a pod is redirected
// when the injector marked it (skiff.io/status), it has a UID and it has
// not terminated. refusal is the failure reason when the pod is marked
// but must not be redirected all the same (the injector skips such pods;
// this is defence in depth): a host-network pod, or one whose sidecar
// belongs to another site (its self-check would refuse this site's
// programs, and its table is not this site's).
func skip(pod *corev1.Pod, site string) (why, refusal string) {
	switch {
	case !hasStatus(pod):
		return "not injected", ""
	case pod.UID == "":
		return "no UID", ""
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return "terminated", ""
	case pod.Spec.HostNetwork:
		return "host network: its connections are the node's", reasonHostNetwork
	}
	if s := podSite(pod); s != "" && s != site {
		return fmt.Sprintf("its sidecar is site %s's (%s=%s) and this namespace is site %s's, whose node agent redirects only its own pods", s, contract.EnvSite, s, site), reasonOtherSite
	}
	return "", ""
}

func hasStatus(pod *corev1.Pod) bool {
	_, ok := pod.Annotations[contract.StatusAnnotation]
	return ok
}

// podSite returns the site the injector gave the pod's sidecar (its
// SKIFF_SITE), or "" when the pod has no sidecar container that says.
func podSite(pod *corev1.Pod) string {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name != contract.SidecarContainerName {
				continue
			}
			for _, e := range c.Env {
				if e.Name == contract.EnvSite {
					return e.Value
				}
			}
		}
	}
	return ""
}

// podExclusions reads the pod's config.skiff.io/exclude-outbound-ports and
// -cidrs annotations with the parser the injector uses (package exclude),
// so a list means the same to both; the other config.skiff.io/ annotations
// are the injector's business and are not looked at.
func podExclusions(pod *corev1.Pod) (bpf.Exclusions, error) {
	var ex bpf.Exclusions
	var errs []error
	bad := func(key string, err error) {
		errs = append(errs, fmt.Errorf("annotation %s: %q: %w", key, pod.Annotations[key], err))
	}
	var err error
	if ex.Ports, err = exclude.ParsePorts(pod.Annotations[contract.ConfigExcludeOutboundPortsAnnotation]); err != nil {
		bad(contract.ConfigExcludeOutboundPortsAnnotation, err)
	}
	if ex.CIDRs, err = exclude.ParseCIDRs(pod.Annotations[contract.ConfigExcludeOutboundCIDRsAnnotation]); err != nil {
		bad(contract.ConfigExcludeOutboundCIDRsAnnotation, err)
	}
	if len(errs) > 0 {
		return bpf.Exclusions{}, errors.Join(errs...)
	}
	return ex, ex.Validate()
}

// Reconcile makes the pod's attachment match the pod: attached with its
// exclusions while it is redirected, detached once it is gone or no
// longer redirected.
func (d *daemon) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	var pod corev1.Pod
	if err := d.pods.Get(ctx, req.NamespacedName, &pod); apierrors.IsNotFound(err) {
		delete(d.refused, req.NamespacedName)
		return ctrl.Result{}, d.release(log, req.NamespacedName, "pod gone")
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("get pod: %w", err)
	}
	if why, refusal := skip(&pod, d.o.Site); why != "" {
		if refusal != "" {
			d.refuse(log, &pod, refusal, why)
		} else {
			delete(d.refused, req.NamespacedName)
		}
		return ctrl.Result{}, d.release(log, req.NamespacedName, why)
	}
	return d.redirect(ctx, log, &pod)
}

// redirect attaches a pod that is to be redirected, or updates its
// exclusions.
func (d *daemon) redirect(ctx context.Context, log logr.Logger, pod *corev1.Pod) (ctrl.Result, error) {
	key := client.ObjectKeyFromObject(pod)
	ex, err := podExclusions(pod)
	if err != nil {
		// The injector denies such pods; the annotations may have been
		// edited since. Nothing changes: a pod that was attached keeps
		// its attachment and its last valid exclusions, one that was not
		// is not attached.
		d.refuse(log, pod, reasonInvalidAnnotation, "invalid exclusion annotation, redirection unchanged: "+err.Error())
		return ctrl.Result{}, nil
	}
	delete(d.refused, key)
	path, tried, err := findPodCgroup(d.o.CgroupRoot, pod.UID, pod.Status.QOSClass)
	if errors.Is(err, errNoCgroup) {
		return ctrl.Result{RequeueAfter: d.wait(log, key, tried)}, nil
	}
	if err != nil {
		d.m.failures.WithLabelValues(reasonCgroup).Inc()
		return ctrl.Result{}, err
	}
	id, err := bpf.CgroupID(path)
	if err != nil {
		d.m.failures.WithLabelValues(reasonCgroup).Inc()
		return ctrl.Result{}, err
	}
	want := attachment{uid: pod.UID, id: id, path: path, ex: ex}
	have, had := d.attached[key]
	if had && have.equal(want) {
		delete(d.waiting, key)
		return ctrl.Result{}, nil
	}
	// Exclusions first, so that the pod's first redirected connect already
	// honours them. Both calls leave what is right alone: a pod attached
	// by an earlier agent is not detached and attached again.
	if err := d.r.SetExclusions(path, ex); err != nil {
		d.m.failures.WithLabelValues(reasonExclusions).Inc()
		return ctrl.Result{}, fmt.Errorf("set exclusions: %w", err)
	}
	if _, err := d.r.Attach(path); err != nil {
		d.m.failures.WithLabelValues(reasonAttach).Inc()
		return ctrl.Result{}, err
	}
	d.takeOverLegacy(log, id)
	if had && have.id != id {
		// The same name, a new pod (a StatefulSet's, say): the old one's
		// cgroup goes.
		if err := d.r.DetachID(have.id); err != nil {
			d.m.detachFailures.Inc()
			log.Error(err, "detach the previous pod of this name", "cgroup", have.path)
		}
	}
	d.attached[key] = want
	d.m.attached.Set(float64(len(d.attached)))
	kv := []any{"cgroup", path, "excludedPorts", ex.Ports, "excludedCIDRs", ex.CIDRs}
	if w := d.waiting[key]; w != nil {
		kv = append(kv, "waitedForCgroup", time.Since(w.since).Round(time.Millisecond).String())
		delete(d.waiting, key)
	}
	if had && have.id == id {
		log.Info("exclusions changed", kv...)
	} else {
		log.Info("pod redirected", kv...)
	}
	return ctrl.Result{}, nil
}

// wait notes one more miss of the pod's cgroup and returns the delay
// before the next look.
func (d *daemon) wait(log logr.Logger, key podKey, tried []string) time.Duration {
	w := d.waiting[key]
	if w == nil {
		w = &waiting{since: time.Now()}
		d.waiting[key] = w
	}
	w.tries++
	switch w.tries {
	case 1:
		log.V(1).Info("pod cgroup not there yet; retrying", "tried", tried)
	case cgroupWaitLogAt:
		log.Info("pod cgroup still missing; retrying (is --cgroup-root the host's cgroup v2 mount?)", "tried", tried,
			"waited", time.Since(w.since).Round(time.Second).String())
	}
	return min(cgroupRetryMin<<min(w.tries-1, 10), cgroupRetryMax)
}

// release detaches a pod this agent attached.
func (d *daemon) release(log logr.Logger, key podKey, why string) error {
	delete(d.waiting, key)
	a, ok := d.attached[key]
	if !ok {
		return nil
	}
	if err := d.r.DetachID(a.id); err != nil {
		d.m.detachFailures.Inc()
		return fmt.Errorf("detach cgroup %s: %w", a.path, err)
	}
	delete(d.attached, key)
	d.m.attached.Set(float64(len(d.attached)))
	log.Info("pod detached", "reason", why, "cgroup", a.path)
	return nil
}

// refuse records, once per distinct note, that a marked pod is not
// redirected: a log line, a Warning Event on the pod, a failure count.
func (d *daemon) refuse(log logr.Logger, pod *corev1.Pod, reason, note string) {
	key := client.ObjectKeyFromObject(pod)
	if d.refused[key] == note {
		return
	}
	d.refused[key] = note
	d.m.failures.WithLabelValues(reason).Inc()
	log.Info("pod not redirected", "reason", reason, "error", note)
	if d.recorder != nil {
		d.recorder.Eventf(pod, nil, corev1.EventTypeWarning, eventReasonRefused, "Redirect", "%s", note)
	}
}

// sweep detaches the pinned attachments that belong to no pod to be
// redirected: pods deleted or changed while no agent ran, cgroups that
// went away. Attachments of pods still to be redirected are kept as they
// are (no moment without redirection).
func (d *daemon) sweep(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var pods corev1.PodList
	if err := d.pods.List(ctx, &pods); err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	keep := map[uint64]bool{}
	for i := range pods.Items {
		pod := &pods.Items[i]
		if why, _ := skip(pod, d.o.Site); why != "" {
			continue
		}
		path, _, err := findPodCgroup(d.o.CgroupRoot, pod.UID, pod.Status.QOSClass)
		if err != nil {
			continue
		}
		if id, err := bpf.CgroupID(path); err == nil {
			keep[id] = true
		}
	}
	as, err := d.r.Attachments()
	if err != nil {
		return err
	}
	var errs []error
	kept := 0
	for _, a := range as {
		if keep[a.CgroupID] {
			kept++
			continue
		}
		if err := d.r.DetachID(a.CgroupID); err != nil {
			d.m.detachFailures.Inc()
			errs = append(errs, err)
			continue
		}
		for k, v := range d.attached {
			if v.id == a.CgroupID {
				delete(d.attached, k)
			}
		}
		d.log.Info("stale attachment detached", "cgroupID", a.CgroupID, "cgroup", a.Path)
	}
	d.m.attached.Set(float64(len(d.attached)))
	d.log.V(1).Info("attachments swept", "pods", len(pods.Items), "kept", kept, "pinned", len(as))
	return errors.Join(append(errs, d.sweepLegacy())...)
}

// takeOverLegacy detaches the legacy attachment (bpf.LegacyPinDir, made by
// an agent of an earlier version) of a pod this agent has just attached
// with its site's programs. d.mu is held.
func (d *daemon) takeOverLegacy(log logr.Logger, id uint64) {
	legacy := d.o.legacyPinDir()
	if legacy == "" {
		return
	}
	had, err := bpf.DetachLegacy(legacy, id)
	switch {
	case err != nil:
		d.m.detachFailures.Inc()
		log.Error(err, "detach the pod's legacy attachment; the sweep tries again", "legacyPinDir", legacy)
	case had:
		log.Info("pod taken over from a legacy attachment", "legacyPinDir", legacy)
	}
}

// sweepLegacy detaches the legacy attachments of cgroups that are gone
// and, once no legacy attachment is left, removes the legacy maps. Those
// of live cgroups stay: this site's pods were taken over as they were
// attached, the others are other sites' (their agents take them over).
// d.mu is held.
func (d *daemon) sweepLegacy() error {
	legacy := d.o.legacyPinDir()
	if legacy == "" {
		return nil
	}
	as, err := bpf.LegacyAttachments(legacy)
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range as {
		if a.Path != "" {
			continue
		}
		if _, err := bpf.DetachLegacy(legacy, a.CgroupID); err != nil {
			d.m.detachFailures.Inc()
			errs = append(errs, err)
		}
	}
	removed, err := bpf.RemoveLegacyMaps(legacy)
	if removed {
		d.log.Info("legacy pins removed: no pod is attached there any more", "legacyPinDir", legacy)
	}
	return errors.Join(append(errs, err)...)
}
