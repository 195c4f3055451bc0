package token

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLedgerRedeem(t *testing.T) {
	type step struct {
		site string
		at   time.Duration // after issue; the tokens expire after 15m
		want error
	}
	tests := []struct {
		name        string
		redemptions int
		steps       []step
	}{
		{"single use", 1, []step{{"west", time.Minute, nil}, {"north", 2 * time.Minute, ErrUsed}}},
		{"same site reconnects, also after expiry", 1, []step{{"west", time.Minute, nil}, {"west", 2 * time.Minute, nil}, {"west", 48 * time.Hour, nil}}},
		{"second site refused after expiry too", 1, []step{{"west", time.Minute, nil}, {"north", time.Hour, ErrExpired}}},
		{"first use after expiry", 1, []step{{"west", 15 * time.Minute, ErrExpired}, {"west", 16 * time.Minute, ErrExpired}}},
		{"refusals are not redemptions", 1, []step{{"north", time.Hour, ErrExpired}, {"west", time.Hour, ErrExpired}}},
		{"two sites", 2, []step{{"west", time.Minute, nil}, {"north", 2 * time.Minute, nil}, {"south", 3 * time.Minute, ErrUsed}, {"north", time.Hour, nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := Issue(newCA(t, "east"), "east", "127.0.0.1:55671", 15*time.Minute, tt.redemptions, now)
			if err != nil {
				t.Fatal(err)
			}
			l, err := OpenLedger(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Record(tok); err != nil {
				t.Fatalf("Record() error = %v", err)
			}
			for _, s := range tt.steps {
				err := l.Redeem(tok.ID, s.site, now.Add(s.at))
				if !errors.Is(err, s.want) || (s.want == nil) != (err == nil) {
					t.Fatalf("Redeem(%s at +%s) error = %v, want %v", s.site, s.at, err, s.want)
				}
			}
		})
	}
}

func TestLedgerUnknown(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLedger(dir)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "secret.yaml"), []byte("id: x\n"), 0o600)
	for _, id := range []string{"abc123", "", "ABC", "../secret", "../../etc/passwd"} {
		t.Run(id, func(t *testing.T) {
			if err := l.Redeem(id, "west", now); !errors.Is(err, ErrUnknown) {
				t.Errorf("Redeem(%q) error = %v, want ErrUnknown", id, err)
			}
		})
	}
}

// The ledger persists: a gateway (one Ledger) sees tokens the CLI (another
// Ledger on the same data dir) records after it opened, and redemptions
// survive a restart.
func TestLedgerPersists(t *testing.T) {
	dataDir := t.TempDir()
	gateway, err := OpenLedger(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	tok := issue(t, newCA(t, "east"), "east")
	cli, err := OpenLedger(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Record(tok); err != nil {
		t.Fatal(err)
	}
	if err := cli.Record(tok); err == nil {
		t.Error("Record() of the same token twice succeeded")
	}
	if err := gateway.Redeem(tok.ID, "west", now); err != nil {
		t.Fatalf("Redeem() error = %v", err)
	}
	restarted, err := OpenLedger(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := restarted.Redeem(tok.ID, "north", now); !errors.Is(err, ErrUsed) {
		t.Errorf("Redeem(north) after restart error = %v, want ErrUsed", err)
	}
	if err := restarted.Redeem(tok.ID, "west", now.Add(time.Hour)); err != nil {
		t.Errorf("Redeem(west) after restart error = %v", err)
	}

	dir := filepath.Join(dataDir, LedgerDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), fi.Mode())
		}
	}
	if diff := cmp.Diff(names, []string{tok.ID + ".yaml"}); diff != "" {
		t.Errorf("ledger files (-got +want):\n%s", diff)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode() != os.ModeDir|0o700 {
		t.Errorf("ledger dir: %v, %v; want mode 0700", fi.Mode(), err)
	}
}

func TestLedgerRecordErrors(t *testing.T) {
	l, err := OpenLedger(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tok := issue(t, newCA(t, "east"), "east")
	for name, mutate := range map[string]func(*Token){
		"id not hex":       func(tk *Token) { tk.ID = "../x" },
		"zero redemptions": func(tk *Token) { tk.Redemptions = 0 },
	} {
		t.Run(name, func(t *testing.T) {
			tk := *tok
			mutate(&tk)
			if err := l.Record(&tk); err == nil {
				t.Error("Record() succeeded")
			}
		})
	}
}

// Concurrent redemptions in one process admit exactly as many sites as the
// token allows.
func TestLedgerConcurrent(t *testing.T) {
	for _, redemptions := range []int{1, 3} {
		t.Run(fmt.Sprint(redemptions), func(t *testing.T) {
			tok, err := Issue(newCA(t, "east"), "east", "127.0.0.1:1", time.Hour, redemptions, now)
			if err != nil {
				t.Fatal(err)
			}
			l, err := OpenLedger(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Record(tok); err != nil {
				t.Fatal(err)
			}
			const sites = 16
			errs := make([]error, sites*2)
			var wg sync.WaitGroup
			for i := range sites * 2 { // every site twice
				wg.Go(func() { errs[i] = l.Redeem(tok.ID, fmt.Sprintf("site-%d", i%sites), now) })
			}
			wg.Wait()
			admitted := map[string]int{}
			for i, err := range errs {
				switch {
				case err == nil:
					admitted[fmt.Sprintf("site-%d", i%sites)]++
				case !errors.Is(err, ErrUsed):
					t.Errorf("Redeem() error = %v, want nil or ErrUsed", err)
				}
			}
			if len(admitted) != redemptions {
				t.Errorf("%d distinct sites admitted, want %d: %v", len(admitted), redemptions, admitted)
			}
		})
	}
}

// A token issued elsewhere with the site's CA (the Kubernetes controller)
// is adopted from the seed dir on first use; its redemptions are recorded
// in the ledger, so single use holds even though the seed never changes.
func TestLedgerSeed(t *testing.T) {
	tok, err := Issue(newCA(t, "east"), "east", "127.0.0.1:55671", 15*time.Minute, 1, now)
	if err != nil {
		t.Fatal(err)
	}
	seed := t.TempDir()
	data, err := LedgerEntry(tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(seed, SeedFile(tok.ID)), data, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLedger(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Redeem(tok.ID, "west", now.Add(time.Minute)); !errors.Is(err, ErrUnknown) {
		t.Fatalf("without a seed dir: %v, want ErrUnknown", err)
	}
	l.SeedDir = seed
	if err := l.Redeem(tok.ID, "west", now.Add(time.Minute)); err != nil {
		t.Fatalf("seeded redeem: %v", err)
	}
	if err := l.Redeem(tok.ID, "north", now.Add(2*time.Minute)); !errors.Is(err, ErrUsed) {
		t.Fatalf("second site: %v, want ErrUsed", err)
	}
	if err := l.Redeem(tok.ID, "west", now.Add(time.Hour)); err != nil {
		t.Fatalf("reconnect: %v", err)
	}
}
