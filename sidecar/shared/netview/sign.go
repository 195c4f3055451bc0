package netview

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// MaxRecordBytes bounds one signed record on the wire. A site with the
// largest address list a record may hold stays well below it.
const MaxRecordBytes = 8 << 20

// MaxClockSkew is how far in the future a record's epoch (its gateway's
// start time) may lie on the receiver's clock. A record from further ahead
// would outrank every later record of its site until it aged out.
const MaxClockSkew = time.Hour

// maxKeyID bounds a key's [KeyID] (a P-256 key is 124 characters).
const maxKeyID = 256

// ErrSignature reports a record whose signature does not verify, or that
// has no key or signature at all.
var ErrSignature = errors.New("site record signature invalid")

// signContext is prefixed to a record's JSON before it is hashed and
// signed, so a record signature can never be taken for any other
// signature made with the site's key (TLS handshakes, link hellos).
const signContext = "skiff site record v2\n"

// rolloverContext is prefixed to what a site's previous key signs when it
// endorses the next one ([Endorse]), so that an endorsement can never be
// taken for a record signature or any other signature, nor one for
// another.
const rolloverContext = "skiff site key rollover v1\n"

// Signed is a record together with its wire form: the record's JSON
// exactly as its site signed it and the signature. Transit gateways
// forward the wire form unchanged, so every hop can check it.
type Signed struct {
	Record
	wire []byte
}

// Wire returns the signed record's wire form. It must not be modified.
func (s Signed) Wire() []byte { return s.wire }

// envelope is the wire form of a signed record.
type envelope struct {
	Record []byte `json:"record"` // the record's JSON (base64 in the envelope)
	Sig    []byte `json:"sig"`    // ECDSA P-256 over SHA-256(signContext + Record)
}

// KeyID returns the form in which records carry a site's public key: the
// base64 of its PKIX DER encoding.
func KeyID(pub *ecdsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encode site key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(der), nil
}

// Fingerprint returns a short, log-friendly name of a key in [KeyID] form:
// the first 16 hex digits of the SHA-256 of the ID.
func Fingerprint(keyID string) string {
	sum := sha256.Sum256([]byte(keyID))
	return hex.EncodeToString(sum[:8])
}

// ParseKeyID parses a key in [KeyID] form; only ECDSA P-256 keys are
// accepted.
func ParseKeyID(id string) (*ecdsa.PublicKey, error) {
	if id == "" || len(id) > maxKeyID {
		return nil, fmt.Errorf("site key of %d bytes: %w", len(id), ErrSignature)
	}
	der, err := base64.StdEncoding.DecodeString(id)
	if err != nil {
		return nil, fmt.Errorf("site key is not base64: %w", ErrSignature)
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("site key: %v: %w", err, ErrSignature)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("site key is %T, want ECDSA P-256: %w", k, ErrSignature)
	}
	return pub, nil
}

// Sign returns r signed with key: r.Key is set to key's [KeyID] and a
// zero Version to [RecordVersion]. A record [Decode] would refuse is
// refused.
func Sign(r Record, key *ecdsa.PrivateKey) (Signed, error) {
	if key == nil {
		return Signed{}, errors.New("sign site record: no key")
	}
	id, err := KeyID(&key.PublicKey)
	if err != nil {
		return Signed{}, err
	}
	r.Key = id
	if r.Version == 0 {
		r.Version = RecordVersion
	}
	body, err := Encode(r)
	if err != nil {
		return Signed{}, err
	}
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest(body))
	if err != nil {
		return Signed{}, fmt.Errorf("sign site record: %w", err)
	}
	wire, err := json.Marshal(envelope{Record: body, Sig: sig})
	if err != nil {
		return Signed{}, fmt.Errorf("sign site record: %w", err)
	}
	return Signed{Record: r.clone(), wire: wire}, nil
}

