package app

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/sidecar/shared/names"
	"github.com/skiff-io/skiff/sidecar/shared/policy"
	"github.com/skiff-io/skiff/sidecar/shared/token"
)

func TestTokenPolicyFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    policy.Policy
		wantErr string
	}{
		{name: "none", want: policy.Policy{}},
		{
			name: "both, repeated",
			args: []string{"--allow-advertise", "db-*, backend:8080", "--allow-reach", "echo", "--allow-reach=frontend:80,shop.*"},
			want: policy.Policy{Advertise: []string{"db-*", "backend:8080"}, Reach: []string{"echo", "frontend:80", "shop.*"}},
		},
		{name: "bad pattern", args: []string{"--allow-reach", "echo,Frontend"}, wantErr: `invalid value "echo,Frontend" for flag -allow-reach: item 2: must be a network address`},
		{name: "empty", args: []string{"--allow-advertise="}, wantErr: `invalid value "" for flag -allow-advertise: must list at least one pattern`},
		{name: "empty item", args: []string{"--allow-advertise", "a,,b"}, wantErr: `item 2 of "a,,b" is empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("token issue", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var o TokenOptions
			o.AddFlags(fs)
			err := fs.Parse(append([]string{"--site-file", "s", "--out", "t"}, tt.args...))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want one containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) error = %v", tt.args, err)
			}
			if diff := cmp.Diff(o.Policy, tt.want); diff != "" {
				t.Errorf("Policy (-got +want):\n%s", diff)
			}
			if err := o.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
}

// Options set in code are validated like flags.
func TestTokenOptionsValidatePolicy(t *testing.T) {
	o := TokenOptions{SiteFile: "s", Out: "t", Expires: time.Minute, Redemptions: 1,
		Policy: policy.Policy{Advertise: []string{"db-*", "db:*"}, Reach: []string{"Echo"}}}
	err := o.Validate()
	if !errors.Is(err, names.ErrInvalid) {
		t.Fatalf("Validate() = %v, want names.ErrInvalid", err)
	}
	for _, want := range []string{`--allow-advertise: advertise[1]: must be`, `got "db:*"`, `--allow-reach: reach[0]: must be`, `got "Echo"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
}

// The token's ledger entry holds the policy the flags gave; a bad one
// issues nothing.
func TestIssueTokenPolicy(t *testing.T) {
	dir := t.TempDir()
	siteFile := filepath.Join(dir, "east.yaml")
	if err := os.WriteFile(siteFile, []byte("name: east\nlinkAccess:\n  bind: 127.0.0.1:55671\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := policy.Policy{Advertise: []string{"db-*"}, Reach: []string{"echo", "frontend:80"}}
	tok, err := IssueToken(TokenOptions{SiteFile: siteFile, Out: filepath.Join(dir, "west-token.yaml"), Expires: time.Minute, Redemptions: 1, Policy: want}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := token.OpenLedger(filepath.Join(dir, "east-data"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ledger.Policy(tok.ID); err != nil || !got.Equal(want) {
		t.Errorf("ledger policy of the issued token = %v, %v; want %v", got, err, want)
	}

	out := filepath.Join(dir, "bad-token.yaml")
	if _, err := IssueToken(TokenOptions{SiteFile: siteFile, Out: out, Expires: time.Minute, Redemptions: 1,
		Policy: policy.Policy{Reach: []string{"Echo"}}}, time.Now()); !errors.Is(err, names.ErrInvalid) {
		t.Fatalf("IssueToken(bad policy) = %v, want names.ErrInvalid", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("IssueToken(bad policy) wrote %s", out)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "east-data", token.LedgerDir))
	if err != nil || len(entries) != 1 {
		t.Errorf("ledger after a refused token: %v, %v; want the first token's entry only", entries, err)
	}
}
