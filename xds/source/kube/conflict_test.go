package kube

import (
	"fmt"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

// events records what the source would send to the events API.
type events []string

func (e *events) Eventf(regarding, _ runtime.Object, eventtype, reason, action, note string, args ...any) {
	name := regarding.(metav1.Object).GetName()
	*e = append(*e, fmt.Sprintf("%s %s %s %s: %s", name, eventtype, reason, action, fmt.Sprintf(note, args...)))
}

func TestReportConflictsOncePerKey(t *testing.T) {
	var got events
	s := &Source{Log: testr.New(t), Recorder: &got}
	gw := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "skiff-gateway"}}
	west := netview.Conflict{Site: "west", Key: "aaaa", HeldBy: "bbbb"}
	s.reportConflicts(gw, []netview.Conflict{west})
	s.reportConflicts(gw, []netview.Conflict{west, {Site: "west", Key: "cccc", HeldBy: "bbbb"}})
	if len(got) != 2 {
		t.Fatalf("events = %q, want one per (site, key)", got)
	}
	if !strings.HasPrefix(got[0], "skiff-gateway Warning SiteNameConflict Link:") || !strings.Contains(got[0], "key aaaa") || !strings.Contains(got[0], "held by key bbbb") {
		t.Errorf("event = %q", got[0])
	}
}
