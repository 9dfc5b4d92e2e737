package msg_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/rspxdp/rspxdp/internal/testenv"
)

// TestClientLinksNoRegistrar: the client library (asap) and this package
// link no registrar code; the typed messages live here so that a PE or PU
// does not need package enrp.
func TestClientLinksNoRegistrar(t *testing.T) {
	goTool := testenv.RequireCommand(t, "go", "golang-go")
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	const registrar = "github.com/rspxdp/rspxdp/enrp"
	for _, pkg := range []string{"./asap", "./msg"} {
		cmd := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", pkg)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == registrar {
				t.Errorf("%s depends on %s", pkg, registrar)
			}
		}
	}
}
