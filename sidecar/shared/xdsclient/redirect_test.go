package xdsclient_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/xdsclient"
	"github.com/skiff-io/skiff/test/testutil"
)

// waitReported waits until the controller shows the client's node with
// redirect state want, on one stream.
func waitReported(t *testing.T, ctl *controller, want model.Redirect) {
	t.Helper()
	testutil.Eventually(t, waitLimit, fmt.Sprintf("the controller sees redirect %q", want), func() error {
		st := ctl.srv.Status()
		if len(st) != 1 || st[0].Redirect != want || st[0].Streams != 1 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
}

// checkTables checks that every table the client delivered held at
// least as many services as the one before (the controller's tables
// only grow here): no update was lost and then redone, and none came
// back after a newer one.
func checkTables(t *testing.T, r *recorder) {
	t.Helper()
	if got := r.got(); !slices.IsSorted(got) || got[0] == 0 {
		t.Errorf("services per Apply call %v: a table went backwards", got)
	}
}

// A redirect state set while the client follows its controller reaches
// the controller's Status at once, on a new stream, which presents the
// versions held: the table stays applied, and a change made after it is
// applied. Changes within ReportInterval of a report are coalesced: one
// new stream reports the last state when the interval is over, and none
// does when the state came back to the reported one.
func TestRedirectReported(t *testing.T) {
	const interval = 200 * time.Millisecond // far longer than a few calls of SetRedirect
	ctl := startController(t, table("backend"))
	r := &recorder{}
	cl := ctl.run(t, r, func(o *xdsclient.Options) { o.ReportInterval = interval })
	waitAnswered(t, cl, 2)
	waitReported(t, ctl, "")

	cl.SetRedirect(model.RedirectLost)
	waitReported(t, ctl, model.RedirectLost)
	if s := cl.Stats(); s.Streams != 2 || s.Nacked != 0 {
		t.Errorf("%d streams, %d refused; want 2 (one new stream for the report) and 0", s.Streams, s.Nacked)
	}
	// Within the interval of that report: the last state, once.
	for _, s := range []model.Redirect{model.RedirectVerified, "", model.RedirectVerified} {
		cl.SetRedirect(s)
	}
	waitReported(t, ctl, model.RedirectVerified)
	if s := cl.Stats(); s.Streams != 3 {
		t.Errorf("%d streams, want 3", s.Streams)
	}
	// Back and forth within the interval: nothing to report.
	cl.SetRedirect(model.RedirectLost)
	cl.SetRedirect(model.RedirectVerified)
	ctl.srv.Update(table("backend", "frontend"))
	testutil.Eventually(t, waitLimit, "the change after the reports applied", func() error {
		if got := r.got(); got[len(got)-1] != 2 {
			return fmt.Errorf("services per Apply call %v", got)
		}
		return nil
	})
	time.Sleep(interval) // past the time a new stream would have waited for
	if s := cl.Stats(); s.Streams != 3 {
		t.Errorf("%d streams after the state came back to the reported one, want 3", s.Streams)
	}
	waitReported(t, ctl, model.RedirectVerified)
	checkTables(t, r)
}

// A redirect state that flaps costs at most one new stream per
// ReportInterval, while the controller's table changes meanwhile; once
// it settles the controller sees the last state, and the client holds
// the last table.
func TestRedirectFlapping(t *testing.T) {
	const interval = 50 * time.Millisecond
	ctl := startController(t, table("s0"))
	r := &recorder{}
	cl := ctl.run(t, r, func(o *xdsclient.Options) { o.ReportInterval = interval })
	waitAnswered(t, cl, 2)
	before := cl.Stats().Streams
	start := time.Now()
	names := []string{"s0"}
	for i := range 400 {
		cl.SetRedirect([]model.Redirect{model.RedirectLost, model.RedirectVerified}[i%2])
		if i%40 == 0 {
			names = append(names, fmt.Sprintf("s%d", i+1))
			ctl.srv.Update(table(names...))
		}
		time.Sleep(time.Millisecond)
	}
	cl.SetRedirect(model.RedirectLost)
	waitReported(t, ctl, model.RedirectLost)
	// Each new stream for a report starts ReportInterval after the one
	// before at the earliest, however long the flapping took.
	bound := int64(time.Since(start)/interval) + 1
	if n := cl.Stats().Streams - before; n > bound || n < 1 {
		t.Errorf("%d new streams, want 1 to %d", n, bound)
	}
	testutil.Eventually(t, waitLimit, "the last table applied", func() error {
		if got := r.got(); got[len(got)-1] != len(names) {
			return fmt.Errorf("services per Apply call %v, want %d at last", got, len(names))
		}
		return nil
	})
	checkTables(t, r)
}
