// Package pki keeps a site's certificate authority and issues the
// certificates its links use.
//
// Every site has its own CA: an ECDSA P-256 key and a self-signed
// certificate ("skiff site <name> CA", valid 10 years), kept in the site's
// data dir as ca.crt and ca.key (both mode 0600, the dir 0700) and reused on
// every start. The CA signs
//
//   - the gateway's serving certificate, for the DNS name
//     "<site>.skiff.local" ([ServerName]) that dialing sites verify, plus the
//     gateway's own hosts; it is issued afresh at each start and never
//     written to disk;
//   - one client certificate per link token; a token carries the CA, that
//     certificate and its key, so the site that redeems the token trusts the
//     gateway it dials and is trusted by it.
//
// Links use TLS 1.3 only, with client certificates required and verified
// against the issuing site's CA ([ServerTLS], [ClientTLS]).
package pki
