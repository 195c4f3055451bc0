package router

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/names"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

// frame length-prefixes b as readMsg expects.
func frame(b []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
	return append(out, b...)
}

// FuzzHello: whatever a peer sends as its hello, reading and checking it
// neither panics nor admits a name the site file would refuse.
func FuzzHello(f *testing.F) {
	f.Add(frame([]byte(`{"v":2,"site":"west","role":"gateway","cost":1,"linkID":"0123456789abcdef","index":0,"pool":2}`)))
	f.Add(frame([]byte(`{"v":2,"site":"east","router":"shop/frontend-1","role":"member","cost":1,"linkID":"0123456789abcdef","pool":1}`)))
	f.Add(frame([]byte(`{"v":2,"site":"../../x","role":"gateway","cost":1099511627776,"linkID":"x","pool":1000,"index":999}`)))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var hl hello
		if err := readMsgLimit(bytes.NewReader(b), &hl, maxHello); err != nil {
			return
		}
		if checkHello(hl) != nil {
			return
		}
		if names.CheckSite(hl.Site) != nil || (hl.Router != "" && names.CheckRouter(hl.Router) != nil) {
			t.Fatalf("checkHello admitted site %q, router %q", hl.Site, hl.Router)
		}
		if hl.Cost < 1 || hl.Cost > netview.MaxCost || hl.Pool > maxPool || hl.Index >= hl.Pool || len(hl.LinkID) != 16 {
			t.Fatalf("checkHello admitted %+v", hl)
		}
	})
}

// FuzzControl: a control message from a linked peer goes through the same
// steps as on a link (decode, open each record, apply it to a DB) without
// a panic, and only validly signed records get into the DB.
func FuzzControl(f *testing.F) {
	key := newMalloryKey(f)
	s, err := netview.Sign(netview.Record{Site: "west", Epoch: 1, Seq: 1, Links: map[string]int{"east": 1}, Addresses: map[string]int{"backend": 2}}, key)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(controlMsg{Records: [][]byte{s.Wire()}})
	f.Add(frame(good))
	f.Add(frame([]byte(`{"records":["eyJ2IjoxfQ=="]}`)))
	f.Add(frame([]byte(`{"records":[null,"",[]]}`)))
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		var msg controlMsg
		if err := readMsg(bytes.NewReader(b), &msg); err != nil {
			return
		}
		db := netview.NewDB("east", 1)
		for _, rb := range msg.Records {
			rec, err := netview.Open(rb, now)
			if err != nil {
				continue
			}
			ok, err := db.Apply(rec)
			if err != nil && !errors.Is(err, netview.ErrKeyConflict) {
				t.Fatalf("Apply(opened record) error = %v", err)
			}
			if ok {
				if _, err := netview.Open(rec.Wire(), now); err != nil {
					t.Fatalf("stored record no longer opens: %v", err)
				}
			}
		}
		_ = db.View()
	})
}
