package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
)

// Pod config flags (redirect.c).
const (
	podExcludePorts = 1
	podExcludeCIDRs = 2
	maxLevels       = 32
)

// Exclusions are destinations a pod's connections never get redirected
// to, even when they are services (the config.skiff.io/ annotations for
// excluded outbound ports and CIDRs).
type Exclusions struct {
	Ports []uint16       `json:"ports,omitempty"`
	CIDRs []netip.Prefix `json:"cidrs,omitempty"`
}

// Validate reports ports and prefixes the programs cannot match.
func (e Exclusions) Validate() error {
	var errs []error
	for _, p := range e.Ports {
		if p == 0 {
			errs = append(errs, errors.New("excluded port 0"))
		}
	}
	for _, p := range e.CIDRs {
		if !p.IsValid() || p.Addr().Zone() != "" {
			errs = append(errs, fmt.Errorf("excluded CIDR %s: not a valid prefix", p))
		}
	}
	return errors.Join(errs...)
}

// podEntries is what the maps hold for one pod, indexed in memory so that
// changing or clearing a pod does not scan the maps.
type podEntries struct {
	config redirectPodConfig
	ports  []redirectPortKey
	cidrs  []redirectCidrKey
}

// SetExclusions replaces the exclusions of the pod whose cgroup is at
// cgroupPath; they apply to every process in it and below it. It may be
// called before or after Attach. Empty exclusions remove the entry.
func (r *Redirector) SetExclusions(cgroupPath string, ex Exclusions) error {
	if err := ex.Validate(); err != nil {
		return err
	}
	cg, err := statCgroup(cgroupPath)
	if err != nil {
		return err
	}
	if cg.level < 0 && (len(ex.Ports) > 0 || len(ex.CIDRs) > 0) {
		return fmt.Errorf("cgroup %s: its level in the hierarchy is unknown (its cgroup2 mount shows a cgroup outside this process's cgroup namespace); mount the hierarchy's root for exclusions to work", cg.path)
	}
	if cg.level >= maxLevels {
		return fmt.Errorf("cgroup %s is %d levels deep; exclusions work up to level %d", cg.path, cg.level, maxLevels-1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	idx, err := r.podIndex()
	if err != nil {
		return err
	}
	next := &podEntries{config: redirectPodConfig{Level: uint32(max(cg.level, 0))}}
	for _, p := range ex.Ports {
		k := portKey(cg.id, p)
		if !slices.Contains(next.ports, k) {
			next.ports = append(next.ports, k)
		}
		next.config.Flags |= podExcludePorts
	}
	for _, p := range ex.CIDRs {
		k := cidrKey(cg.id, p)
		if !slices.Contains(next.cidrs, k) {
			next.cidrs = append(next.cidrs, k)
		}
		next.config.Flags |= podExcludeCIDRs
	}
	// New entries first, then the flags that make the programs look, then
	// stale entries go: no moment without the exclusions in both sets.
	for _, k := range next.ports {
		if err := r.objs.ExclPorts.Put(k, uint8(1)); err != nil {
			return explain(fmt.Sprintf("exclude port %d for %s", k.Port, cg.path), err, r.cfg.PinDir)
		}
	}
	for _, k := range next.cidrs {
		if err := r.objs.ExclCidrs.Put(k, uint8(1)); err != nil {
			_, p := prefixOf(k)
			return explain(fmt.Sprintf("exclude %s for %s", p, cg.path), err, r.cfg.PinDir)
		}
	}
	old := idx[cg.id]
	if next.config.Flags == 0 {
		if old == nil {
			return nil
		}
		return r.removePod(cg.id)
	}
	if err := r.objs.Pods.Put(cg.id, next.config); err != nil {
		return explain("write pod config", err, r.cfg.PinDir)
	}
	idx[cg.id] = next
	if err := r.setLevels(levelsOf(idx)); err != nil {
		return err
	}
	if old != nil {
		return r.deleteEntries(
			slices.DeleteFunc(old.ports, func(k redirectPortKey) bool { return slices.Contains(next.ports, k) }),
			slices.DeleteFunc(old.cidrs, func(k redirectCidrKey) bool { return slices.Contains(next.cidrs, k) }))
	}
	return nil
}

// Exclusions returns the exclusions of the pod at cgroupPath.
func (r *Redirector) Exclusions(cgroupPath string) (Exclusions, error) {
	cg, err := statCgroup(cgroupPath)
	if err != nil {
		return Exclusions{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	idx, err := r.podIndex()
	if err != nil {
		return Exclusions{}, err
	}
	var ex Exclusions
	pe := idx[cg.id]
	if pe == nil {
		return ex, nil
	}
	for _, k := range pe.ports {
		ex.Ports = append(ex.Ports, k.Port)
	}
	for _, k := range pe.cidrs {
		_, p := prefixOf(k)
		ex.CIDRs = append(ex.CIDRs, p)
	}
	slices.Sort(ex.Ports)
	slices.SortFunc(ex.CIDRs, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return ex, nil
}

// clearExclusions forgets a pod's exclusions (on detach).
func (r *Redirector) clearExclusions(id uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	idx, err := r.podIndex()
	if err != nil {
		return err
	}
	if idx[id] == nil {
		return nil
	}
	return r.removePod(id)
}

// removePod deletes a pod's config, then its entries, and recomputes the
// levels to look at. r.mu is held.
func (r *Redirector) removePod(id uint64) error {
	pe := r.index[id]
	if err := r.objs.Pods.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return explain("remove pod config", err, r.cfg.PinDir)
	}
	delete(r.index, id)
	if err := r.setLevels(levelsOf(r.index)); err != nil {
		return err
	}
	return r.deleteEntries(pe.ports, pe.cidrs)
}

func (r *Redirector) deleteEntries(ports []redirectPortKey, cidrs []redirectCidrKey) error {
	var errs []error
	for _, k := range ports {
		if err := r.objs.ExclPorts.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, explain("remove excluded port", err, r.cfg.PinDir))
		}
	}
	for _, k := range cidrs {
		if err := r.objs.ExclCidrs.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, explain("remove excluded CIDR", err, r.cfg.PinDir))
		}
	}
	return errors.Join(errs...)
}

