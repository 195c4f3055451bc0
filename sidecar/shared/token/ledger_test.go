package token

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/sidecar/shared/names"
	"github.com/skiff-io/skiff/sidecar/shared/policy"
	"github.com/skiff-io/skiff/sidecar/shared/state"
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
			if err := l.Record(tok, policy.Policy{}); err != nil {
				t.Fatalf("Record() error = %v", err)
			}
			for _, s := range tt.steps {
				err := l.Redeem(tok.ID, s.site, "key-"+s.site, now.Add(s.at))
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
			if err := l.Redeem(id, "west", "key-west", now); !errors.Is(err, ErrUnknown) {
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
	if err := cli.Record(tok, policy.Policy{}); err != nil {
		t.Fatal(err)
	}
	if err := cli.Record(tok, policy.Policy{}); err == nil {
		t.Error("Record() of the same token twice succeeded")
	}
	if err := gateway.Redeem(tok.ID, "west", "key-west", now); err != nil {
		t.Fatalf("Redeem() error = %v", err)
	}
	restarted, err := OpenLedger(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := restarted.Redeem(tok.ID, "north", "key-north", now); !errors.Is(err, ErrUsed) {
		t.Errorf("Redeem(north) after restart error = %v, want ErrUsed", err)
	}
	if err := restarted.Redeem(tok.ID, "west", "key-west", now.Add(time.Hour)); err != nil {
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
			if err := l.Record(&tk, policy.Policy{}); err == nil {
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
			if err := l.Record(tok, policy.Policy{}); err != nil {
				t.Fatal(err)
			}
			const sites = 16
			errs := make([]error, sites*2)
			var wg sync.WaitGroup
			for i := range sites * 2 { // every site twice
				wg.Go(func() {
					errs[i] = l.Redeem(tok.ID, fmt.Sprintf("site-%d", i%sites), fmt.Sprintf("key-%d", i%sites), now)
				})
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

// The Kubernetes controller writes the entries of the tokens it issues
// into the store the gateways' ledgers share (LedgerEntry), and rewrites
// them when a request's policy changes, keeping the redemptions; the
// replicas of a gateway (two Ledgers on one store) redeem a single-use
// token once between them; deleting the entry revokes the token.
func TestLedgerWrittenByController(t *testing.T) {
	tok, err := Issue(newCA(t, "east"), "east", "127.0.0.1:55671", 15*time.Minute, 1, now)
	if err != nil {
		t.Fatal(err)
	}
	store := state.NewDir(t.TempDir())
	write := func(p policy.Policy) {
		t.Helper()
		err := store.Update(state.Tokens, EntryName(tok.ID), func(cur []byte) ([]byte, error) { return LedgerEntry(tok, p, cur) })
		if err != nil {
			t.Fatal(err)
		}
	}
	one, two := NewLedger(store), NewLedger(store)
	if err := one.Redeem(tok.ID, "west", "key-west", now.Add(time.Minute)); !errors.Is(err, ErrUnknown) {
		t.Fatalf("before the controller wrote the entry: %v, want ErrUnknown", err)
	}
	first := policy.Policy{Reach: []string{"echo"}}
	write(first)
	if err := one.Redeem(tok.ID, "west", "key-west", now.Add(time.Minute)); err != nil {
		t.Fatalf("redeem: %v", err)
	}
	if err := two.Redeem(tok.ID, "north", "key-north", now.Add(2*time.Minute)); !errors.Is(err, ErrUsed) {
		t.Fatalf("second site at the other replica: %v, want ErrUsed", err)
	}
	if err := two.Redeem(tok.ID, "west", "key-west", now.Add(time.Hour)); err != nil {
		t.Fatalf("reconnect at the other replica after expiry: %v", err)
	}
	if err := two.Check(tok.ID, "west", "key-west"); err != nil {
		t.Fatalf("link certificate at the other replica: %v", err)
	}
	// The controller changes the policy: applies at once, redemptions kept.
	second := policy.Policy{Advertise: []string{"db-*"}}
	write(second)
	if got, err := two.Policy(tok.ID); err != nil || !got.Equal(second) {
		t.Errorf("Policy(rewritten) = %v, %v; want %v", got, err, second)
	}
	if err := one.Redeem(tok.ID, "north", "key-north", now.Add(2*time.Minute)); !errors.Is(err, ErrUsed) {
		t.Fatalf("after the rewrite: %v, want ErrUsed (the redemption was kept)", err)
	}
	// The request Secret deleted: the controller deletes the entry.
	if err := store.Update(state.Tokens, EntryName(tok.ID), func([]byte) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if err := one.Check(tok.ID, "west", "key-west"); !errors.Is(err, ErrUnknown) {
		t.Errorf("link certificate of a revoked token: %v, want ErrUnknown", err)
	}
	if _, err := two.Policy(tok.ID); !errors.Is(err, ErrUnknown) {
		t.Errorf("policy of a revoked token: %v, want ErrUnknown", err)
	}
}

func TestLedgerNameStaysWithKey(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	ca := newCA(t, "east")
	l, err := OpenLedger(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	multi, err := Issue(ca, "east", "east.example:55671", time.Hour, 5, now)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Issue(ca, "east", "east.example:55671", time.Hour, 1, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []*Token{multi, other} {
		if err := l.Record(tok, policy.Policy{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Redeem(multi.ID, "west", "key-west", now); err != nil {
		t.Fatalf("first redemption: %v", err)
	}
	// A copy of the multi-use token, or another token, cannot take the
	// name west with another key.
	if err := l.Redeem(multi.ID, "west", "key-mallory", now); !errors.Is(err, ErrNameTaken) {
		t.Errorf("same token, name west, another key: error = %v, want ErrNameTaken", err)
	}
	if err := l.Redeem(other.ID, "west", "key-mallory", now); !errors.Is(err, ErrNameTaken) {
		t.Errorf("other token, name west, another key: error = %v, want ErrNameTaken", err)
	}
	// The holder reconnects, even after expiry; another name is free.
	if err := l.Redeem(multi.ID, "west", "key-west", now.Add(48*time.Hour)); err != nil {
		t.Errorf("holder reconnecting after expiry: %v", err)
	}
	if err := l.Redeem(multi.ID, "north", "key-north", now); err != nil {
		t.Errorf("a second site on the multi-use token: %v", err)
	}
}

// A site that rotated its key (an endorsed rollover, checked by the
// caller) is moved to the new key in every entry it redeemed: both keys
// are honoured, the name stays with the site, and another key is still
// refused. Rekeying from a key the site never held fails.
func TestLedgerRekey(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	ca := newCA(t, "east")
	l, err := OpenLedger(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var toks []*Token
	for range 2 {
		tok, err := Issue(ca, "east", "east.example:55671", time.Hour, 2, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Record(tok, policy.Policy{}); err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	for _, tok := range toks {
		if err := l.Redeem(tok.ID, "west", "k1", now); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Redeem(toks[0].ID, "north", "n1", now); err != nil {
		t.Fatal(err)
	}
	if err := l.Rekey("west", "mallory", "k2"); !errors.Is(err, ErrNameTaken) {
		t.Errorf("Rekey from a key west never held: error = %v, want ErrNameTaken", err)
	}
	if err := l.Rekey("west", "k1", "k2"); err != nil {
		t.Fatalf("Rekey() error = %v", err)
	}
	if err := l.Rekey("west", "k1", "k2"); err != nil {
		t.Errorf("Rekey() again (another gateway of this site) error = %v", err)
	}
	for _, tok := range toks {
		for _, key := range []string{"k1", "k2"} {
			if err := l.Check(tok.ID, "west", key); err != nil {
				t.Errorf("Check(%s, west, %s) after the rekey: %v", tok.ID, key, err)
			}
		}
		if err := l.Check(tok.ID, "west", "mallory"); !errors.Is(err, ErrNameTaken) {
			t.Errorf("Check(west, another key) = %v, want ErrNameTaken", err)
		}
	}
	if err := l.Redeem(toks[1].ID, "west", "k2", now.Add(48*time.Hour)); err != nil {
		t.Errorf("west redeeming again with its new key after expiry: %v", err)
	}
	if err := l.Check(toks[0].ID, "north", "n1"); err != nil {
		t.Errorf("north, untouched by west's rekey: %v", err)
	}
	if err := l.Check(toks[0].ID, "north", "k2"); !errors.Is(err, ErrNameTaken) {
		t.Errorf("north with west's new key: %v, want ErrNameTaken", err)
	}
}

// A token's policy is recorded in its ledger entry and read back by id;
// entries without one (older ledgers) allow everything; a seed entry (the
// controller's, kept current from annotations) wins over the ledger's copy
// taken at first redemption.
func TestLedgerPolicy(t *testing.T) {
	ca := newCA(t, "east")
	dataDir := t.TempDir()
	l, err := OpenLedger(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	want := policy.Policy{Advertise: []string{"db-*", "backend:8080"}, Reach: []string{"echo"}}
	restricted, open := issue(t, ca, "east"), issue(t, ca, "east")
	if err := l.Record(restricted, want); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(open, policy.Policy{}); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Policy(restricted.ID); err != nil || !got.Equal(want) {
		t.Errorf("Policy(restricted) = %v, %v; want %v", got, err, want)
	}
	if got, err := l.Policy(open.ID); err != nil || !got.IsZero() {
		t.Errorf("Policy(open) = %v, %v; want the zero policy", got, err)
	}
	data, err := os.ReadFile(filepath.Join(dataDir, LedgerDir, open.ID+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "allow") {
		t.Errorf("entry without a policy mentions allow:\n%s", data)
	}
	// Redeeming keeps the policy.
	if err := l.Redeem(restricted.ID, "west", "key-west", now); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Policy(restricted.ID); err != nil || !got.Equal(want) {
		t.Errorf("Policy(restricted) after Redeem = %v, %v; want %v", got, err, want)
	}

	// A ledger file written before policies were.
	old := issue(t, ca, "east")
	oldEntry := fmt.Sprintf("id: %s\nsite: east\nendpoint: 127.0.0.1:55671\nexpires: %s\nredemptions: 1\nredeemedBy: []\n", old.ID, now.Add(time.Hour).Format(time.RFC3339))
	if err := os.WriteFile(filepath.Join(dataDir, LedgerDir, old.ID+".yaml"), []byte(oldEntry), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Policy(old.ID); err != nil || !got.IsZero() {
		t.Errorf("Policy(entry without allow) = %v, %v; want the zero policy", got, err)
	}
	if err := l.Redeem(old.ID, "west", "key-west", now); err != nil {
		t.Errorf("Redeem(entry without allow) = %v", err)
	}

	// Unknown and malformed ids.
	for _, id := range []string{issue(t, ca, "east").ID, "../x", ""} {
		if _, err := l.Policy(id); !errors.Is(err, ErrUnknown) {
			t.Errorf("Policy(%q) error = %v, want ErrUnknown", id, err)
		}
	}

	// A hand-edited entry with a bad pattern is an error, not "all".
	bad := issue(t, ca, "east")
	badEntry := strings.Replace(oldEntry, old.ID, bad.ID, 1) + "allow:\n  reach: [Echo]\n"
	if err := os.WriteFile(filepath.Join(dataDir, LedgerDir, bad.ID+".yaml"), []byte(badEntry), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Policy(bad.ID); !errors.Is(err, names.ErrInvalid) || !strings.Contains(err.Error(), `reach[0]`) {
		t.Errorf("Policy(bad entry) = %v, %v; want an error naming reach[0]", got, err)
	}
}

func TestLedgerPolicyRefused(t *testing.T) {
	tok := issue(t, newCA(t, "east"), "east")
	l, err := OpenLedger(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bad := policy.Policy{Advertise: []string{"db-*", "db:*"}}
	if err := l.Record(tok, bad); !errors.Is(err, names.ErrInvalid) {
		t.Errorf("Record(bad policy) = %v, want names.ErrInvalid", err)
	}
	if _, err := l.Policy(tok.ID); !errors.Is(err, ErrUnknown) {
		t.Errorf("Record(bad policy) left an entry: Policy() = %v", err)
	}
	if _, err := LedgerEntry(tok, bad, nil); !errors.Is(err, names.ErrInvalid) {
		t.Errorf("LedgerEntry(bad policy) = %v, want names.ErrInvalid", err)
	}
}
