package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/testenv"
)

// `make package` builds a Debian package with the binary, the units, the
// configuration, the completions and the manual pages. In CI (a machine of
// its own) it is really installed with dpkg, run and purged; elsewhere it is
// unpacked into a temporary directory instead, so a developer's /usr stays
// untouched.
func TestDebianPackage(t *testing.T) {
	testenv.RequireCommand(t, "make", "make")
	dpkg := testenv.RequireCommand(t, "dpkg", "dpkg")
	dpkgDeb := testenv.RequireCommand(t, "dpkg-deb", "dpkg")
	if testing.Short() {
		t.Skip("builds the package")
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if b, err := exec.CommandContext(ctx, "make", "-C", root, "package", "PKG_OUT="+out, "PKG_BIN="+makeBinary(t),
		"VERSION=v1.2.3-test").CombinedOutput(); err != nil {
		t.Fatalf("make package: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "rspxdp_1.2.3~test_*.deb"))
	if len(debs) != 1 {
		entries, _ := os.ReadDir(out)
		t.Fatalf("want one rspxdp_1.2.3~test_ARCH.deb, have %v", entries)
	}
	deb := debs[0]
	list, err := exec.Command(dpkgDeb, "-c", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb -c: %v\n%s", err, list)
	}
	files := []string{
		"/usr/bin/rspxdp",
		"/lib/systemd/system/rspxdp-node.service",
		"/lib/systemd/system/rspxdp-registrar.service",
		"/etc/rspxdp/rspxdp.yaml",
		"/usr/share/doc/rspxdp/rspxdp.example.yaml",
		"/usr/share/doc/rspxdp/grafana-dashboard.json",
		"/usr/share/bash-completion/completions/rspxdp",
		"/usr/share/zsh/vendor-completions/_rspxdp",
		"/usr/share/fish/vendor_completions.d/rspxdp.fish",
		"/usr/share/man/man1/rspxdp.1.gz",
		"/usr/share/man/man1/rspxdp-node.1.gz",
		"/usr/share/man/man1/rspxdp-registrar.1.gz",
	}
	for _, f := range files {
		if !strings.Contains(string(list), "."+f+"\n") {
			t.Errorf("package lacks %s", f)
		}
	}
	conf, _ := exec.Command(dpkgDeb, "-I", deb, "conffiles").CombinedOutput()
	if !strings.Contains(string(conf), "/etc/rspxdp/rspxdp.yaml") {
		t.Errorf("/etc/rspxdp/rspxdp.yaml is not a conffile: %q", conf)
	}
	wantVersion := regexp.MustCompile(`^rspxdp ` + regexp.QuoteMeta(testVersion) + ` \(commit ` + testCommit + `, go`)

	if !testenv.InCI() {
		dir := t.TempDir()
		if b, err := exec.Command(dpkgDeb, "-x", deb, dir).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb -x: %v\n%s", err, b)
		}
		v, err := exec.Command(filepath.Join(dir, "usr/bin/rspxdp"), "--version").CombinedOutput()
		if err != nil || !wantVersion.Match(v) {
			t.Errorf("packaged rspxdp --version: %v %q", err, v)
		}
		return
	}
	testenv.RequireRoot(t)
	if exec.Command(dpkg, "-s", "rspxdp").Run() == nil {
		t.Fatal("an rspxdp package is already installed: not replacing and purging it")
	}
	if _, err := os.Stat("/usr/bin/rspxdp"); err == nil {
		t.Fatal("/usr/bin/rspxdp exists outside the package: not overwriting it")
	}
	if b, err := exec.Command(dpkg, "-i", deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, b)
	}
	purged := false
	t.Cleanup(func() {
		if !purged {
			_ = exec.Command(dpkg, "--purge", "rspxdp").Run()
		}
	})
	v, err := exec.Command("/usr/bin/rspxdp", "--version").CombinedOutput()
	if err != nil || !wantVersion.Match(v) {
		t.Errorf("installed rspxdp --version: %v %q", err, v)
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("after dpkg -i: %v", err)
		}
	}
	if b, err := exec.Command(dpkg, "--purge", "rspxdp").CombinedOutput(); err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, b)
	}
	purged = true
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s still there after dpkg --purge", f)
		}
	}
}

// The completion scripts and manual pages come from the commands' own
// FlagSets: every flag of `rspxdp node` is in them.
func TestCompletionAndManPages(t *testing.T) {
	docs := commandDocs()
	var nodeFlags []string
	for _, d := range docs {
		if d.name == "node" {
			for _, f := range d.flags {
				nodeFlags = append(nodeFlags, dashes(f.Name)+f.Name)
			}
		}
	}
	if len(nodeFlags) < 20 {
		t.Fatalf("node has only %d flags in the docs: %v", len(nodeFlags), nodeFlags)
	}
	code, bash, _ := runCLI(t, "completion", "bash")
	if code != 0 {
		t.Fatalf("completion bash exited %d", code)
	}
	for _, f := range append(nodeFlags, "--metrics", "--keep-on-exit") {
		if !strings.Contains(bash, " "+f+" ") && !strings.Contains(bash, "\""+f+" ") {
			t.Errorf("bash completion lacks %s", f)
		}
	}
	if sh, err := exec.LookPath("bash"); err == nil {
		script := bash + "\nCOMP_WORDS=(rspxdp node --metr); COMP_CWORD=2; _rspxdp; echo \"${COMPREPLY[@]}\"\n" +
			"COMP_WORDS=(rspxdp regi); COMP_CWORD=1; _rspxdp; echo \"${COMPREPLY[@]}\"\n"
		out, err := exec.Command(sh, "-c", script).CombinedOutput()
		if err != nil || string(out) != "--metrics\nregistrar\n" {
			t.Errorf("bash completion answered %q (%v), want --metrics and registrar", out, err)
		}
	}
	for _, shell := range []string{"zsh", "fish"} {
		if code, s, _ := runCLI(t, "completion", shell); code != 0 || !strings.Contains(s, "keep-on-exit") {
			t.Errorf("completion %s: exit %d, no keep-on-exit", shell, code)
		}
	}
	dir := t.TempDir()
	if code, _, errs := runCLI(t, "man", dir); code != 0 {
		t.Fatalf("man: exit %d: %s", code, errs)
	}
	page, err := os.ReadFile(filepath.Join(dir, "rspxdp-node.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".TH RSPXDP-NODE 1", ".SH OPTIONS", `\fB\-\-keep\-on\-exit\fR`, `\fB\-i\fR`, "Examples:"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("rspxdp-node.1 lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "rspxdp.1")); err != nil {
		t.Error(err)
	}
	detach, err := os.ReadFile(filepath.Join(dir, "rspxdp-node-detach.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".TH RSPXDP-NODE-DETACH 1", `rspxdp node detach`, `\fB\-\-pin\-dir\fR`} {
		if !strings.Contains(string(detach), want) {
			t.Errorf("rspxdp-node-detach.1 lacks %q:\n%s", want, detach)
		}
	}
}
