package sitefile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// parser walks the YAML node tree of one site file and collects every
// problem it finds instead of stopping at the first.
type parser struct {
	file string
	errs []*Error
}

func (p *parser) errorf(line int, field, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// syntaxLine matches yaml.v3's syntax errors, "yaml: line 3: did not find
// expected key".
var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data and returns the root mapping's node, or nil when the
// file is empty or does not parse (then the problem is recorded).
func (p *parser) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file
		}
		p.syntaxError(err)
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.syntaxError(err)
		return nil
	case len(next.Content) > 0:
		p.errorf(next.Line, "", "a site file holds one YAML document; found another")
		return nil
	}
	if len(doc.Content) == 0 {
		return nil
	}
	return doc.Content[0]
}

func (p *parser) syntaxError(err error) {
	msg := strings.TrimSpace(err.Error())
	if m := syntaxLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.errorf(line, "", "invalid YAML: %s", m[2])
		return
	}
	p.errorf(0, "", "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// isNull reports an absent or explicitly empty value ("key:" or "key: null").
func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// kindOf names a node's type for messages.
func kindOf(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("string %q", n.Value)
		case "!!int":
			return "integer " + n.Value
		case "!!float":
			return "number " + n.Value
		case "!!bool":
			return "boolean " + n.Value
		case "!!null":
			return "null"
		default:
			return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
		}
	}
	return "an unexpected YAML node"
}

// entry is one key of a mapping.
type entry struct {
	key   string
	line  int        // the key's line
	value *yaml.Node // resolved
}

// entries returns the keys of a mapping in order, reporting non-string and
// duplicate keys. With known set, other keys are reported as unknown and
// left out.
func (p *parser) entries(n *yaml.Node, field string, known ...string) []entry {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, field, "must be a mapping, got %s", kindOf(n))
		return nil
	}
	first := map[string]int{}
	var out []entry
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			p.errorf(k.Line, field, "merge keys (<<) are not supported; write the fields out")
			continue
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			p.errorf(k.Line, field, "keys must be strings, got %s", kindOf(k))
			continue
		}
		f := join(field, k.Value)
		if line, dup := first[k.Value]; dup {
			p.errorf(k.Line, f, "duplicate key (first at line %d)", line)
			continue
		}
		first[k.Value] = k.Line
		if len(known) > 0 && !slices.Contains(known, k.Value) {
			if guess := suggest(k.Value, known); guess != "" {
				p.errorf(k.Line, f, "unknown field; did you mean %s?", guess)
			} else {
				p.errorf(k.Line, f, "unknown field; known fields are %s", strings.Join(known, ", "))
			}
			continue
		}
		out = append(out, entry{key: k.Value, line: k.Line, value: v})
	}
	return out
}

// fields is entries as a map, for fixed schemas.
func (p *parser) fields(n *yaml.Node, field string, known ...string) map[string]entry {
	m := map[string]entry{}
	for _, e := range p.entries(n, field, known...) {
		m[e.key] = e
	}
	return m
}

// items returns the elements of a list.
func (p *parser) items(n *yaml.Node, field string) []*yaml.Node {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		p.errorf(n.Line, field, "must be a list, got %s", kindOf(n))
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		out[i] = resolve(c)
	}
	return out
}

// str returns a string scalar.
func (p *parser) str(n *yaml.Node, field string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.errorf(n.Line, field, "must be a string, got %s", kindOf(n))
		return "", false
	}
	return n.Value, true
}

// integer returns an integer scalar.
func (p *parser) integer(n *yaml.Node, field string) (int, bool) {
	n = resolve(n)
	var v int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		p.errorf(n.Line, field, "must be an integer, got %s", kindOf(n))
		return 0, false
	}
	return v, true
}

// boolean returns a boolean scalar: true or false (YAML 1.2: yes, no,
// on and off are strings, and refused).
func (p *parser) boolean(n *yaml.Node, field string) (bool, bool) {
	n = resolve(n)
	var v bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&v) != nil {
		p.errorf(n.Line, field, "must be true or false, got %s", kindOf(n))
		return false, false
	}
	return v, true
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

func index(field string, i int) string {
	return fmt.Sprintf("%s[%d]", field, i)
}

// suggest returns the known field nearest to an unknown key, when it is
// near enough to be a typo: the same but for case, or at most two edits
// away.
func suggest(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return k
		}
		if d := editDistance(strings.ToLower(key), strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
