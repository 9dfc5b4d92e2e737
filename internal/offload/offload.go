// Package offload switches NIC offloads the way `ethtool -K` does, through
// the SIOCETHTOOL ioctl (github.com/safchain/ethtool) rather than the
// ethtool binary, which a fresh Debian does not install.
//
// Its one job here: veth pairs whose traffic crosses native XDP must send
// full checksums. A veth hands packets on with only a partial checksum
// (CHECKSUM_PARTIAL) when transmit checksum offload is on, and such packets
// are dropped as bad once an XDP program redirects them natively (measured
// on veth; see ../shared/README.md), so the demo and the namespace tests
// turn it off.
package offload

import (
	"fmt"
	"sort"
	"strings"

	"github.com/safchain/ethtool"
)

// txChecksumPrefix names the features `ethtool -K IF tx off` switches:
// tx-checksum-ipv4, -ip-generic, -ipv6, -fcoe-crc, -sctp. The kernel then
// drops what depends on them (TSO) by itself.
const txChecksumPrefix = "tx-checksum-"

// TxChecksumOff turns every transmit checksum offload of ifname off, as
// `ethtool -K ifname tx off`. The interface is looked up in the network
// namespace of the calling thread: call it on a locked thread inside the
// namespace (netns.NS.Do) for an interface there.
func TxChecksumOff(ifname string) error {
	e, err := ethtool.NewEthtool()
	if err != nil {
		return fmt.Errorf("ethtool socket: %w", err)
	}
	defer e.Close()
	states, err := e.FeaturesWithState(ifname)
	if err != nil {
		return fmt.Errorf("%s: read features: %w", ifname, err)
	}
	off := map[string]bool{}
	for name, st := range states {
		if strings.HasPrefix(name, txChecksumPrefix) && st.Active {
			if !st.Available {
				return fmt.Errorf("%s: %s is on and fixed: the driver cannot send full checksums", ifname, name)
			}
			off[name] = false
		}
	}
	if len(off) == 0 {
		return nil
	}
	if err := e.Change(ifname, off); err != nil {
		return fmt.Errorf("%s: turn %s off: %w", ifname, strings.Join(sortedKeys(off), ", "), err)
	}
	on, err := TxChecksumsOn(ifname)
	if err != nil {
		return err
	}
	if len(on) > 0 {
		return fmt.Errorf("%s: %s still on after turning it off", ifname, strings.Join(on, ", "))
	}
	return nil
}

// TxChecksumsOn lists the transmit checksum offloads active on ifname (in
// the calling thread's namespace), sorted; none means full checksums.
func TxChecksumsOn(ifname string) ([]string, error) {
	e, err := ethtool.NewEthtool()
	if err != nil {
		return nil, fmt.Errorf("ethtool socket: %w", err)
	}
	defer e.Close()
	feats, err := e.Features(ifname)
	if err != nil {
		return nil, fmt.Errorf("%s: read features: %w", ifname, err)
	}
	var on []string
	for name, active := range feats {
		if strings.HasPrefix(name, txChecksumPrefix) && active {
			on = append(on, name)
		}
	}
	sort.Strings(on)
	return on, nil
}

func sortedKeys(m map[string]bool) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
