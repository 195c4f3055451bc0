package state

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Kube is how a [Secret] store reaches the Kubernetes API server. The
// gateway needs one Secret, read and updated: a few REST calls, not a
// client library (the router binary stays small for sidecars).
type Kube struct {
	// Server is the API server's base URL (https://host:port).
	Server string
	// Client carries the requests: TLS to the API server, and client
	// certificates when those authenticate (tests).
	Client *http.Client
	// Token returns the bearer token of each request; nil: none.
	Token func() (string, error)
	// Namespace is the site's namespace, where the Secret lives.
	Namespace string
}

// ServiceAccountDir is where Kubernetes mounts a pod's service account
// token, CA and namespace.
const ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// InCluster returns the API server as a pod sees it: the service's
// address from KUBERNETES_SERVICE_HOST and _PORT, and the pod's service
// account (its token, re-read for every request since the kubelet
// rotates it, the cluster CA and the namespace) from saDir.
func InCluster(saDir string) (*Kube, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("not in a Kubernetes pod: KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT unset")
	}
	caPEM, err := os.ReadFile(filepath.Join(saDir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("service account (is automountServiceAccountToken off?): %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("service account: %s holds no certificate", filepath.Join(saDir, "ca.crt"))
	}
	ns, err := os.ReadFile(filepath.Join(saDir, "namespace"))
	if err != nil {
		return nil, fmt.Errorf("service account: %w", err)
	}
	tokenFile := filepath.Join(saDir, "token")
	return &Kube{
		Server: "https://" + net.JoinHostPort(host, port),
		Client: &http.Client{Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: 5 * time.Second,
			IdleConnTimeout:     90 * time.Second,
		}},
		Token: func() (string, error) {
			b, err := os.ReadFile(tokenFile)
			if err != nil {
				return "", fmt.Errorf("service account token: %w", err)
			}
			return strings.TrimSpace(string(b)), nil
		},
		Namespace: strings.TrimSpace(string(ns)),
	}, nil
}

// Secret is a [Store] in one Kubernetes Secret: the value of name in
// bucket is the data key "<bucket>.<name>". Every call reads the Secret
// (nothing is cached, so replicas and the controller see each other's
// writes at once); Update writes it back with the resourceVersion it
// read and starts over when another writer came first. The Secret must
// exist (the controller creates it); the gateway needs only get and
// update on it.
type Secret struct {
	kube *Kube
	name string
	url  string
}

// Timeout bounds each call of a Secret store (all its retries).
const Timeout = 10 * time.Second

// maxSecretBytes bounds what is read of an API response: a Secret holds
// at most 1 MiB of data, which base64 and JSON grow by a third.
const maxSecretBytes = 4 << 20

// maxConflicts bounds the retries of an Update that keeps losing races.
const maxConflicts = 16

var dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// NewSecret returns the store in Secret name of k's namespace.
func NewSecret(k *Kube, name string) (*Secret, error) {
	if len(name) > 253 || !dnsSubdomain.MatchString(name) {
		return nil, fmt.Errorf("state secret %.64q: not a valid Secret name", name)
	}
	if len(k.Namespace) > 63 || !dnsSubdomain.MatchString(k.Namespace) || strings.Contains(k.Namespace, ".") {
		return nil, fmt.Errorf("state secret %s: namespace %.64q is not a valid namespace", name, k.Namespace)
	}
	return &Secret{kube: k, name: name,
		url: strings.TrimSuffix(k.Server, "/") + "/api/v1/namespaces/" + url.PathEscape(k.Namespace) + "/secrets/" + url.PathEscape(name)}, nil
}

func (s *Secret) String() string { return "secret " + s.kube.Namespace + "/" + s.name }

// DataKey is the data key of name in bucket in a Secret store: what the
// controller writes ledger entries under.
func DataKey(bucket, name string) string { return bucket + "." + name }

// secretObject is a Secret as the API serves it: kept whole, so that an
// update writes back every field this code does not know.
type secretObject struct {
	raw     map[string]json.RawMessage
	version string
	data    map[string][]byte
}

func (s *Secret) Get(bucket, name string) ([]byte, error) {
	if err := checkName(bucket, name); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	obj, err := s.read(ctx)
	if err != nil {
		return nil, err
	}
	return obj.data[DataKey(bucket, name)], nil
}

