package certs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ErrNoWebhookConfig is returned by EnsureCABundle when the
// MutatingWebhookConfiguration does not exist (yet).
var ErrNoWebhookConfig = errors.New("mutating webhook configuration not found")

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// EnsureCABundle sets the caBundle of every webhook in the
// MutatingWebhookConfiguration name to ca, patching only the webhooks whose
// caBundle differs. The JSON patch tests each webhook's name before
// replacing its caBundle, so a concurrent edit of the list (a Helm
// upgrade) makes the patch fail instead of landing on the wrong webhook.
// It returns how many webhooks it patched.
func EnsureCABundle(ctx context.Context, r client.Reader, w client.Writer, name string, ca []byte) (int, error) {
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	if err := r.Get(ctx, client.ObjectKey{Name: name}, &cfg); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, fmt.Errorf("%w: %s", ErrNoWebhookConfig, name)
		}
		return 0, fmt.Errorf("get mutating webhook configuration %s: %w", name, err)
	}
	var ops []patchOp
	for i, wh := range cfg.Webhooks {
		if bytes.Equal(wh.ClientConfig.CABundle, ca) {
			continue
		}
		p := "/webhooks/" + strconv.Itoa(i)
		ops = append(ops,
			patchOp{Op: "test", Path: p + "/name", Value: wh.Name},
			patchOp{Op: "add", Path: p + "/clientConfig/caBundle", Value: ca}, // []byte marshals as base64, as the API wants
		)
	}
	if len(ops) == 0 {
		return 0, nil
	}
	raw, err := json.Marshal(ops)
	if err != nil {
		return 0, fmt.Errorf("marshal caBundle patch: %w", err)
	}
	if err := w.Patch(ctx, &cfg, client.RawPatch(types.JSONPatchType, raw)); err != nil {
		return 0, fmt.Errorf("patch caBundle of %s: %w", name, err)
	}
	return len(ops) / 2, nil
}