// podIndex returns the in-memory index of the pod maps, reading the pinned
// maps once (another process may have filled them). r.mu is held.
func (r *Redirector) podIndex() (map[uint64]*podEntries, error) {
	if r.index != nil {
		return r.index, nil
	}
	idx := map[uint64]*podEntries{}
	get := func(id uint64) *podEntries {
		if idx[id] == nil {
			idx[id] = &podEntries{}
		}
		return idx[id]
	}
	var id uint64
	var pc redirectPodConfig
	it := r.objs.Pods.Iterate()
	for it.Next(&id, &pc) {
		get(id).config = pc
	}
	if err := it.Err(); err != nil {
		return nil, explain("read pod configs", err, r.cfg.PinDir)
	}
	var pk redirectPortKey
	var one uint8
	it = r.objs.ExclPorts.Iterate()
	for it.Next(&pk, &one) {
		pe := get(pk.Cgroup)
		pe.ports = append(pe.ports, pk)
	}
	if err := it.Err(); err != nil {
		return nil, explain("read excluded ports", err, r.cfg.PinDir)
	}
	var ck redirectCidrKey
	it = r.objs.ExclCidrs.Iterate()
	for it.Next(&ck, &one) {
		id, _ := prefixOf(ck)
		pe := get(id)
		pe.cidrs = append(pe.cidrs, ck)
	}
	if err := it.Err(); err != nil {
		return nil, explain("read excluded CIDRs", err, r.cfg.PinDir)
	}
	r.index = idx
	return idx, nil
}

func levelsOf(idx map[uint64]*podEntries) uint32 {
	var levels uint32
	for _, pe := range idx {
		if pe.config.Flags != 0 && pe.config.Level < maxLevels {
			levels |= 1 << pe.config.Level
		}
	}
	return levels
}

// setLevels stores which cgroup levels hold pod configs. r.mu is held.
func (r *Redirector) setLevels(levels uint32) error {
	var s redirectSettings
	if err := r.objs.Settings.Lookup(uint32(0), &s); err != nil {
		return explain("read settings", err, r.cfg.PinDir)
	}
	if s.PodLevels == levels {
		return nil
	}
	s.PodLevels = levels
	if err := r.objs.Settings.Put(uint32(0), &s); err != nil {
		return explain("write settings", err, r.cfg.PinDir)
	}
	return nil
}