func (s *Secret) List(bucket string) (map[string][]byte, error) {
	if err := checkName(bucket, "x"); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	obj, err := s.read(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for k, v := range obj.data {
		name, ok := strings.CutPrefix(k, bucket+".")
		if ok && checkName(bucket, name) == nil {
			out[name] = v
		}
	}
	return out, nil
}

func (s *Secret) Update(bucket, name string, fn func(cur []byte) ([]byte, error)) error {
	if err := checkName(bucket, name); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	key := DataKey(bucket, name)
	for attempt := 0; ; attempt++ {
		obj, err := s.read(ctx)
		if err != nil {
			return err
		}
		cur := obj.data[key]
		next, err := fn(cur)
		if err != nil {
			return err
		}
		if (next == nil && cur == nil) || (next != nil && cur != nil && bytes.Equal(cur, next)) {
			return nil
		}
		if next == nil {
			delete(obj.data, key)
		} else {
			obj.data[key] = next
		}
		err = s.write(ctx, obj)
		if !errors.Is(err, errConflict) {
			return err
		}
		if attempt+1 >= maxConflicts {
			return fmt.Errorf("%s: %d updates lost to other writers in a row: %w", s, maxConflicts, err)
		}
		// Another replica or the controller wrote in between: read again.
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", s, ctx.Err())
		case <-time.After(time.Duration(5+rand.IntN(20)) * time.Millisecond):
		}
	}
}

var errConflict = errors.New("conflict")

func (s *Secret) read(ctx context.Context) (*secretObject, error) {
	body, status, err := s.do(ctx, http.MethodGet, nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, s.statusError("read", status, body)
	}
	obj := &secretObject{data: map[string][]byte{}}
	if err := json.Unmarshal(body, &obj.raw); err != nil {
		return nil, fmt.Errorf("%s: response: %w", s, err)
	}
	var meta struct {
		ResourceVersion string `json:"resourceVersion"`
	}
	if err := json.Unmarshal(obj.raw["metadata"], &meta); err != nil || meta.ResourceVersion == "" {
		return nil, fmt.Errorf("%s: response has no resourceVersion", s)
	}
	obj.version = meta.ResourceVersion
	if d, ok := obj.raw["data"]; ok && string(d) != "null" {
		// encoding/json decodes base64 into []byte.
		if err := json.Unmarshal(d, &obj.data); err != nil {
			return nil, fmt.Errorf("%s: data: %w", s, err)
		}
	}
	return obj, nil
}

func (s *Secret) write(ctx context.Context, obj *secretObject) error {
	data := make(map[string]string, len(obj.data))
	for k, v := range obj.data {
		data[k] = base64.StdEncoding.EncodeToString(v)
	}
	raw := make(map[string]json.RawMessage, len(obj.raw)+1)
	for k, v := range obj.raw {
		raw[k] = v
	}
	var err error
	if raw["data"], err = json.Marshal(data); err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	body, err := json.Marshal(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	resp, status, err := s.do(ctx, http.MethodPut, body)
	if err != nil {
		return err
	}
	switch status {
	case http.StatusOK, http.StatusCreated:
		return nil
	case http.StatusConflict:
		return errConflict
	}
	return s.statusError("update", status, resp)
}

func (s *Secret) do(ctx context.Context, method string, body []byte) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.url, bytes.NewReader(body))
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", s, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.kube.Token != nil {
		tok, err := s.kube.Token()
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", s, err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := s.kube.Client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", s, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxSecretBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("%s: response: %w", s, err)
	}
	if len(b) > maxSecretBytes {
		return nil, 0, fmt.Errorf("%s: response larger than %d bytes", s, maxSecretBytes)
	}
	return b, resp.StatusCode, nil
}

// statusError turns a failed call into an error with the API server's
// message (a Status object) and what to do about the common ones.
func (s *Secret) statusError(op string, status int, body []byte) error {
	var st struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(body, &st)
	msg := st.Message
	if msg == "" {
		msg = http.StatusText(status)
	}
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	hint := ""
	switch status {
	case http.StatusNotFound:
		hint = " (the controller creates it)"
	case http.StatusForbidden, http.StatusUnauthorized:
		hint = " (the gateway's Role must allow get and update on it)"
	}
	return fmt.Errorf("%s: %s: %d %s%s", s, op, status, msg, hint)
}
