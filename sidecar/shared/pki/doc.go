// Package pki keeps a site's certificate authority and issues the
// certificates its links use.
//
// Every site has its own CA: an ECDSA P-256 key and a self-signed
// certificate ("skiff site <name> CA", valid 10 years), kept in the site's
// data dir as ca.crt and ca.key (both mode 0600, the dir 0700) and reused on
// every start; in Kubernetes, in the Secret skiff-site-ca under the same
// keys. Its key is also the site's identity key. The CA signs
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
//
// # Rotation
//
// A site replaces its CA (and with it its key) in two steps, without a
// moment in which its peers cannot verify it:
//
//   - Starting the rotation ([RotateCA] on a dir, [RotatePEM] on a
//     Secret's data) makes the current CA the previous one, kept beside
//     it as ca-previous.crt and ca-previous.key, and a new CA the current
//     one. The files change one at a time, in an order that leaves a CA
//     to load at every moment, a crash included ([LoadCA]).
//   - During the overlap both CAs are trusted ([CA.Pool]; the bundle
//     peers should hold is [CA.BundlePEM], the new CA then the previous
//     one), and the new CA issues. The previous CA endorses the new one
//     with a cross certificate ([CA.Cross]: the new CA's certificate
//     signed by the previous key), which goes after every certificate the
//     new CA issues ([CA.Chain]), so that a peer that still trusts only
//     the previous CA verifies them. New CAs have path length 1 for that
//     ([NewCAPEM]); a CA made with path length 0, as they were before,
//     cannot endorse its successor for Go's verifier. So serving
//     certificates, the ones clients verify, come from the previous CA
//     until the rotation is finished ([CA.IssueServer]): a client that
//     was not given the new CA yet still verifies the gateway and the
//     controller. Client certificates are verified by this site, which
//     trusts both.
//   - Finishing the rotation ([FinishCARotation], [FinishPEM]) removes
//     the previous CA: what it issued is no longer trusted, and the new
//     CA's certificates come without the cross certificate.
//
// A running gateway holds its CA in an [Authority], which it replaces
// ([Authority.Set]) as the rotation starts and finishes; the TLS
// configurations it makes ([Authority.ServerTLS], [Authority.SiblingTLS])
// follow it at the next handshake.
package pki
