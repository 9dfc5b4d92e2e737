package node

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// YAML decoding errors in the file's own terms. The YAML library reports
// "line 3: cannot unmarshal !!str `abc` into uint32" and "field x not found
// in type node.RegistrarConfig": Go types an operator cannot act on. These
// functions find the field at that line in the document and say what it
// wants: "line 3: registrar.id: "abc" is not a whole number from 0 to
// 4294967295".

var (
	yamlLine      = regexp.MustCompile(`^line (\d+): (.*)$`)
	yamlTypeErr   = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
	yamlNoField   = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	yamlAlreadSet = regexp.MustCompile(`^mapping key "(.*)" already defined at line \d+$`)
)

// explainYAML rewrites err, from decoding doc, naming fields instead of Go
// types; an error it does not recognise is returned as it is.
func explainYAML(err error, doc []byte) error {
	var root yaml.Node
	_ = yaml.Unmarshal(doc, &root) // best effort: only to find field names
	var lines []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		lines = te.Errors
	} else {
		lines = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		out = append(out, explainLine(l, &root))
	}
	return errors.New(strings.Join(out, "; "))
}

func explainLine(l string, root *yaml.Node) string {
	m := yamlLine.FindStringSubmatch(l)
	if m == nil {
		return l
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2]
	if t := yamlTypeErr.FindStringSubmatch(msg); t != nil {
		val := t[2]
		kind := map[string]yaml.Kind{"seq": yaml.SequenceNode, "map": yaml.MappingNode}[t[1]]
		path := fieldAt(root, line, func(k, v *yaml.Node) bool {
			if val != "" || kind == 0 {
				return v.Line == line && v.Kind == yaml.ScalarNode && v.Value == val
			}
			return v.Line == line && v.Kind == kind
		})
		got := "a " + map[string]string{"seq": "list", "map": "mapping"}[t[1]]
		if val != "" {
			got = strconv.Quote(val)
		} else if got == "a " {
			got = "a " + t[1]
		}
		if path == "" {
			path = "the document"
		}
		return fmt.Sprintf("line %d: %s: %s is not %s", line, path, got, wantOf(t[3]))
	}
	if f := yamlNoField.FindStringSubmatch(msg); f != nil {
		path := fieldAt(root, line, func(k, _ *yaml.Node) bool { return k.Line == line && k.Value == f[1] })
		return fmt.Sprintf("line %d: %s: unknown field (misspelt? see rspxdp.example.yaml)", line, path)
	}
	if f := yamlAlreadSet.FindStringSubmatch(msg); f != nil {
		path := fieldAt(root, line, func(k, _ *yaml.Node) bool { return k.Line == line && k.Value == f[1] })
		return fmt.Sprintf("line %d: %s: given twice", line, path)
	}
	// The field's own UnmarshalYAML said what is wrong ("... is not a
	// duration"): add which field.
	path := fieldAt(root, line, func(k, v *yaml.Node) bool { return k != v && v.Line == line })
	if path == "" {
		return l
	}
	return fmt.Sprintf("line %d: %s: %s", line, path, msg)
}

// wantOf says in words what a Go type the YAML library names accepts.
func wantOf(goType string) string {
	switch goType {
	case "uint8", "uint16", "uint32", "uint64", "uint":
		bits := map[string]int{"uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64, "uint": 64}[goType]
		return fmt.Sprintf("a whole number from 0 to %d", uint64(1)<<bits-1)
	case "int", "int8", "int16", "int32", "int64":
		return "a whole number"
	case "float32", "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "string":
		return "a string (quote it)"
	}
	if strings.HasPrefix(goType, "[]") {
		return "a list"
	}
	if strings.HasPrefix(goType, "map[") || strings.Contains(goType, ".") {
		return "a mapping of fields"
	}
	return "of the kind this field takes"
}

// fieldAt returns the dotted path ("registrar.peers[1]") of the deepest
// key/value pair (a list item is its own key) in the document for which
// match holds; "" when none does.
func fieldAt(root *yaml.Node, line int, match func(k, v *yaml.Node) bool) string {
	var walk func(n *yaml.Node, path string) (string, bool)
	walk = func(n *yaml.Node, path string) (string, bool) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if p, ok := walk(c, path); ok {
					return p, true
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if q, ok := walk(v, p); ok {
					return q, true // the deepest field on the line
				}
				if match(k, v) {
					return p, true
				}
			}
		case yaml.SequenceNode:
			for i, v := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if q, ok := walk(v, p); ok {
					return q, true
				}
				if match(v, v) {
					return p, true
				}
			}
		}
		return "", false
	}
	p, _ := walk(root, "")
	return p
}
