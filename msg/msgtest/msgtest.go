// Package msgtest has fixtures for tests of the packages that speak package
// msg's messages.
package msgtest

import (
	"net/netip"
	"time"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
)

// PE returns a pool element with every field the codec carries set from
// id: a TCP user transport at 10.0.x.y:7, an ASAP endpoint at
// 10.1.x.y:5000, round robin, a 30 s registration life.
func PE(id uint32) msg.PoolElement {
	return msg.PoolElement{
		ID:       id,
		Lifetime: 30 * time.Second,
		Transport: selector.Transport{
			Addrs:    []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(id >> 8), byte(id)})},
			Port:     7,
			Protocol: selector.TCP,
			Use:      selector.DataOnly,
		},
		ASAP:         netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(id >> 8), byte(id)}), 5000),
		ASAPProtocol: selector.TCP,
		Policy:       policy.RoundRobin(),
	}
}
