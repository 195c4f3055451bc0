// Package token issues, reads and checks link tokens, and keeps the issuing
// site's ledger of them.
//
// A link token is a YAML file a site hands to another so that it may dial
// in: the issuing site's name and advertised link endpoint, an expiry, how
// many distinct sites may redeem it, the issuing site's CA certificate, and
// a client certificate and key signed by that CA ("link-token:<id>", where
// the id is the certificate's serial number in hex). A signature by the CA
// key covers every other field.
//
// The dialing site checks a token before it dials ([Token.Verify]): the
// certificate must be signed by the token's CA ([ErrForeignCA]), the
// signature must match the fields ([ErrTampered]) and the token must not
// have expired ([ErrExpired]). The signature only shows that the token is
// as issued: trust comes from mutual TLS, where the issuing gateway accepts
// only client certificates its own CA signed and the dialer accepts only a
// gateway certificate for "<site>.skiff.local" from the token's CA.
//
// The issuing site records each token in its [Ledger] (dataDir/tokens/) and
// consults it whenever a link client connects ([Ledger.Redeem]): a token's
// first use by a site must come before it expires, at most Redemptions
// distinct sites may use it ([ErrUsed]), a site that redeemed it may
// reconnect at any time, and certificates the ledger does not know are
// refused ([ErrUnknown]). The token's certificate is valid for a year;
// expiry governs first use only.
package token
