// Command skiff is skiff's command-line client: it links sites, exposes
// Services and shows the network (docs/cli.md). Installed as kubectl-skiff
// on the PATH, it is also `kubectl skiff`.
package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/skiff-io/skiff/cli/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, filepath.Base(os.Args[0]), os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
