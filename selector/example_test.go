package selector_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
)

// The data-plane sync: wait for changes, drain them (one entry per pool
// however many registrations happened), and program each pool's steering
// set once.
func ExampleSubscription() {
	h, _ := selector.New(selector.Config{})
	sub := h.Subscribe()
	defer sub.Close()
	now := time.Unix(0, 0)
	for id := uint32(1); id <= 3; id++ {
		_, _ = h.Register("web", selector.PoolElement{
			ID:        id,
			Transport: selector.Transport{Addrs: []netip.Addr{netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", id))}, Port: 80, Protocol: selector.TCP},
			Policy:    policy.WeightedRoundRobin(id),
			Lifetime:  30 * time.Second,
		}, now)
	}
	_, _ = h.Deregister("web", 1, now) // drains: listed with weight 0

	<-sub.Ready()
	for _, change := range sub.Drain() {
		ss, _ := h.SteeringSet(change.Handle)
		fmt.Println(change.Handle, change.Kinds)
		for _, m := range ss.Members {
			fmt.Println(" ", m.ID, m.Transport.Addrs[0], m.Weight, m.State)
		}
	}
	// Output:
	// web added|state
	//   1 192.0.2.1 0 draining
	//   2 192.0.2.2 2 active
	//   3 192.0.2.3 3 active
}
