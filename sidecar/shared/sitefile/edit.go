package sitefile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"

	"gopkg.in/yaml.v3"
)

// ErrNoLink is returned by [RemoveLink] for a token no entry of links
// names.
var ErrNoLink = errors.New("no such link")

// AddLink returns data, the contents of a site file, with the link
// {token: token, cost: cost} appended to its links. token is written as
// given: a path relative to the site file's directory, or absolute.
//
// The edit goes through yaml.v3's node tree, so comments stay with what
// they describe and nothing else changes, but the document is written
// out anew: two-space indentation, one space before a line comment, no
// blank lines. A links list that is missing is added before listeners,
// connectors or routing (else at the end); the new entry takes the flow
// style ({token: ..., cost: ...}) when the entry before it has it. A links
// that is an alias, or has an anchor, is refused.
//
// AddLink does not validate the result: [Replace] does.
func AddLink(data []byte, token string, cost int) ([]byte, error) {
	return edit(data, func(root *yaml.Node) error {
		entry := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
			scalar("!!str", "token"), scalar("!!str", token),
			scalar("!!str", "cost"), scalar("!!int", strconv.Itoa(cost)),
		}}
		i := keyIndex(root, "links")
		if i < 0 {
			at := len(root.Content)
			for _, k := range []string{"listeners", "connectors", "routing"} {
				if j := keyIndex(root, k); j >= 0 && j < at {
					at = j
				}
			}
			seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: []*yaml.Node{entry}}
			root.Content = slices.Insert(root.Content, at, scalar("!!str", "links"), seq)
			return nil
		}
		links := root.Content[i+1]
		if err := editable(links); err != nil {
			return err
		}
		switch {
		case isNull(links):
			root.Content[i+1] = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: []*yaml.Node{entry},
				LineComment: links.LineComment, FootComment: links.FootComment}
		case links.Kind != yaml.SequenceNode:
			return fmt.Errorf("line %d: links is %s, not a list: fix it by hand", links.Line, kindOf(links))
		case len(links.Content) == 0:
			links.Style = 0 // links: [] becomes a block list
			links.Content = []*yaml.Node{entry}
		default:
			entry.Style = links.Content[len(links.Content)-1].Style & yaml.FlowStyle
			links.Content = append(links.Content, entry)
		}
		return nil
	})
}

// RemoveLink returns data, the contents of the site file at path, without
// the entry of links whose token is token: an absolute path, as
// [Site.Links] holds it (the entry's token may be relative to the site
// file's directory). Its comments go with it; the rest is kept as
// [AddLink] keeps it. A token no entry names is [ErrNoLink]. Removing the
// last entry leaves "links: []".
func RemoveLink(path string, data []byte, token string) ([]byte, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("site file %s: %w", path, err)
	}
	dir := filepath.Dir(abs)
	return edit(data, func(root *yaml.Node) error {
		i := keyIndex(root, "links")
		if i < 0 || root.Content[i+1].Kind != yaml.SequenceNode {
			return fmt.Errorf("%s: no links entry dials %s: %w", path, token, ErrNoLink)
		}
		links := root.Content[i+1]
		if err := editable(links); err != nil {
			return err
		}
		for j, item := range links.Content {
			if t := mapValue(resolve(item), "token"); t != nil && t.Kind == yaml.ScalarNode && resolvePath(dir, t.Value) == token {
				links.Content = slices.Delete(links.Content, j, j+1)
				return nil
			}
		}
		return fmt.Errorf("%s: no links entry dials %s: %w", path, token, ErrNoLink)
	})
}

// edit applies change to the root mapping of data, one YAML document,
// and encodes the result.
func edit(data []byte, change func(root *yaml.Node) error) ([]byte, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, next yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("site file: invalid YAML: %w", err)
	}
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		return nil, errors.New("site file: holds more than one YAML document")
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("site file: not a YAML mapping")
	}
	if err := change(doc.Content[0]); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("site file: encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("site file: encode: %w", err)
	}
	return b.Bytes(), nil
}

// editable refuses to edit a links that is an alias or has an anchor:
// the edit would change what another part of the file says.
func editable(links *yaml.Node) error {
	switch {
	case links.Kind == yaml.AliasNode:
		return fmt.Errorf("line %d: links is an alias (*%s): edit the site file by hand", links.Line, links.Value)
	case links.Anchor != "":
		return fmt.Errorf("line %d: links has an anchor (&%s) that other parts of the file may alias: edit the site file by hand", links.Line, links.Anchor)
	}
	return nil
}

// keyIndex returns the index in a mapping's Content of key's key node,
// -1 if it has none.
func keyIndex(m *yaml.Node, key string) int {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			return i
		}
	}
	return -1
}

// mapValue returns the value of key in mapping m, nil if it has none or m
// is no mapping.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	if i := keyIndex(m, key); i >= 0 {
		return resolve(m.Content[i+1])
	}
	return nil
}

func scalar(tag, value string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
}
