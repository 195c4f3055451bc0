package testutil

import (
	"context"
	"testing"

	"github.com/chromedp/chromedp"
)

// Chromium starts Debian's Chromium, headless, for t (skipped loudly
// without it, failed in CI) and returns a chromedp context of a tab in
// it. The flags are those this machine needs: no sandbox as root, no GPU,
// no background networking (the machine's network is closed), a user
// data directory of the test's own.
func Chromium(t testing.TB) context.Context {
	t.Helper()
	chromium := RequireTool(t, "chromium")[0]
	ctx, cancel := chromedp.NewExecAllocator(t.Context(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true), chromedp.WindowSize(1280, 900))...)
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(ctx)
	t.Cleanup(cancelTab)
	return ctx
}
