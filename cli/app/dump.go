package app

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skiff-io/skiff/sidecar/shared/counters"
)

// Bounds of what debug dump takes from each source.
const (
	dumpLogLines = 5000
	dumpLogBytes = 4 << 20
	dumpAdminMax = 8 << 20
)

// partOfLabel selects the chart's pods.
const partOfLabel = "app.kubernetes.io/part-of"

// archive is a tar.gz being written, with a list of what could not be
// taken (errors.txt at the end): a dump takes what it can.
type archive struct {
	tw     *tar.Writer
	now    time.Time
	failed []string
}

func (a *archive) add(name string, b []byte) error {
	if err := a.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), ModTime: a.now, Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("writing the dump: %w", err)
	}
	if _, err := a.tw.Write(b); err != nil {
		return fmt.Errorf("writing the dump: %w", err)
	}
	return nil
}

func (a *archive) addJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", name, err)
	}
	return a.add(name, append(b, '\n'))
}

func (a *archive) fail(what string, err error) {
	a.failed = append(a.failed, fmt.Sprintf("%s: %v", what, err))
}

// debugDump writes, for a bug report, what the site shows of itself: its
// status, its links (names, peers, costs and states; never a Secret's
// data), the namespace's events, its pods, and for each skiff pod its
// containers' recent logs and its admin endpoints (/metrics, and the
// controller's /status and the gateway's /view, through the API
// server's pod proxy). Nothing in it is a secret: the admin endpoints
// serve no key, certificate or token (docs/install.md), and Secrets are
// listed by name only.
func debugDump(ctx context.Context, e *env, args []string) error {
	s, err := e.kube()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("creating the dump: %w", err)
	}
	gz := gzip.NewWriter(f)
	a := &archive{tw: tar.NewWriter(gz), now: time.Now()}
	werr := s.dump(ctx, a)
	if werr == nil && len(a.failed) > 0 {
		werr = a.add("errors.txt", []byte(strings.Join(a.failed, "\n")+"\n"))
	}
	for _, c := range []io.Closer{a.tw, gz, f} {
		if err := c.Close(); err != nil && werr == nil {
			werr = fmt.Errorf("writing the dump: %w", err)
		}
	}
	if werr != nil {
		return werr
	}
	fmt.Fprintf(e.out, "Dump of namespace %s written to %s", s.ns, args[0])
	if len(a.failed) > 0 {
		fmt.Fprintf(e.out, " (%d part(s) could not be taken: errors.txt in it says which)", len(a.failed))
	}
	fmt.Fprintln(e.out, ".")
	return nil
}

func (s *site) dump(ctx context.Context, a *archive) error {
	if err := a.addJSON("dump.json", map[string]any{"namespace": s.ns, "time": a.now.UTC()}); err != nil {
		return err
	}
	st, err := s.status(ctx)
	if err != nil {
		a.fail("status", err)
	} else {
		if err := a.addJSON("status.json", st); err != nil {
			return err
		}
		links, err := s.links(ctx, st)
		if err != nil {
			a.fail("links", err)
		} else if err := a.addJSON("links.json", links); err != nil {
			return err
		}
	}
	if err := s.dumpEvents(ctx, a); err != nil {
		return err
	}
	var pods corev1.PodList
	if err := s.c.List(ctx, &pods, client.InNamespace(s.ns), client.HasLabels{partOfLabel}); err != nil {
		a.fail("pods", err)
		return nil
	}
	if err := a.addJSON("pods.json", podSummaries(pods.Items)); err != nil {
		return err
	}
	for _, p := range pods.Items {
		if err := s.dumpPod(ctx, a, &p); err != nil {
			return err
		}
	}
	return nil
}

// dumpEvents takes every event of the namespace (types, reasons, notes and
// objects; events carry no secret).
func (s *site) dumpEvents(ctx context.Context, a *archive) error {
	var evs eventsv1.EventList
	if err := s.c.List(ctx, &evs, client.InNamespace(s.ns), client.Limit(1000)); err != nil {
		a.fail("events", err)
		return nil
	}
	type ev struct {
		Time                    time.Time `json:"time"`
		Type, Reason, Object    string
		Note, ReportingInstance string
		Count                   int32 `json:"count,omitempty"`
	}
	out := make([]ev, 0, len(evs.Items))
	for _, e := range evs.Items {
		x := ev{Time: e.EventTime.Time, Type: e.Type, Reason: e.Reason, Object: e.Regarding.Kind + "/" + e.Regarding.Name, Note: e.Note, ReportingInstance: e.ReportingInstance}
		if e.Series != nil {
			x.Time, x.Count = e.Series.LastObservedTime.Time, e.Series.Count
		}
		if x.Time.IsZero() {
			x.Time = e.CreationTimestamp.Time
		}
		out = append(out, x)
	}
	return a.addJSON("events.json", out)
}

