//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
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
