package enrp

// Messages never longer than the 16-bit length allows (issue 19 item 7). A
// legal 65,532-byte registration, or 128 PEs of 70 addresses, made every
// Handle Update and Handle Table Response fail to encode: replication
// stopped. So one PE may carry at most MaxPEAddresses addresses (then its
// replication always fits), table responses are cut by size as well as by
// count, and a resolution answer holds as many PEs as fit.

// MaxPEAddresses bounds the user transport addresses of one PE (rsplib's
// MAX_PE_TRANSPORTADDRESSES is 128 too).
const MaxPEAddresses = 128

// maxMessageBudget is what the parameters of one message may take: the
// 65,535 bytes of the length field less a margin for rounding in the
// estimates below.
const maxMessageBudget = 65535 - 1024

// Fixed parts of the messages, in bytes.
const (
	enrpHeaderSize         = 12 // type, flags, length, sender, receiver
	asapResolutionOverhead = 4 + 12
)

func pad4(n int) int { return (n + 3) &^ 3 }

// handleWireSize is a Pool Handle parameter's size.
func handleWireSize(h string) int { return 4 + pad4(len(h)) }

// peWireSize bounds the size of pe's Pool Element parameter; enrp adds the
// private owner and epoch parameters (msg.ParamOwner, msg.ParamEpoch).
func peWireSize(pe PoolElement, enrp bool) int {
	n := 4 + 12 // header; identifier, home, lifetime
	n += 4 + 4  // user transport header; port and flags
	for _, a := range pe.Transport.Addrs {
		if a.Is4() {
			n += 8
		} else {
			n += 20
		}
	}
	n += 4 + 24 // policy, the longest kind
	if pe.ASAP.IsValid() {
		n += 4 + 4 + 20
		if enrp {
			n += 4 + pad4(len(pe.Owner)) + 4 + 8
		}
	}
	return n
}
