package names

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		check func(string) error
		in    string
		ok    bool
	}{
		{CheckSite, "west", true},
		{CheckSite, "a-1", true},
		{CheckSite, "", false},
		{CheckSite, "West", false},
		{CheckSite, "../../../pwned", false},
		{CheckSite, "a\nb", false},
		{CheckSite, "-a", false},
		{CheckSite, strings.Repeat("a", 63), true},
		{CheckSite, strings.Repeat("a", 64), false},
		{CheckRouter, "skiff-gateway-7d9f-x2x", true},
		{CheckRouter, "shop/frontend-1", true},
		{CheckRouter, "a.b.c", true},
		{CheckRouter, "a/b/c", false},
		{CheckRouter, "/a", false},
		{CheckRouter, "a/", false},
		{CheckRouter, strings.Repeat("a", 254), false},
		{CheckAddress, "backend", true},
		{CheckAddress, "db.prod", true},
		{CheckAddress, "backend:8080", true},
		{CheckAddress, "backend:0", false},
		{CheckAddress, "backend:080", false},
		{CheckAddress, "backend:65536", false},
		{CheckAddress, "x y", false},
		{CheckAddress, "../etc", false},
		{CheckAddress, "", false},
	}
	for _, tt := range tests {
		err := tt.check(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("check(%q) = %v, want ok %v", tt.in, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("check(%q) error %v does not wrap ErrInvalid", tt.in, err)
		}
	}
}

func TestErrorsAreShort(t *testing.T) {
	err := CheckSite(strings.Repeat("x", 1<<20))
	if err == nil || len(err.Error()) > 400 {
		t.Errorf("CheckSite(1 MiB) error of %d bytes", len(err.Error()))
	}
}
