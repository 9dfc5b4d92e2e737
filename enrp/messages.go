package enrp

import "github.com/rspxdp/rspxdp/msg"

// The registrar's core speaks in package msg's typed messages; the
// driver (Server) translates between them and bytes. These aliases let the
// core name them as its own.

// Message types of package msg, as the core consumes and produces them.
type (
	Message                  = msg.Message
	Cause                    = msg.Cause
	PoolElement              = msg.PoolElement
	Registration             = msg.Registration
	RegistrationResponse     = msg.RegistrationResponse
	Deregistration           = msg.Deregistration
	DeregistrationResponse   = msg.DeregistrationResponse
	HandleResolution         = msg.HandleResolution
	HandleResolutionResponse = msg.HandleResolutionResponse
	EndpointKeepAlive        = msg.EndpointKeepAlive
	EndpointKeepAliveAck     = msg.EndpointKeepAliveAck
	EndpointUnreachable      = msg.EndpointUnreachable
	ServerAnnounce           = msg.ServerAnnounce
	ServerInfo               = msg.ServerInfo
	Pool                     = msg.Pool
	Header                   = msg.Header
	UpdateAction             = msg.UpdateAction
	Presence                 = msg.Presence
	HandleTableRequest       = msg.HandleTableRequest
	HandleTableResponse      = msg.HandleTableResponse
	HandleUpdate             = msg.HandleUpdate
	ListRequest              = msg.ListRequest
	ListResponse             = msg.ListResponse
	InitTakeover             = msg.InitTakeover
	InitTakeoverAck          = msg.InitTakeoverAck
	TakeoverServer           = msg.TakeoverServer
	Unrecognized             = msg.Unrecognized
	ErrorMessage             = msg.ErrorMessage
	Encoder                  = msg.Encoder
)

// Error causes and Handle Update actions of package msg.
const (
	CauseUnrecognizedParameter   = msg.CauseUnrecognizedParameter
	CauseUnrecognizedMessage     = msg.CauseUnrecognizedMessage
	CauseInvalidValues           = msg.CauseInvalidValues
	CauseNonUniquePEIdentifier   = msg.CauseNonUniquePEIdentifier
	CauseInconsistentPolicy      = msg.CauseInconsistentPolicy
	CauseLackOfResources         = msg.CauseLackOfResources
	CauseInconsistentTransport   = msg.CauseInconsistentTransport
	CauseInconsistentDataControl = msg.CauseInconsistentDataControl
	CauseUnknownPoolHandle       = msg.CauseUnknownPoolHandle
	CauseRejectionDueToSecurity  = msg.CauseRejectionDueToSecurity
	AddPE                        = msg.AddPE
	DelPE                        = msg.DelPE
	maxResolutionAll             = msg.MaxItemsAll
)

// msgName is m's message type name, for logs.
func msgName(m Message) string { return msg.Name(m) }
