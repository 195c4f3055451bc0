package model

import (
	"errors"
	"testing"
	"time"
)

func TestParseMulticast(t *testing.T) {
	for _, tc := range []struct {
		mode, timeout string
		want          MulticastSpec
		wantErr       string
	}{
		{want: MulticastSpec{Aggregate, 5 * time.Second}},
		{mode: "Events", timeout: "250ms", want: MulticastSpec{Events, 250 * time.Millisecond}},
		{mode: " aggregate ", timeout: "5m", want: MulticastSpec{Aggregate, 5 * time.Minute}},
		{mode: "broadcast", wantErr: `bad multicast mode "broadcast"; use aggregate or events`},
		{timeout: "5", wantErr: `bad multicast timeout "5"; use a duration from 1ms to 5m, like 5s`},
		{timeout: "0s", wantErr: `bad multicast timeout "0s"; use a duration from 1ms to 5m, like 5s`},
		{timeout: "6m", wantErr: `bad multicast timeout "6m"; use a duration from 1ms to 5m, like 5s`},
		{timeout: "-1s", wantErr: `bad multicast timeout "-1s"; use a duration from 1ms to 5m, like 5s`},
	} {
		got, err := ParseMulticast(tc.mode, tc.timeout)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr || !errors.Is(err, ErrMulticastMode) {
				t.Errorf("ParseMulticast(%q, %q) = %v, want error %q", tc.mode, tc.timeout, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseMulticast(%q, %q) = %+v, %v, want %+v", tc.mode, tc.timeout, got, err, tc.want)
		}
	}
}

func TestMulticastText(t *testing.T) {
	for _, m := range []MulticastSpec{{}, {Events, time.Millisecond}, {Aggregate, 1500 * time.Millisecond}, {Events, MaxMulticastTimeout}} {
		got, err := ParseMulticastText(m.Text())
		want := MulticastSpec{m.ModeOrDefault(), m.Deadline()}
		if err != nil || got != want {
			t.Errorf("ParseMulticastText(%q) = %+v, %v, want %+v", m.Text(), got, err, want)
		}
	}
	if got := (MulticastSpec{}).Text(); got != "aggregate-5000ms" {
		t.Errorf("zero Text() = %q", got)
	}
	for _, bad := range []string{"", "aggregate", "aggregate-5000", "aggregate-0ms", "events-300001ms", "fanout-5ms", "aggregate--5ms", "events-1e3ms"} {
		if m, err := ParseMulticastText(bad); err == nil {
			t.Errorf("ParseMulticastText(%q) = %+v, want an error", bad, m)
		}
	}
}

func FuzzParseMulticastText(f *testing.F) {
	f.Add("aggregate-5000ms")
	f.Add("events-1ms")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMulticastText(s)
		if err != nil {
			return
		}
		if m.Timeout < time.Millisecond || m.Timeout > MaxMulticastTimeout {
			t.Fatalf("%q: timeout %v out of range", s, m.Timeout)
		}
		if again, err := ParseMulticastText(m.Text()); err != nil || again != m {
			t.Fatalf("%q: round trip %+v, %v", s, again, err)
		}
	})
}
