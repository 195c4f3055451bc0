package testutil

import (
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Proc is a background process of a test: its output is kept, and it is
// killed (with its process group) when the test ends; the output is
// logged if the test failed.
type Proc struct {
	Cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	done chan struct{}
}

// Start runs cmd in the background until the test ends. Stdout is kept
// unless cmd already has one; stderr is always kept.
func Start(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = p
	}
	cmd.Stderr = p
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.Stop(t) })
	return p
}

// Write collects the process's output.
func (p *Proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output returns what the process wrote so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Stop kills the process group and waits for the process.
// A failed test logs the process's output, also when it had exited on
// its own (its last words are often why the test failed).
func (p *Proc) Stop(t testing.TB) {
	exited := false
	select {
	case <-p.done:
		exited = true
	default:
		syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	if t.Failed() {
		state := ""
		if exited {
			state = " (had exited: " + p.Cmd.ProcessState.String() + ")"
		}
		t.Logf("%s%s:\n%s", strings.Join(p.Cmd.Args, " "), state, p.Output())
	}
}
