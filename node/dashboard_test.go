package node

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rspxdp/rspxdp/internal/testenv"
)

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Query any `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

var metricName = regexp.MustCompile(`\b(?:rspxdp|go|process)_[a-z_]+\b`)

// Every metric deploy/grafana/rspxdp.json queries exists on a node's
// registry, with the labels the queries group by: a renamed metric or
// label shows up here, not as an empty panel in production.
func TestDashboardQueriesExist(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "rspxdp.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	m, _ := testMetrics(t)
	have := gather(t, m)
	var exprs []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(string); ok {
			exprs = append(exprs, q)
		}
	}
	byLabel := regexp.MustCompile(`by \(([a-z_, ]+)\)`)
	checked := 0
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			base := name
			series, ok := have[base]
			if !ok {
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if s, found := have[strings.TrimSuffix(name, suf)]; found && strings.HasSuffix(name, suf) {
						base, series, ok = strings.TrimSuffix(name, suf), s, true
					}
				}
			}
			if !ok {
				t.Errorf("dashboard queries %s, which no registry exports (in %q)", name, e)
				continue
			}
			checked++
			for _, g := range byLabel.FindAllStringSubmatch(e, -1) {
				for _, l := range strings.Split(g[1], ",") {
					l = strings.TrimSpace(l)
					if l == "le" || l == "instance" {
						continue // added by the histogram and by Prometheus
					}
					found := false
					for labels := range series {
						if strings.Contains(labels, l+"=") {
							found = true
						}
					}
					if !found {
						t.Errorf("%q groups %s by %q, a label it does not have", e, base, l)
					}
				}
			}
		}
	}
	if checked < 15 {
		t.Errorf("only %d metric references checked: the dashboard lost its panels?", checked)
	}
}
