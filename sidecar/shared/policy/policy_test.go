package policy

import (
	"errors"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/sidecar/shared/names"
)

func TestCheckPattern(t *testing.T) {
	tests := []struct {
		pattern string
		ok      bool
	}{
		{"*", true},
		{"backend", true},
		{"backend:8080", true},
		{"db.prod", true},
		{"db.prod:5432", true},
		{"db-*", true},
		{"db*", true},
		{"shop.*", true},
		{"b*", true},
		{strings.Repeat("a", 63) + "*", true}, // "aaa….b" starts with it
		{strings.Repeat("a", 63) + "." + "*", true},
		{strings.Repeat("a.", 126) + "a*", true},   // 253 characters: that address only
		{strings.Repeat("a.", 126) + "ab*", false}, // 254: no address is that long

		{"", false},
		{" backend", false},
		{"Backend", false},
		{"back_end", false},
		{"backend:0", false},
		{"backend:65536", false},
		{"backend:", false},
		{":8080", false},
		{"-db*", false},      // no address starts with '-'
		{"db..*", false},     // nor with an empty label
		{"backend:*", false}, // no port wildcards
		{"backend:80*", false},
		{"**", false},
		{"*db", false}, // '*' only at the end
		{"d*b", false},
		{"*:8080", false},
		{strings.Repeat("a", 64) + "*", false}, // a label longer than 63
		{"a-" + strings.Repeat("b", 61) + "-*", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			err := CheckPattern(tt.pattern)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckPattern(%q) = %v, want ok %v", tt.pattern, err, tt.ok)
			}
			if err != nil && !errors.Is(err, names.ErrInvalid) {
				t.Errorf("CheckPattern(%q) error %v does not wrap names.ErrInvalid", tt.pattern, err)
			}
		})
	}
}

