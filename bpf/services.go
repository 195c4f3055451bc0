package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// SetServices makes services the set of destinations that are redirected.
// New entries are added before stale ones are removed, so a destination in
// both the old and the new set is redirected throughout; each entry changes
// atomically, the set as a whole does not.
func (r *Redirector) SetServices(services []netip.AddrPort) error {
	want := make(map[redirectSvcKey]bool, len(services))
	var errs []error
	for _, s := range services {
		if err := checkService(s); err != nil {
			errs = append(errs, err)
			continue
		}
		want[serviceKey(s)] = true
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if limit := r.objs.Services.MaxEntries(); uint32(len(want)) > limit {
		return fmt.Errorf("%d services do not fit the services map (%d entries; raise MaxServices)", len(want), limit)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	have, err := r.serviceKeys()
	if err != nil {
		return err
	}
	var add, del []redirectSvcKey
	for k := range want {
		if !have[k] {
			add = append(add, k)
		}
	}
	for k := range have {
		if !want[k] {
			del = append(del, k)
		}
	}
	if len(add) > 0 {
		vals := make([]redirectSvcValue, len(add))
		if _, err := r.objs.Services.BatchUpdate(add, vals, nil); err != nil {
			// Batch operations need Linux 5.6 for hash maps; fall back.
			for _, k := range add {
				if err := r.objs.Services.Put(k, redirectSvcValue{}); err != nil {
					return explain(fmt.Sprintf("add service %s", serviceOf(k)), err, r.cfg.PinDir)
				}
			}
		}
	}
	for _, k := range del {
		if err := r.objs.Services.Delete(k); err != nil {
			errs = append(errs, explain(fmt.Sprintf("remove service %s", serviceOf(k)), err, r.cfg.PinDir))
		}
	}
	return errors.Join(errs...)
}

// Services returns the redirected destinations, sorted.
func (r *Redirector) Services() ([]netip.AddrPort, error) {
	keys, err := r.serviceKeys()
	if err != nil {
		return nil, err
	}
	out := make([]netip.AddrPort, 0, len(keys))
	for k := range keys {
		out = append(out, serviceOf(k))
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out, nil
}

func (r *Redirector) serviceKeys() (map[redirectSvcKey]bool, error) {
	have := map[redirectSvcKey]bool{}
	var k redirectSvcKey
	var v redirectSvcValue
	it := r.objs.Services.Iterate()
	for it.Next(&k, &v) {
		have[k] = true
	}
	if err := it.Err(); err != nil {
		return nil, explain("read services", err, r.cfg.PinDir)
	}
	return have, nil
}
