package msg

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
)

// Cause is an RFC 5352 operation error cause code (section 3.3.10 of RFC 5354).
type Cause uint16

// Error causes used in Registration, Deregistration and Handle Resolution
// responses (RFC 5354, 3.3.10).
const (
	CauseUnrecognizedParameter     Cause = 0x1
	CauseUnrecognizedMessage       Cause = 0x2
	CauseInvalidValues             Cause = 0x3
	CauseNonUniquePEIdentifier     Cause = 0x4
	CauseInconsistentPolicy        Cause = 0x5
	CauseLackOfResources           Cause = 0x6
	CauseInconsistentTransport     Cause = 0x7
	CauseInconsistentDataControl   Cause = 0x8
	CauseUnknownPoolHandle         Cause = 0x9
	CauseRejectionDueToSecurity    Cause = 0xa
	causeNone                      Cause = 0
	defaultRegistrationLifeSeconds       = 30 * 3
)

// MaxItemsAll in HandleResolution.MaxItems asks for every PE of the pool.
const MaxItemsAll = 0xffffffff

var causeNames = map[Cause]string{
	CauseUnrecognizedParameter:   "unrecognized parameter",
	CauseUnrecognizedMessage:     "unrecognized message",
	CauseInvalidValues:           "invalid values",
	CauseNonUniquePEIdentifier:   "non-unique PE identifier",
	CauseInconsistentPolicy:      "inconsistent pooling policy",
	CauseLackOfResources:         "lack of resources",
	CauseInconsistentTransport:   "inconsistent transport type",
	CauseInconsistentDataControl: "inconsistent data/control configuration",
	CauseUnknownPoolHandle:       "unknown pool handle",
	CauseRejectionDueToSecurity:  "rejection due to security considerations",
}

func (c Cause) String() string {
	if s, ok := causeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("cause 0x%x", uint16(c))
}

// PoolElement is one PE as carried in the Pool Element parameter.
type PoolElement struct {
	ID uint32
	// Home is the server ID of the registrar that owns this PE (the home
	// registrar); 0 in a Registration, set by the registrar.
	Home uint32
	// Lifetime is the registration life the PE asked for.
	Lifetime time.Duration
	// Transport is the user transport: where PUs reach the PE's service.
	Transport selector.Transport
	// ASAP is the PE's ASAP transport address, where a registrar that takes
	// it over sends the keep-alive with the home flag. The home registrar
	// fills it in from the PE's association when the Registration has none
	// (RFC 5354, 3.7: ENRP peers need it, and rsplib rejects a Pool Element
	// without it).
	ASAP netip.AddrPort
	// ASAPProtocol is the transport of ASAP (selector.SCTP or selector.TCP;
	// 0 encodes as TCP), carried as the ASAP transport parameter's kind.
	ASAPProtocol selector.Protocol
	Policy       policy.Settings
	// Owner is the authenticated identity (security.Identity.Key) that
	// registered the PE, set by the Server on TLS associations: only that
	// identity may re-register or deregister the PE identifier at any
	// registrar (RFC 5355 masquerading PE and spoofed deregistration).
	// Empty without TLS. ENRP carries it (ParamOwner); ASAP never does.
	Owner string
	// Epoch orders competing claims on the PE: when its home registrar
	// took it (a registration that made it the home, or a takeover), in
	// milliseconds since 1970 by that registrar's clock; 0 is unknown
	// (rsplib). ENRP carries it (ParamEpoch); see enrp/ownership.go.
	Epoch uint64
}

// Message is any ASAP or ENRP message of this package.
type Message interface{ msgName() string }

// Name returns m's message type name, for logs.
func Name(m Message) string { return m.msgName() }

// ASAP messages (RFC 5352).
type (
	// Registration registers or re-registers PE under Handle.
	Registration struct {
		Handle string
		PE     PoolElement
	}
	// RegistrationResponse answers a Registration; Reject with Cause on refusal.
	RegistrationResponse struct {
		Handle string
		PEID   uint32
		Reject bool
		Cause  Cause
		// CauseInfo is the cause-specific information of Cause: for
		// Invalid Values, Inconsistent Pooling Policy and Inconsistent
		// Transport Type the offending parameter in wire form (RFC 5354,
		// 3.3.10; OffendingParam builds it). Wireshark marks those causes
		// malformed without it.
		CauseInfo []byte
	}
	// Deregistration removes a PE.
	Deregistration struct {
		Handle string
		PEID   uint32
		// Owner is the requester's authenticated identity (see
		// PoolElement.Owner), set by the Server; not on the wire.
		Owner string
	}
	// DeregistrationResponse answers a Deregistration.
	DeregistrationResponse struct {
		Handle string
		PEID   uint32
		Reject bool
		Cause  Cause
	}
	// HandleResolution asks for up to MaxItems PEs of Handle (0 = the
	// registrar's default, 0xffffffff = all), from the Handle Resolution option.
	HandleResolution struct {
		Handle   string
		MaxItems uint32
	}
	// HandleResolutionResponse carries the selected PEs or Cause (unknown pool handle).
	HandleResolutionResponse struct {
		Handle     string
		PolicyType uint32
		PEs        []PoolElement
		Cause      Cause
	}
	// EndpointKeepAlive is sent by the home registrar; Home set after a takeover.
	EndpointKeepAlive struct {
		ServerID uint32
		Handle   string
		PEID     uint32
		Home     bool
	}
	// EndpointKeepAliveAck answers a keep-alive.
	EndpointKeepAliveAck struct {
		Handle string
		PEID   uint32
	}
	// EndpointUnreachable is a PU's report that a PE did not answer.
	EndpointUnreachable struct {
		Handle string
		PEID   uint32
	}
	// BusinessCard is a PE's word to its pool user, on their session:
	// the pool to fail over in and the PEs to fail over to (RFC 5352,
	// 2.2.12). rsplib sends the pool's policy too (taken from the first
	// PE) and refuses a card without a PE.
	BusinessCard struct {
		Handle string
		PEs    []PoolElement
	}
	// ServerAnnounce advertises a registrar to PEs and PUs.
	ServerAnnounce struct {
		ServerID uint32
		ASAP     []netip.AddrPort
		// Protocol is the transport ASAP is offered on (0 encodes as TCP).
		Protocol selector.Protocol
	}
)

