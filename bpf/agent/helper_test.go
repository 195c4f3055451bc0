package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/router"
	"github.com/skiff-io/skiff/test/testutil"
)

// The test binary doubles as the programs a test runs inside a pod's
// cgroup: SKIFF_AGENT_HELPER picks one, os.Args[1:] are its arguments.
//
//	sidecar LISTEN-ADDR  answers every connection with "orig=ADDR", the
//	                     destination router.OriginalDst reads for it
//	dial ADDR            connects, prints what the server says
const helperEnv = "SKIFF_AGENT_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		var err error
		switch mode {
		case "sidecar":
			err = runSidecar(os.Args[1:])
		case "dial":
			err = runDial(os.Args[1:])
		default:
			err = fmt.Errorf("unknown helper %q", mode)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runSidecar(args []string) error {
	if len(args) != 1 {
		return errors.New("sidecar LISTEN-ADDR")
	}
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	fmt.Println("listening")
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			if dst, err := router.OriginalDst(c); err != nil {
				fmt.Fprintf(c, "error=%v\n", err)
			} else {
				fmt.Fprintf(c, "orig=%s\n", dst)
			}
		}()
	}
}

func runDial(args []string) error {
	if len(args) != 1 {
		return errors.New("dial ADDR")
	}
	c, err := net.DialTimeout("tcp", args[0], 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	fmt.Print(string(b))
	return nil
}

// inCgroup returns a command that enters the cgroup dir before it execs
// the helper, so that not one of its connects escapes the programs.
func inCgroup(dir, mode string, args ...string) *exec.Cmd {
	cmd := exec.Command("/bin/sh", append([]string{"-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(dir, "cgroup.procs"), os.Args[0]}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	return cmd
}

// startSidecar runs the sidecar helper in dir until the test ends.
func startSidecar(t testing.TB, dir, listen string) {
	t.Helper()
	cmd := inCgroup(dir, "sidecar", listen)
	r, w := io.Pipe()
	cmd.Stdout = w
	testutil.Start(t, cmd)
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		if err == nil && line != "listening\n" {
			err = fmt.Errorf("sidecar helper said %q", line)
		}
		ready <- err
		io.Copy(io.Discard, r)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sidecar helper did not start")
	}
}

// dialFrom connects to addr from a process in dir and returns what it
// read.
func dialFrom(dir, addr string) (string, error) {
	out, err := inCgroup(dir, "dial", addr).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
