package inject

import (
	"encoding/json"
	"slices"
)

// Status is the value of the skiff.io/status annotation: what the injector
// added to the pod, so that a second pass (or a human) can tell.
type Status struct {
	Version        int      `json:"version"`
	Containers     []string `json:"containers"`
	InitContainers []string `json:"initContainers"`
	Volumes        []string `json:"volumes"`
}

// StatusVersion is the current Status.Version.
const StatusVersion = 1

// String renders s as compact JSON with sorted, non-nil lists.
func (s Status) String() string {
	norm := func(l []string) []string {
		l = slices.Clone(l)
		if l == nil {
			l = []string{}
		}
		slices.Sort(l)
		return l
	}
	s.Containers = norm(s.Containers)
	s.InitContainers = norm(s.InitContainers)
	s.Volumes = norm(s.Volumes)
	b, _ := json.Marshal(s) // a struct of strings and ints always marshals
	return string(b)
}
