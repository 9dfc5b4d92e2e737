package vm

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rspxdp/rspxdp/internal/testenv"
)

// readPackages parses vm/packages.txt: package name -> scope.
func readPackages(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("packages.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			t.Errorf("packages.txt:%d: %q: want \"package scope\"", n, line)
			continue
		}
		switch fields[1] {
		case "all", "vm", "dev":
		default:
			t.Errorf("packages.txt:%d: scope %q: want all, vm or dev", n, fields[1])
		}
		if _, dup := out[fields[0]]; dup {
			t.Errorf("packages.txt:%d: %s listed twice", n, fields[0])
		}
		out[fields[0]] = fields[1]
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPackageList keeps the one list the test VM and the Vagrant box share
// honest: what the scenarios and the guest init run must be in both, the
// kernel only in the image, the build tools only in the Vagrant box.
func TestPackageList(t *testing.T) {
	pkgs := readPackages(t)
	for pkg, scope := range map[string]string{
		"rsplib-registrar":        "all",
		"rsplib-services":         "all",
		"rsplib-tools":            "all",
		"tcpdump":                 "all",
		"iproute2":                "all",
		"kmod":                    "all",
		"procps":                  "all",
		"linux-image-cloud-amd64": "vm",
		"clang":                   "dev",
		"bpftool":                 "dev",
		"tshark":                  "dev",
	} {
		if got := pkgs[pkg]; got != scope {
			t.Errorf("packages.txt: %s has scope %q, want %q", pkg, got, scope)
		}
	}
}

// TestVagrantfileValidates runs `vagrant validate` on the Vagrantfile (with
// provider settings ignored: no provider can run here). It catches unknown
// settings and a provisioning script that is not where the file says.
func TestVagrantfileValidates(t *testing.T) {
	vagrant := testenv.RequireCommand(t, "vagrant", "vagrant")
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(vagrant, "validate", "--ignore-provider")
	cmd.Dir = root
	// Keep vagrant's state out of the checkout and out of $HOME.
	tmp := t.TempDir()
	cmd.Env = append(os.Environ(),
		"VAGRANT_HOME="+filepath.Join(tmp, "home"),
		"VAGRANT_DOTFILE_PATH="+filepath.Join(tmp, "dot"),
		"VAGRANT_CHECKPOINT_DISABLE=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "validated successfully") {
		t.Fatalf("vagrant validate: %v\n%s", err, out)
	}
}

// TestGuestJSONKeepsStderrApart: every rspxdp command in the guest scripts
// that writes --json to a file must send its stderr elsewhere, because the
// pool user and the status command log warnings (for example that TLS is
// off) on stderr, and one such line in front of the JSON makes the file
// unreadable for the host side. A CI run lost five scenarios to this.
func TestGuestJSONKeepsStderrApart(t *testing.T) {
	scripts, err := filepath.Glob(filepath.Join("guest", "scenarios", "*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	scripts = append(scripts, filepath.Join("guest", "lib.sh"))
	checked := 0
	for _, path := range scripts {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for n, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, "rspxdp ") || !strings.Contains(line, "--json >") {
				continue
			}
			checked++
			if strings.Contains(line, "2>&1") {
				t.Errorf("%s:%d: --json output and stderr go to one file: %s", path, n+1, strings.TrimSpace(line))
			}
		}
	}
	if checked == 0 {
		t.Fatal("no guest script writes rspxdp --json to a file; the check has nothing to look at")
	}
}