func TestCheckPatternMessage(t *testing.T) {
	want := `must be a network address (backend, db.prod or backend:8080; without a port it matches every port), an address prefix followed by * (db-*), or * alone, got "Db"`
	if err := CheckPattern("Db"); err == nil || err.Error() != want {
		t.Errorf("CheckPattern(Db) = %v, want %s", err, want)
	}
	long := strings.Repeat("x", 300) + "_"
	if err := CheckPattern(long); err == nil || len(err.Error()) > 400 || !strings.Contains(err.Error(), "(301 bytes)") {
		t.Errorf("CheckPattern(301 bytes) = %v, want a clipped pattern", err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		list    string
		want    []string
		wantErr string
	}{
		{list: "backend", want: []string{"backend"}},
		{list: "db-*, backend:8080 ,echo", want: []string{"db-*", "backend:8080", "echo"}},
		{list: " * ", want: []string{"*"}},
		{list: "a,a", want: []string{"a", "a"}},
		{list: "", wantErr: "must list at least one pattern; leave it out to allow every address"},
		{list: "  ", wantErr: "must list at least one pattern; leave it out to allow every address"},
		{list: "a,,b", wantErr: `item 2 of "a,,b" is empty`},
		{list: "a,", wantErr: `item 2 of "a," is empty`},
		{list: ",a", wantErr: `item 1 of ",a" is empty`},
		{list: "a;b", wantErr: `item 1: must be a network address`},
		{list: "echo, Backend", wantErr: `item 2: must be a network address (backend, db.prod or backend:8080; without a port it matches every port), an address prefix followed by * (db-*), or * alone, got "Backend"`},
		{list: "a b", wantErr: `got "a b"`},
	}
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			got, err := Parse(tt.list)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %q, %v; want an error containing %q", tt.list, got, err, tt.wantErr)
				}
				if !errors.Is(err, names.ErrInvalid) {
					t.Errorf("Parse(%q) error %v does not wrap names.ErrInvalid", tt.list, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) error = %v", tt.list, err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Parse(%q) (-got +want):\n%s", tt.list, diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	if err := (Policy{}).Validate(); err != nil {
		t.Errorf("zero Policy: Validate() = %v", err)
	}
	if err := (Policy{Advertise: []string{"db-*", "backend"}, Reach: []string{"*"}}).Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	err := Policy{Advertise: []string{"ok", "Bad"}, Reach: []string{"", "x:*"}}.Validate()
	if !errors.Is(err, names.ErrInvalid) {
		t.Fatalf("Validate() = %v, want names.ErrInvalid", err)
	}
	for _, want := range []string{`advertise[1]: must be a network address`, `got "Bad"`, `reach[0]: must be`, `got ""`, `reach[1]: must be`, `got "x:*"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), `"ok"`) {
		t.Errorf("Validate() = %v, names a good pattern", err)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, address string
		want             bool
	}{
		{"*", "backend", true},
		{"*", "backend:8080", true},
		// Without a port: the address with any port or none.
		{"backend", "backend", true},
		{"backend", "backend:8080", true},
		{"backend", "backend:1", true},
		{"backend", "backend2", false},
		{"backend", "backend-v2:8080", false},
		{"backend", "backend.prod", false},
		{"backend", "back", false},
		{"backend", "api.backend", false},
		// With a port: that address only.
		{"backend:8080", "backend:8080", true},
		{"backend:8080", "backend", false},
		{"backend:8080", "backend:80", false},
		{"backend:80", "backend:8080", false},
		{"db.prod:5432", "db.prod:5432", true},
		// Prefixes: of the name, any port.
		{"db-*", "db-main", true},
		{"db-*", "db-main:5432", true},
		{"db-*", "db-", true}, // not a valid address; matched all the same
		{"db-*", "db", false},
		{"db-*", "db:5432", false},
		{"db-*", "mydb-main", false},
		{"db*", "db", true},
		{"db*", "db:5432", true},
		{"db*", "dbx.prod", true},
		{"shop.*", "shop.cart:80", true},
		{"shop.*", "shop", false},
		{"shop.*", "shopping", false},
		// Refused patterns match nothing else.
		{"backend:*", "backend:8080", false},
		{"x*y", "xay", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.address, func(t *testing.T) {
			if got := Match(tt.pattern, tt.address); got != tt.want {
				t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.address, got, tt.want)
			}
		})
	}
}

func TestMayAdvertiseMayReach(t *testing.T) {
	var zero Policy
	for _, a := range []string{"backend", "backend:8080", "anything.at.all"} {
		if !zero.MayAdvertise(a) || !zero.MayReach(a) {
			t.Errorf("zero Policy refuses %q", a)
		}
	}
	empty := Policy{Advertise: []string{}, Reach: []string{}}
	if !empty.MayAdvertise("backend") || !empty.MayReach("backend") || !empty.IsZero() {
		t.Errorf("Policy with empty lists is not the zero policy")
	}

	p := Policy{Advertise: []string{"db-*", "echo"}, Reach: []string{"frontend:80"}}
	tests := []struct {
		address          string
		advertise, reach bool
	}{
		{"db-main:5432", true, false},
		{"echo", true, false},
		{"echo:9090", true, false},
		{"frontend:80", false, true},
		{"frontend", false, false},
		{"backend:8080", false, false},
	}
	for _, tt := range tests {
		if got := p.MayAdvertise(tt.address); got != tt.advertise {
			t.Errorf("MayAdvertise(%q) = %v, want %v", tt.address, got, tt.advertise)
		}
		if got := p.MayReach(tt.address); got != tt.reach {
			t.Errorf("MayReach(%q) = %v, want %v", tt.address, got, tt.reach)
		}
	}
	// One list does not restrict the other.
	onlyReach := Policy{Reach: []string{"echo"}}
	if !onlyReach.MayAdvertise("backend") || onlyReach.MayReach("backend") {
		t.Errorf("%v: advertise backend %v, reach backend %v; want true, false", onlyReach, onlyReach.MayAdvertise("backend"), onlyReach.MayReach("backend"))
	}
}

func TestIsZeroEqualString(t *testing.T) {
	tests := []struct {
		p      Policy
		zero   bool
		string string
	}{
		{Policy{}, true, "advertise=all reach=all"},
		{Policy{Advertise: []string{"db-*", "backend"}}, false, "advertise=db-*,backend reach=all"},
		{Policy{Reach: []string{"*"}}, false, "advertise=all reach=*"},
		{Policy{Advertise: []string{"a"}, Reach: []string{"b:1", "c"}}, false, "advertise=a reach=b:1,c"},
	}
	for _, tt := range tests {
		t.Run(tt.string, func(t *testing.T) {
			if got := tt.p.IsZero(); got != tt.zero {
				t.Errorf("IsZero() = %v, want %v", got, tt.zero)
			}
			if got := tt.p.String(); got != tt.string {
				t.Errorf("String() = %q, want %q", got, tt.string)
			}
			if !tt.p.Equal(tt.p) {
				t.Errorf("Equal(itself) = false")
			}
		})
	}
	if !(Policy{}).Equal(Policy{Advertise: []string{}}) {
		t.Errorf("nil and empty lists are not Equal")
	}
	if (Policy{Advertise: []string{"a"}}).Equal(Policy{Reach: []string{"a"}}) {
		t.Errorf("advertise and reach lists are Equal")
	}
	if (Policy{Reach: []string{"a", "b"}}).Equal(Policy{Reach: []string{"b", "a"}}) {
		t.Errorf("lists in another order are Equal")
	}
}

// FuzzParse checks that what Parse accepts is a list of valid patterns
// that survives a round trip, and that Match agrees with path.Match on the
// address and on its name.
func FuzzParse(f *testing.F) {
	for _, seed := range []struct{ list, address string }{
		{"backend", "backend:8080"},
		{"db-*, backend:8080 ,echo", "db-main"},
		{"*", "x"},
		{"a,,b", "a"},
		{"shop.*", "shop.cart:80"},
		{"backend:*", "backend:1"},
		{"", ""},
		{"x*y,Backend", "xay"},
	} {
		f.Add(seed.list, seed.address)
	}
	f.Fuzz(func(t *testing.T, list, address string) {
		got, err := Parse(list)
		if err != nil {
			if got != nil {
				t.Errorf("Parse(%q) = %q and error %v", list, got, err)
			}
			if !errors.Is(err, names.ErrInvalid) {
				t.Errorf("Parse(%q) error %v does not wrap names.ErrInvalid", list, err)
			}
			return
		}
		if len(got) == 0 {
			t.Fatalf("Parse(%q) accepted an empty list", list)
		}
		p := Policy{Advertise: got, Reach: got}
		if err := p.Validate(); err != nil {
			t.Errorf("Parse(%q) = %q, which does not validate: %v", list, got, err)
		}
		again, err := Parse(strings.Join(got, ","))
		if err != nil || !slices.Equal(again, got) {
			t.Errorf("Parse(Join(%q)) = %q, %v", got, again, err)
		}
		if names.CheckAddress(address) != nil {
			p.MayReach(address) // must not panic
			return
		}
		name := address
		if i := strings.LastIndexByte(address, ':'); i >= 0 {
			name = address[:i]
		}
		for _, pat := range got {
			byName, _ := path.Match(pat, name)
			whole, _ := path.Match(pat, address)
			if m := Match(pat, address); m != (byName || whole) {
				t.Errorf("Match(%q, %q) = %v, path.Match on the name %v, on the address %v", pat, address, m, byName, whole)
			}
			if pat == address && !p.MayReach(address) {
				t.Errorf("%v does not reach %q", p, address)
			}
		}
	})
}
