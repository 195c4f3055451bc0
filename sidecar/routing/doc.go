// Package routing picks the endpoint for a new connection to a network
// address: given the candidates (local endpoints and remote sites, each with
// a path cost, an endpoint count and the streams open to it), a [Picker]
// returns the order in which to try them, first the chosen one and then the
// failover order.
//
// Two patterns apply to connections (package sidecar/shared/model defines them, and
// its CheckRouting decides which are served):
//
//   - balanced spreads new connections by weighted random choice, the
//     weight of a candidate being its endpoint count, divided by one plus its
//     path cost and by one plus its open streams per endpoint. With no load,
//     a site with two endpoints gets about twice the new connections of a
//     site with one at the same cost; a busy candidate gets fewer.
//   - closest tries the lowest-cost tier first (balanced within the tier),
//     then the next tier, and so on.
//
// multicast copies HTTP requests and has no meaning for a connection; Order
// refuses it with model.CheckRouting's words.
//
// The package does no I/O; its only state is the Picker's random source.
package routing
