package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/names"
	"github.com/skiff-io/skiff/sidecar/shared/token"
)

// pollEvery is how often a command that waits for the controller looks.
const pollEvery = 250 * time.Millisecond

// tokenCreate makes a token-request Secret, waits for the controller to
// fill it in, and writes a copy that applies cleanly in another site
// (kubectl apply, or skiff link create): the label, the token, and no
// field of this cluster's (namespace, uid, resourceVersion, ...).
func tokenCreate(ctx context.Context, e *env, args []string) error {
	file := args[0]
	ttl, err := tokenLimits(e)
	if err != nil {
		return err
	}
	s, st, err := e.kubeStatus(ctx)
	if err != nil {
		return err
	}
	name := e.str("name")
	if name == "" {
		name = "link-to-" + st.Site
	}
	if err := names.CheckSite(name); err != nil { // a Secret name; a label is the safe subset
		return usageError{fmt.Sprintf("--name %q: a Secret name of at most 63 lower-case letters, digits and '-'", name)}
	}
	req := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.ns,
		Labels: map[string]string{contract.TypeLabel: "token-request"},
		Annotations: map[string]string{contract.ExpiresAnnotation: ttl.String(),
			contract.RedemptionsAnnotation: strconv.Itoa(e.num("uses"))}}}
	if err := s.c.Create(ctx, req); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("a Secret %s already exists in namespace %s: choose another name with --name (deleting a token request revokes its token and the links made with it)", name, s.ns)
		}
		return fmt.Errorf("creating the token request %s/%s: %w", s.ns, name, err)
	}
	data, err := s.waitToken(ctx, name, e.dur("timeout"))
	if err != nil {
		return err
	}
	tok, err := token.Parse(data)
	if err != nil {
		return fmt.Errorf("the controller's token in %s/%s: %w", s.ns, name, err)
	}
	out, err := tokenFile(name, data)
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, out, 0o600); err != nil {
		return fmt.Errorf("writing the token: %w", err)
	}
	fmt.Fprintf(e.out, "%s\nOn the other site: %s link create %s\n", tokenWritten(tok, file, e.num("uses")), e.name, file)
	return nil
}

// tokenLimits checks token create's --expires and --uses, and returns
// the first.
func tokenLimits(e *env) (time.Duration, error) {
	ttl, err := time.ParseDuration(e.str("expires"))
	if err != nil || ttl <= 0 {
		return 0, usageError{fmt.Sprintf("--expires %q: want a positive Go duration such as 15m or 2h", e.str("expires"))}
	}
	if e.num("uses") < 1 {
		return 0, usageError{fmt.Sprintf("--uses %d: want a whole number >= 1", e.num("uses"))}
	}
	return ttl, nil
}

// tokenWritten says that tok, redeemable by uses sites, is in file.
func tokenWritten(tok *token.Token, file string, uses int) string {
	return fmt.Sprintf("Token of site %s written to %s: redeemable %s by %d site(s), until %s.",
		tok.Site, file, plural(uses, "once", "times"), uses, tok.Expires.UTC().Format(time.RFC3339))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return strconv.Itoa(n) + " " + many
}

// waitToken waits until the controller filled the request name in, or
// recorded why it will not.
func (s *site) waitToken(ctx context.Context, name string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		var sec corev1.Secret
		err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: name}, &sec)
		if err == nil && len(sec.Data[contract.TokenKey]) > 0 {
			return sec.Data[contract.TokenKey], nil
		}
		if err == nil {
			if w, werr := s.warnings(ctx, "Secret", name, 1); werr == nil && len(w) > 0 {
				return nil, fmt.Errorf("the controller refused the token request %s/%s: %s: %s", s.ns, name, w[0].Reason, w[0].Message)
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("no token in %s/%s after %s: is the site's controller running? (kubectl get pods -n %s)", s.ns, name, timeout, s.ns)
			}
			return nil, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// tokenFile is the manifest of a token request that another site applies:
// kind, name, the label and the token, nothing of this cluster's.
func tokenFile(name string, data []byte) ([]byte, error) {
	type meta struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	}
	m := struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   meta              `json:"metadata"`
		Data       map[string][]byte `json:"data"`
	}{"v1", "Secret", meta{name, map[string]string{contract.TypeLabel: "token-request"}}, map[string][]byte{contract.TokenKey: data}}
	b, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding the token file: %w", err)
	}
	return b, nil
}
