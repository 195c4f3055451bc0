package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/skiff-io/skiff/cli/render"
	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/names"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/token"
)

// maxTokenFile bounds what link create reads: a token file is about 3 KiB.
const maxTokenFile = 1 << 20

// readTokenFile reads a token file, at most maxTokenFile bytes: a token
// request Secret that `token create` writes on a Kubernetes site (or one
// exported by hand, as YAML or JSON), or a LinkToken that `token create
// --site-file` and `skiff-router token issue` write on a Linux site. It
// returns the Secret's name ("" for a LinkToken), the token, and the
// token parsed; the token is not checked yet (checkLinkToken).
func readTokenFile(file string) (name string, data []byte, tok *token.Token, err error) {
	b, err := readLimited(file, maxTokenFile)
	if err != nil {
		return "", nil, nil, fmt.Errorf("reading the token file: %w", err)
	}
	var head struct {
		Kind string `json:"kind"`
	}
	if err := yaml.Unmarshal(b, &head); err != nil {
		return "", nil, nil, fmt.Errorf("%s is not a token file (a Secret manifest or a LinkToken): %w", file, err)
	}
	switch head.Kind {
	case token.Kind:
		data = b
	case "Secret":
		if name, data, err = secretToken(file, b); err != nil {
			return "", nil, nil, err
		}
	default:
		return "", nil, nil, fmt.Errorf("%s holds a %q, not a Secret or a %s: make one with `skiff token create FILE` on the site to link to", file, head.Kind, token.Kind)
	}
	tok, err = token.Parse(data)
	if err != nil {
		return "", nil, nil, fmt.Errorf("the token in %s: %w", file, err)
	}
	return name, data, tok, nil
}

// secretToken returns the name and the token of b, a Secret manifest.
func secretToken(file string, b []byte) (name string, data []byte, err error) {
	var sec corev1.Secret
	if err := yaml.Unmarshal(b, &sec); err != nil {
		return "", nil, fmt.Errorf("%s is not a Secret manifest: %w", file, err)
	}
	data = sec.Data[contract.TokenKey]
	if len(data) == 0 {
		return "", nil, fmt.Errorf("the Secret in %s has no data %s: was it exported before its site's controller filled it in?", file, contract.TokenKey)
	}
	return sec.Name, data, nil
}

// readLimited reads the file at path, refusing one over max bytes
// without reading it all.
func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is over %d bytes: not a token file", path, max)
	}
	return b, nil
}

// checkLinkToken checks the token of file before a site links with it,
// as both kinds of site do: it is as its site issued it (signed by its
// CA, not edited since), a link token (not a member token, for its
// site's own sidecars), and not expired. notOwn checks the rest.
func checkLinkToken(e *env, tok *token.Token, file string, now time.Time) error {
	if err := tok.VerifyIntegrity(); err != nil {
		return fmt.Errorf("the token in %s cannot be used: %w", file, err)
	}
	if tok.IsMember() {
		return fmt.Errorf("the token in %s is a member token, for site %s's own sidecars: make a link token there with `%s token create FILE`", file, tok.Site, e.name)
	}
	if !now.Before(tok.Expires) {
		return fmt.Errorf("the token of site %s expired at %s: make a new one there with `%s token create FILE`", tok.Site, tok.Expires.UTC().Format(time.RFC3339), e.name)
	}
	return nil
}

// notOwn refuses the token of self, the site that would link with it.
func notOwn(tok *token.Token, file, self string) error {
	if tok.Site == self {
		return fmt.Errorf("the token in %s is this site's own (%s): create the link on the other site", file, self)
	}
	return nil
}

// linkOptions checks link create's --cost and returns it, with the
// link's name: --name, else the name in the token file, else
// link-to-PEER.
func linkOptions(e *env, fileName string, tok *token.Token) (name string, cost int, err error) {
	cost = e.num("cost")
	if cost < 1 || cost > netview.MaxCost {
		return "", 0, usageError{fmt.Sprintf("--cost %d: want a whole number from 1 to %d", cost, netview.MaxCost)}
	}
	name = cmpOr(e.str("name"), cmpOr(fileName, "link-to-"+tok.Site))
	if err := names.CheckSite(name); err != nil {
		return "", 0, usageError{fmt.Sprintf("link name %q: a name of at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit (--name)", name)}
	}
	return name, cost, nil
}

// linkCreate makes a link Secret from a token file, and waits for the
// controller to take it (it writes the link into the gateway's site) or
// to say why not.
func linkCreate(ctx context.Context, e *env, args []string) error {
	fileName, data, tok, err := readTokenFile(args[0])
	if err != nil {
		return err
	}
	name, cost, err := linkOptions(e, fileName, tok)
	if err != nil {
		return err
	}
	if err := checkLinkToken(e, tok, args[0], time.Now()); err != nil {
		return err
	}
	s, st, err := e.kubeStatus(ctx)
	if err != nil {
		return err
	}
	if err := notOwn(tok, args[0], st.Site); err != nil {
		return err
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.ns,
		Labels:      map[string]string{contract.TypeLabel: "link"},
		Annotations: map[string]string{contract.CostAnnotation: strconv.Itoa(cost)}},
		Data: map[string][]byte{contract.TokenKey: data}}
	if err := s.c.Create(ctx, sec); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("a Secret %s already exists in namespace %s: choose another name with --name, or `%s link delete %s` first", name, s.ns, e.name, name)
		}
		return fmt.Errorf("creating the link %s/%s: %w", s.ns, name, err)
	}
	up, err := s.waitLink(ctx, st.Site, name, tok.Site, e.dur("timeout"))
	if err != nil {
		return err
	}
	state := "it is up"
	if !up {
		state = fmt.Sprintf("it is not up yet: `%s link list` shows its state", e.name)
	}
	fmt.Fprintf(e.out, "Link %s to site %s created (cost %d); %s.\n", name, tok.Site, cost, state)
	return nil
}

