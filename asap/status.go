package asap

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// PoolDump is one pool of a handlespace dump.
type PoolDump struct {
	Handle string   `json:"handle"`
	PEs    []PEInfo `json:"pes"`
}

// HandlespaceDump is a registrar's handlespace as an operator sees it.
type HandlespaceDump struct {
	// Registrar is the answering registrar's server ID.
	Registrar uint32 `json:"registrar"`
	// Pools are sorted by handle, their PEs by identifier.
	Pools []PoolDump `json:"pools"`
	// Checksums are the RFC 5353 checksums over the PEs each home
	// registrar owns, as ENRP Presence carries them: equal values at two
	// registrars mean they agree on that owner's PEs.
	Checksums map[uint32]uint16 `json:"checksums"`
	// Total is the checksum over the whole handlespace.
	Total uint16 `json:"total"`
}

// DumpHandlespace asks the registrar whose ENRP endpoint is enrpAddr for
// its whole handlespace, with ENRP Handle Table Requests (following the
// more-to-send flag), the way a mentor peer would, under a random server
// ID. An rspxdp registrar answers a sender it never heard a Presence from
// as an observer: it does not count it as a peer, so the dump leaves no
// trace in ENRP (no peer joining, dying or being taken over).
func DumpHandlespace(ctx context.Context, enrpAddr string, opts ...Option) (*HandlespaceDump, error) {
	cfg := newConfig(opts)
	if err := validateAddrs([]string{enrpAddr}); err != nil {
		return nil, err
	}
	// ENRP goes over the kind of transport WithTransport chose for ASAP:
	// SCTP to a registrar that speaks SCTP (rsplib's), else TCP.
	kind := "tcp"
	if cfg.transport != nil && cfg.transport.Name() == "sctp" {
		kind = "sctp"
	}
	tr, err := transport.New(kind, transport.Config{Protocol: transport.ENRP, Logger: cfg.log})
	if err != nil {
		return nil, err
	}
	if cfg.transport != nil && cfg.transport.Name() == "tls" {
		// A TLS registrar serves ENRP to peer identities: dial with the
		// certificate WithTransport carries (TLSTransport).
		tr = cfg.transport
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.dialTimeout)
	c, err := tr.Dial(dctx, enrpAddr)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("registrar %s unreachable: %w", enrpAddr, err)
	}
	defer c.Close()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	self := binary.BigEndian.Uint32(b[:]) | 0x80000000
	d := &HandlespaceDump{Checksums: map[uint32]uint16{}}
	pools := map[string]map[uint32]PEInfo{}
	introduced := false
	for {
		req, err := msg.Encode(msg.HandleTableRequest{Header: msg.Header{Sender: self, Receiver: d.Registrar}})
		if err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, cfg.respTimeout)
		err = c.WriteMessage(rctx, req)
		var resp msg.HandleTableResponse
		for err == nil {
			var rb []byte
			if rb, err = c.ReadMessage(rctx); err != nil {
				break
			}
			m, derr := msg.Decode(wire.ENRP, rb)
			if r, ok := m.(msg.HandleTableResponse); derr == nil && ok {
				resp = r
				break
			}
		}
		cancel()
		if err != nil {
			return nil, fmt.Errorf("registrar %s: handle table: %w", enrpAddr, portHint(enrpAddr, transport.ENRP, err))
		}
		if resp.Reject && !introduced && d.Registrar == 0 {
			// rsplib answers only registrars it knows: introduce
			// ourselves with a Presence, as its hsdump does, and ask again.
			introduced = true
			if err := introduce(ctx, c, self, kind, cfg.respTimeout); err != nil {
				return nil, fmt.Errorf("registrar %s refused the handle table request; presence: %w", enrpAddr, err)
			}
			continue
		}
		if resp.Reject {
			return nil, fmt.Errorf("registrar %s refused the handle table request", enrpAddr)
		}
		d.Registrar = resp.Sender
		for _, p := range resp.Pools {
			if pools[p.Handle] == nil {
				pools[p.Handle] = map[uint32]PEInfo{}
			}
			for _, pe := range p.PEs {
				pools[p.Handle][pe.ID] = peInfo(pe)
			}
		}
		if !resp.More {
			break
		}
	}
	sums := map[uint32]uint64{}
	var total uint64
	for h, pes := range pools {
		pd := PoolDump{Handle: h}
		for _, pe := range pes {
			pd.PEs = append(pd.PEs, pe)
			// One's complement sums add: undo each element's final
			// complement, add, fold and complement once more.
			v := uint64(^selector.ElementChecksum(h, pe.ID))
			sums[pe.Home] += v
			total += v
		}
		sort.Slice(pd.PEs, func(i, j int) bool { return pd.PEs[i].ID < pd.PEs[j].ID })
		d.Pools = append(d.Pools, pd)
	}
	sort.Slice(d.Pools, func(i, j int) bool { return d.Pools[i].Handle < d.Pools[j].Handle })
	for home, s := range sums {
		d.Checksums[home] = fold(s)
	}
	d.Total = fold(total)
	return d, nil
}

func fold(s uint64) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
