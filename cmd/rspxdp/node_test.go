package main

import (
	"strings"
	"testing"
)

func TestNodeRefusesBadConfiguration(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--vip", "web=10.0.0.1:80/tcp"}, "dataplane.interfaces"},
		{[]string{"-i", "eth0"}, "vips: none"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1/tcp"}, "vip \"web=10.0.0.1/tcp\": address"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80/gre"}, "protocol"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--mode", "fast"}, "dataplane.mode"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--table-size", "1000"}, "not prime"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--seed", "x"}, "--seed"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--bgp-peer", "10.0.0.1"}, "--bgp-peer"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--bgp-peer", "10.0.0.1,asn=65000"}, "bgp.asn: required"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--bgp-asn", "65001", "--bgp-router-id", "10.0.0.2",
			"--bgp-peer", "10.0.0.1,asn=65000,hold-time=1s"}, "bgp.peers[0].hold-time"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--config", "/nonexistent.yaml"}, "no such file"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--id", "0"}, "--id"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--peer", "notanaddr"}, `--peer "notanaddr": not HOST:PORT`},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--keepalive-interval", "-1s"}, `--keepalive-interval "-1s": negative duration`},
	} {
		code, _, errs := runCLI(t, append([]string{"node"}, tc.args...)...)
		if code != 2 || !strings.Contains(errs, tc.want) || strings.Contains(errs, "goroutine") {
			t.Errorf("rspxdp node %v: code %d, stderr %q; want code 2 and a message containing %q", tc.args, code, errs, tc.want)
		}
	}
}