// waitLink waits, up to timeout, until the link name to peer is up in the
// site's status, or until the controller records a warning about it
// (an error). A link not up by then is no error: the peer may be
// unreachable for a while, and the gateway keeps dialling it.
func (s *site) waitLink(ctx context.Context, self, name, peer string, timeout time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	created := time.Now().Add(-time.Second)
	for {
		if st, err := s.status(ctx); err == nil && linkedTo(st, self, peer) {
			return true, nil
		}
		if w, err := s.warnings(ctx, "Secret", name, 1); err == nil && len(w) > 0 && w[0].Time.After(created) {
			return false, fmt.Errorf("the controller refused the link %s/%s: %s: %s", s.ns, name, w[0].Reason, w[0].Message)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return false, nil
			}
			return false, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// linkedTo says whether the status shows a link of self to peer.
func linkedTo(st *model.SiteStatus, self, peer string) bool {
	for _, site := range st.Sites {
		if site.Name != self {
			continue
		}
		return slices.ContainsFunc(site.Links, func(l model.Link) bool { return l.Peer == peer })
	}
	return false
}

// linkState is the peer of the link made with the token data (read
// with err) and its state in st: up, down, or invalid and why.
func linkState(st *model.SiteStatus, data []byte, err error) (peer, state string) {
	var tok *token.Token
	if err == nil {
		tok, err = token.Parse(data)
	}
	switch {
	case err != nil:
		return "", "invalid: " + err.Error()
	case linkedTo(st, st.Site, tok.Site):
		return tok.Site, "up"
	}
	return tok.Site, "down"
}

// linkRow is one link Secret of the site, as link list and status show it.
type linkRow struct {
	Name  string    `json:"name"`
	Peer  string    `json:"peer"`
	Cost  int       `json:"cost"`
	State string    `json:"state"` // up, down, or invalid: why
	Since time.Time `json:"created"`
}

// links lists the site's link Secrets with their state in st.
func (s *site) links(ctx context.Context, st *model.SiteStatus) ([]linkRow, error) {
	var list corev1.SecretList
	if err := s.c.List(ctx, &list, client.InNamespace(s.ns), client.MatchingLabels{contract.TypeLabel: "link"}); err != nil {
		return nil, fmt.Errorf("listing the links of namespace %s: %w", s.ns, err)
	}
	rows := make([]linkRow, 0, len(list.Items))
	for _, sec := range list.Items {
		r := linkRow{Name: sec.Name, Cost: 1, Since: sec.CreationTimestamp.Time}
		if c, err := strconv.Atoi(sec.Annotations[contract.CostAnnotation]); err == nil {
			r.Cost = c
		}
		r.Peer, r.State = linkState(st, sec.Data[contract.TokenKey], nil)
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b linkRow) int { return strings.Compare(a.Name, b.Name) })
	return rows, nil
}

func linkList(ctx context.Context, e *env, _ []string) error {
	if err := render.CheckFormat(e.opts.output); err != nil {
		return usageError{err.Error()}
	}
	var rows []linkRow
	if e.opts.siteFile != "" {
		l, err := e.linux()
		if err != nil {
			return err
		}
		doc, err := l.view(ctx)
		if err != nil {
			return err
		}
		rows = l.links(l.status(doc))
	} else {
		s, st, err := e.kubeStatus(ctx)
		if err != nil {
			return err
		}
		if rows, err = s.links(ctx, st); err != nil {
			return err
		}
	}
	return e.show(rows, func() []render.Table { return []render.Table{linkTable(rows, time.Now())} })
}

func linkTable(rows []linkRow, now time.Time) render.Table {
	t := render.Table{Headers: []string{"name", "peer", "cost", "state", "age"}, Empty: "No links: make one with `skiff link create FILE`."}
	for _, r := range rows {
		t.Rows = append(t.Rows, []string{r.Name, dash(r.Peer), strconv.Itoa(r.Cost), r.State, age(now, r.Since)})
	}
	return t
}

func linkDelete(ctx context.Context, e *env, args []string) error {
	s, err := e.kube()
	if err != nil {
		return err
	}
	var sec corev1.Secret
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: args[0]}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("no link %s in namespace %s (`%s link list` lists them)", args[0], s.ns, e.name)
		}
		return fmt.Errorf("reading %s/%s: %w", s.ns, args[0], err)
	}
	if t := sec.Labels[contract.TypeLabel]; t != "link" {
		return fmt.Errorf("the Secret %s/%s is not a link (label %s=%q): not deleted", s.ns, args[0], contract.TypeLabel, t)
	}
	if err := s.c.Delete(ctx, &sec, client.Preconditions{UID: &sec.UID}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the link %s/%s: %w", s.ns, args[0], err)
	}
	fmt.Fprintf(e.out, "Link %s deleted.\n", args[0])
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age is how long ago t was, as kubectl prints it: 45s, 12m, 3h, 5d.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < 2*time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}
