// Package certs gives the injector's webhook server its serving certificate,
// in one of two modes:
//
//   - self-managed (SecretManager): a self-signed CA and a leaf for the
//     injector Service's DNS names live in a kubernetes.io/tls Secret (plus
//     ca.crt and ca.key) in the injector's namespace. Every replica loads the
//     Secret on start, creating it if it is missing (a lost create race ends
//     in AlreadyExists and a reload), renews the leaf at two thirds of its
//     lifetime and the CA likewise, and keeps the caBundle of every webhook
//     in the MutatingWebhookConfiguration equal to the trusted CAs. A new CA
//     is trusted (added to caBundle beside the old one) for a while before a
//     leaf signed by it is served, so no handshake fails during a rotation.
//   - cert-manager (DirSource): tls.crt and tls.key are read from a
//     directory and reloaded when they change; the Secret and the caBundle
//     are cert-manager's business.
//
// Either way the TLS server asks GetCertificate for every handshake, which
// reads an atomic pointer: handshakes in flight finish with the certificate
// they started with, new ones get the new certificate.
package certs
