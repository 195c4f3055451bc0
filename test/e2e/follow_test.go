//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
)

// logFollower keeps what `kubectl logs -f` prints for the pods a selector
// matches when it starts, so that the logs of pods deleted meanwhile (a
// gateway that drained) can still be read after a step.
type logFollower struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

// followLogs starts following the logs of the pods of namespace ns that
// match the kubectl arguments args (a selector, a deployment), each line
// with its pod and time.
func followLogs(t *testing.T, ns string, args ...string) *logFollower {
	t.Helper()
	f := &logFollower{done: make(chan struct{})}
	f.cmd = exec.Command("kubectl", append([]string{"-n", ns, "logs", "-f", "--prefix", "--timestamps", "--since=1s", "--max-log-requests=10"}, args...)...)
	f.cmd.Dir = root
	f.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	f.cmd.Stdout, f.cmd.Stderr = f, f
	if err := f.cmd.Start(); err != nil {
		t.Logf("follow logs %v: %v", args, err)
		close(f.done)
		return f
	}
	go func() { f.cmd.Wait(); close(f.done) }()
	return f
}

func (f *logFollower) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.Write(p)
}

// stop ends the follower and returns what it kept, condensed.
func (f *logFollower) stop(perMsg int) string {
	if f.cmd.Process != nil {
		f.cmd.Process.Kill()
	}
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return condenseLogs(f.out.String(), perMsg)
}

// condenseLogs keeps at most perMsg lines with one message (the JSON
// "msg"), then counts the rest.
func condenseLogs(logs string, perMsg int) string {
	seen := map[string]int{}
	var b strings.Builder
	for _, line := range strings.Split(logs, "\n") {
		msg := line
		if i := strings.Index(line, "{"); i >= 0 {
			var v struct {
				Msg string `json:"msg"`
			}
			if json.Unmarshal([]byte(line[i:]), &v) == nil {
				msg = v.Msg
			}
		}
		if seen[msg]++; seen[msg] <= perMsg {
			b.WriteString(line + "\n")
		}
	}
	for msg, n := range seen {
		if n > perMsg {
			fmt.Fprintf(&b, "(%d more lines: %q)\n", n-perMsg, msg)
		}
	}
	return b.String()
}

// errorLines returns, from JSON log lines, the last line of each of the
// last n messages that carried an "error" (what still fails, rather than
// what failed on the way), each shortened to a line of a summary, with its
// count and prefixed with ns.
func errorLines(ns, logs string, n int) []string {
	type last struct {
		line  string
		count int
	}
	byMsg := map[string]*last{}
	var order []string // messages, the most recent last
	for _, line := range strings.Split(logs, "\n") {
		i := strings.Index(line, "{")
		if i < 0 {
			continue
		}
		var v struct {
			Msg   string `json:"msg"`
			Error string `json:"error"`
		}
		if json.Unmarshal([]byte(line[i:]), &v) != nil || v.Error == "" {
			continue
		}
		l := byMsg[v.Msg]
		if l == nil {
			l = &last{}
			byMsg[v.Msg] = l
		}
		l.count++
		l.line = fmt.Sprintf("%s%s: %s", line[:i], v.Msg, v.Error)
		order = slices.DeleteFunc(order, func(m string) bool { return m == v.Msg })
		order = append(order, v.Msg)
	}
	var lines []string
	for _, m := range order[max(0, len(order)-n):] {
		l := fmt.Sprintf("  %s (%dx) %s", ns, byMsg[m].count, byMsg[m].line)
		if len(l) > 240 {
			l = l[:240] + "..."
		}
		lines = append(lines, l)
	}
	return lines
}

// clientSummary returns the client's own summary line from what `kubectl
// exec` printed (the last line whose every word is key=value: "west=1500
// sent=1500"), leaving out what kubectl itself logged beside it (klog
// lines such as `E1206 ... websocket.go:296] Unknown stream id 1`); all
// of it when there is no such line.
func clientSummary(out string) string {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		fields := strings.Fields(lines[i])
		if len(fields) == 0 {
			continue
		}
		all := true
		for _, f := range fields {
			if k, _, ok := strings.Cut(f, "="); !ok || k == "" {
				all = false
				break
			}
		}
		if all {
			return strings.Join(fields, " ")
		}
	}
	return out
}
