package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runCLI runs the binary's dispatcher in-process and returns exit status and
// both outputs.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), &cliEnv{stdout: &out, stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func TestDispatch(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{nil, 2, "Usage: rspxdp COMMAND", ""},
		{[]string{"--help"}, 0, "Commands:", ""},
		{[]string{"no-such-command"}, 2, "", `unknown command "no-such-command"`},
	} {
		code, out, errs := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.inStdout) || !strings.Contains(errs, tc.inStderr) {
			t.Errorf("rspxdp %v: code %d stdout %q stderr %q; want code %d, stdout containing %q, stderr containing %q",
				tc.args, code, out, errs, tc.code, tc.inStdout, tc.inStderr)
		}
	}
}