// podSummary is what a dump says of a pod: no spec (which names Secrets
// and may carry environment values), only where it runs and how it fares.
type podSummary struct {
	Name, Node, Phase string
	Component         string `json:"component,omitempty"`
	Containers        []containerSummary
}

type containerSummary struct {
	Name, Image  string
	Ready        bool
	RestartCount int32
	State        string
	LastState    string `json:",omitempty"`
}

func podSummaries(pods []corev1.Pod) []podSummary {
	out := make([]podSummary, 0, len(pods))
	for _, p := range pods {
		ps := podSummary{Name: p.Name, Node: p.Spec.NodeName, Phase: string(p.Status.Phase), Component: p.Labels["app.kubernetes.io/component"]}
		for _, c := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			ps.Containers = append(ps.Containers, containerSummary{Name: c.Name, Image: c.Image, Ready: c.Ready, RestartCount: c.RestartCount,
				State: stateText(c.State), LastState: stateText(c.LastTerminationState)})
		}
		out = append(out, ps)
	}
	return out
}

func stateText(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running since " + s.Running.StartedAt.UTC().Format(time.RFC3339)
	case s.Waiting != nil:
		return "waiting: " + s.Waiting.Reason
	case s.Terminated != nil:
		return fmt.Sprintf("terminated: %s (exit %d) at %s", s.Terminated.Reason, s.Terminated.ExitCode, s.Terminated.FinishedAt.UTC().Format(time.RFC3339))
	}
	return ""
}

// dumpPod takes a pod's containers' logs (the last dumpLogLines lines,
// at most dumpLogBytes each, and the previous run's when it restarted)
// and its admin endpoints.
func (s *site) dumpPod(ctx context.Context, a *archive, p *corev1.Pod) error {
	containers := append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...)
	restarted := map[string]bool{}
	for _, c := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		restarted[c.Name] = c.RestartCount > 0
	}
	for _, c := range containers {
		for _, previous := range []bool{false, true} {
			if previous && !restarted[c.Name] {
				continue
			}
			name := fmt.Sprintf("logs/%s/%s.log", p.Name, c.Name)
			if previous {
				name = fmt.Sprintf("logs/%s/%s.previous.log", p.Name, c.Name)
			}
			b, err := s.logs(ctx, p.Name, c.Name, previous)
			if err != nil {
				a.fail(name, err)
				continue
			}
			if err := a.add(name, b); err != nil {
				return err
			}
		}
	}
	paths := []string{"/metrics"}
	switch p.Labels["app.kubernetes.io/component"] {
	case "controller":
		paths = append(paths, "/status")
	case "gateway":
		paths = append(paths, "/view")
	}
	for _, path := range paths {
		name := "admin/" + p.Name + path
		b, more, err := s.admin(ctx, p.Name, path, dumpAdminMax)
		if err != nil {
			a.fail(name, err)
			continue
		}
		if more {
			a.fail(name, fmt.Errorf("cut at %d bytes", dumpAdminMax))
		}
		if err := a.add(name, b); err != nil {
			return err
		}
	}
	return nil
}

// gatewayCounters reads the traffic counters of the site's gateway pods
// (their /metrics through the API server's pod proxy) and sums them; an
// error when there is no running gateway pod, or one does not answer.
func (s *site) gatewayCounters(ctx context.Context) (counters.Sample, error) {
	var pods corev1.PodList
	if err := s.c.List(ctx, &pods, client.InNamespace(s.ns), client.MatchingLabels{partOfLabel: "skiff", "app.kubernetes.io/component": "gateway"}); err != nil {
		return counters.Sample{}, err
	}
	sum, running := counters.NewSample(), 0
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning {
			continue
		}
		running++
		b, more, err := s.admin(ctx, p.Name, "/metrics", counters.MaxPage)
		if err == nil && more {
			err = fmt.Errorf("over %d bytes", counters.MaxPage)
		}
		if err != nil {
			return counters.Sample{}, fmt.Errorf("gateway %s's metrics: %w", p.Name, err)
		}
		c, err := counters.Parse(bytes.NewReader(b))
		if err != nil {
			return counters.Sample{}, fmt.Errorf("gateway %s's metrics: %w", p.Name, err)
		}
		sum.Add(c)
	}
	if running == 0 {
		return counters.Sample{}, fmt.Errorf("no running gateway pod in namespace %s", s.ns)
	}
	return sum, nil
}

func (s *site) logs(ctx context.Context, pod, container string, previous bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	lines, limit := int64(dumpLogLines), int64(dumpLogBytes)
	r, err := s.cs.CoreV1().Pods(s.ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Previous: previous, TailLines: &lines, LimitBytes: &limit}).Stream(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, dumpLogBytes))
}