// ServerInfo describes a registrar (Server Information parameter).
type ServerInfo struct {
	ID   uint32
	ENRP netip.AddrPort
	ASAP netip.AddrPort
	// Protocol is the transport the registrar's ENRP endpoint speaks,
	// carried as the Server Information's transport parameter kind (0
	// encodes as TCP). rsplib ignores a registrar whose Presence offers a
	// transport it cannot use ("no usable ENRP endpoint addresses").
	Protocol selector.Protocol
}

// Pool is one pool handle with PEs, as in Handle Table Responses.
type Pool struct {
	Handle string
	PEs    []PoolElement
}

// Header carries the ENRP sender and receiver server IDs.
type Header struct{ Sender, Receiver uint32 }

// UpdateAction is the Handle Update action.
type UpdateAction uint16

// Handle Update actions (RFC 5353, 2.2.4).
const (
	AddPE UpdateAction = 0
	DelPE UpdateAction = 1
)

// ENRP messages (RFC 5353).
type (
	// Presence carries the sender's checksum over the PEs it owns.
	Presence struct {
		Header
		Reply    bool
		Checksum uint16
		Info     ServerInfo
		// Leaving: the sender is shutting down; its peers take it over
		// at once (wire.FlagLeaving, an rspxdp extension).
		Leaving bool
	}
	// HandleTableRequest asks for the handlespace (OwnOnly: just the PEs the receiver owns).
	HandleTableRequest struct {
		Header
		OwnOnly bool
	}
	// HandleTableResponse is one chunk of the handlespace; More says another follows on request.
	HandleTableResponse struct {
		Header
		More   bool
		Reject bool
		Pools  []Pool
	}
	// HandleUpdate replicates one add or delete.
	HandleUpdate struct {
		Header
		Action UpdateAction
		Handle string
		PE     PoolElement
		// Drain marks a DelPE for a PE that deregistered: receivers
		// keep it draining (its established flows continue) instead of
		// removing it at once as they do for a failed PE. It travels in
		// wire.FlagDrain, a reserved bit other implementations ignore.
		Drain bool
	}
	// ListRequest asks a peer for its peer list.
	ListRequest struct{ Header }
	// ListResponse carries the peer list.
	ListResponse struct {
		Header
		Reject  bool
		Servers []ServerInfo
	}
	// InitTakeover announces the intent to take over Target.
	InitTakeover struct {
		Header
		Target uint32
	}
	// InitTakeoverAck agrees to the sender's takeover of Target.
	InitTakeoverAck struct {
		Header
		Target uint32
	}
	// TakeoverServer says the sender now owns Target's PEs.
	TakeoverServer struct {
		Header
		Target uint32
	}
)

func (Registration) msgName() string             { return "Registration" }
func (RegistrationResponse) msgName() string     { return "RegistrationResponse" }
func (Deregistration) msgName() string           { return "Deregistration" }
func (DeregistrationResponse) msgName() string   { return "DeregistrationResponse" }
func (HandleResolution) msgName() string         { return "HandleResolution" }
func (HandleResolutionResponse) msgName() string { return "HandleResolutionResponse" }
func (EndpointKeepAlive) msgName() string        { return "EndpointKeepAlive" }
func (EndpointKeepAliveAck) msgName() string     { return "EndpointKeepAliveAck" }
func (EndpointUnreachable) msgName() string      { return "EndpointUnreachable" }
func (ServerAnnounce) msgName() string           { return "ServerAnnounce" }
func (BusinessCard) msgName() string             { return "BusinessCard" }
func (Presence) msgName() string                 { return "Presence" }
func (HandleTableRequest) msgName() string       { return "HandleTableRequest" }
func (HandleTableResponse) msgName() string      { return "HandleTableResponse" }
func (HandleUpdate) msgName() string             { return "HandleUpdate" }
func (ListRequest) msgName() string              { return "ListRequest" }
func (ListResponse) msgName() string             { return "ListResponse" }
func (InitTakeover) msgName() string             { return "InitTakeover" }
func (InitTakeoverAck) msgName() string          { return "InitTakeoverAck" }
func (TakeoverServer) msgName() string           { return "TakeoverServer" }