// Open parses a signed record's wire form, checks the record's rules
// ([Decode]) and its epoch against now ([MaxClockSkew]), and verifies the
// signature against the key the record names, and the endorsement of that
// key (Prev) when the record carries one ([ErrSignature]). Whether the
// keys may speak for the site is the [DB]'s to decide.
func Open(b []byte, now time.Time) (Signed, error) {
	if len(b) > MaxRecordBytes {
		return Signed{}, fmt.Errorf("signed site record of %d bytes, at most %d: %w", len(b), MaxRecordBytes, ErrInvalidRecord)
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return Signed{}, fmt.Errorf("decode signed site record: %w", err)
	}
	if len(env.Record) == 0 {
		// A v1 gateway sends the bare record: say which version it is.
		if r, err := Decode(b); err != nil && errors.Is(err, ErrVersion) {
			return Signed{}, err
		} else if err == nil {
			return Signed{}, fmt.Errorf("site record from %q is not signed: %w", r.Site, ErrSignature)
		}
		return Signed{}, fmt.Errorf("signed site record has no record: %w", ErrInvalidRecord)
	}
	r, err := Decode(env.Record)
	if err != nil {
		return Signed{}, err
	}
	if limit := now.Add(MaxClockSkew).UnixNano(); r.Epoch > limit {
		return Signed{}, fmt.Errorf("site record from %q has epoch %s, more than %s ahead of this gateway's clock: %w",
			r.Site, time.Unix(0, r.Epoch).UTC().Format(time.RFC3339), MaxClockSkew, ErrInvalidRecord)
	}
	pub, err := ParseKeyID(r.Key)
	if err != nil {
		return Signed{}, fmt.Errorf("site record from %q: %w", r.Site, err)
	}
	if len(env.Sig) == 0 || !ecdsa.VerifyASN1(pub, digest(env.Record), env.Sig) {
		return Signed{}, fmt.Errorf("site record from %q (key %s): %w", r.Site, Fingerprint(r.Key), ErrSignature)
	}
	if r.Prev != nil {
		if err := r.Prev.Verify(r.Site, r.Key); err != nil {
			return Signed{}, fmt.Errorf("site record from %q (key %s): %w", r.Site, Fingerprint(r.Key), err)
		}
	}
	return Signed{Record: r, wire: append([]byte(nil), b...)}, nil
}

func digest(body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(signContext))
	h.Write(body)
	return h.Sum(nil)
}

// Endorse returns prev's endorsement of the key newKeyID for site.
func Endorse(site, newKeyID string, prev *ecdsa.PrivateKey) (*Rollover, error) {
	if prev == nil {
		return nil, errors.New("endorse site key: no previous key")
	}
	if prev.Curve != elliptic.P256() {
		return nil, errors.New("endorse site key: previous key is not ECDSA P-256")
	}
	if newKeyID == "" || len(newKeyID) > maxKeyID {
		return nil, fmt.Errorf("endorse site key: new key of %d bytes", len(newKeyID))
	}
	id, err := KeyID(&prev.PublicKey)
	if err != nil {
		return nil, err
	}
	if id == newKeyID {
		return nil, fmt.Errorf("endorse site key %s: it is the previous key", Fingerprint(id))
	}
	sig, err := ecdsa.SignASN1(rand.Reader, prev, rolloverDigest(site, newKeyID))
	if err != nil {
		return nil, fmt.Errorf("endorse site key: %w", err)
	}
	return &Rollover{Key: id, Sig: sig}, nil
}

// Verify checks that the endorsement's key signed newKeyID for site
// ([ErrSignature] otherwise).
func (e *Rollover) Verify(site, newKeyID string) error {
	if e == nil {
		return fmt.Errorf("no endorsement of key %s: %w", Fingerprint(newKeyID), ErrSignature)
	}
	if e.Key == newKeyID {
		return fmt.Errorf("key %s endorses itself: %w", Fingerprint(newKeyID), ErrSignature)
	}
	pub, err := ParseKeyID(e.Key)
	if err != nil {
		return fmt.Errorf("endorsement: previous %w", err)
	}
	if len(e.Sig) == 0 || !ecdsa.VerifyASN1(pub, rolloverDigest(site, newKeyID), e.Sig) {
		return fmt.Errorf("endorsement of key %s by %s: %w", Fingerprint(newKeyID), Fingerprint(e.Key), ErrSignature)
	}
	return nil
}

// rolloverDigest is what a previous key signs to endorse newKeyID for
// site. A site name has no newline, so the two cannot run into each other.
func rolloverDigest(site, newKeyID string) []byte {
	h := sha256.New()
	h.Write([]byte(rolloverContext))
	h.Write([]byte(site))
	h.Write([]byte("\n"))
	h.Write([]byte(newKeyID))
	return h.Sum(nil)
}
