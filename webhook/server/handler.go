package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/webhook/inject"
)

// Path is where the injector's webhook is served.
const Path = "/mutate-v1-pod"

// Event reasons and action.
const (
	EventReasonSkipped = "InjectionSkipped"
	eventAction        = "Inject"
)

// Handler is the injector's admission.Handler.
type Handler struct {
	cfg      inject.Config
	decoder  admission.Decoder
	recorder events.EventRecorder
}

// NewHandler returns a Handler injecting with cfg. recorder may be nil (no
// Events).
func NewHandler(cfg inject.Config, scheme *runtime.Scheme, recorder events.EventRecorder) *Handler {
	return &Handler{cfg: cfg, decoder: admission.NewDecoder(scheme), recorder: recorder}
}

// Handle answers one admission request.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	resp, result := h.handle(ctx, req)
	admissionDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return resp
}

func (h *Handler) handle(ctx context.Context, req admission.Request) (admission.Response, string) {
	lg := log.FromContext(ctx).WithName("injector")
	if req.Operation != admissionv1.Create || req.Kind.Group != "" || req.Kind.Kind != "Pod" {
		return admission.Allowed("not a pod creation"), resultSkipped
	}
	pod := &corev1.Pod{}
	if err := h.decoder.Decode(req, pod); err != nil {
		lg.Error(err, "cannot decode pod")
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode pod: %w", err)), resultError
	}
	origNamespace := pod.Namespace
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	lg = lg.WithValues("pod", name, "namespace", pod.Namespace)

	mutated, rep, err := inject.Inject(pod, h.cfg)
	var annErr *inject.AnnotationError
	switch {
	case errors.As(err, &annErr):
		deniedTotal.Inc()
		lg.Info("denied pod", "error", err.Error())
		return admission.Denied(err.Error()), resultDenied
	case err != nil:
		lg.Error(err, "cannot inject pod")
		return admission.Errored(http.StatusInternalServerError, err), resultError
	case !rep.Injected:
		return h.skipped(ctx, req, pod, rep.Reason), resultSkipped
	}

	mutated.Namespace = origNamespace // the patch must not add a namespace the request did not carry
	raw, err := json.Marshal(mutated)
	if err != nil {
		lg.Error(err, "cannot encode pod")
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encode pod: %w", err)), resultError
	}
	resp := admission.PatchResponseFromRaw(req.Object.Raw, raw)
	if !resp.Allowed {
		lg.Error(errors.New(resp.Result.Message), "cannot compute patch")
		return resp, resultError
	}
	injectedTotal.Inc()
	lg.Info("injected pod", "status", rep.Status, "native", h.cfg.NativeSidecar, "redirect", string(h.cfg.RedirectMode))
	return resp, resultInjected
}

// skipped explains a skip: always a metric and a log line; when the pod
// asked for injection, also a warning to the client and an Event on the
// pod's controller.
func (h *Handler) skipped(ctx context.Context, req admission.Request, pod *corev1.Pod, reason string) admission.Response {
	lg := log.FromContext(ctx).WithName("injector")
	skippedTotal.WithLabelValues(reason).Inc()
	resp := admission.Allowed(reason)
	if !askedForInjection(reason) {
		lg.V(1).Info("skipped pod", "reason", reason, "namespace", pod.Namespace)
		return resp
	}
	note := "skiff: pod not injected: " + reason
	if reason == inject.ReasonInvalidInject {
		note = fmt.Sprintf("skiff: pod not injected: annotation %s is %q, want \"true\" or \"false\"",
			contract.InjectAnnotation, pod.Annotations[contract.InjectAnnotation])
	}
	resp = resp.WithWarnings(note)
	owner := metav1.GetControllerOf(pod)
	lg.Info("skipped pod that asked for injection", "reason", reason, "namespace", pod.Namespace, "owner", ownerString(owner))
	if h.recorder != nil && owner != nil && (req.DryRun == nil || !*req.DryRun) {
		ref := &corev1.ObjectReference{
			APIVersion: owner.APIVersion,
			Kind:       owner.Kind,
			Name:       owner.Name,
			Namespace:  pod.Namespace,
			UID:        owner.UID,
		}
		h.recorder.Eventf(ref, nil, corev1.EventTypeWarning, EventReasonSkipped, eventAction, "%s", note)
	}
	return resp
}

// askedForInjection reports a skipped pod whose owner would expect a
// sidecar: it carries skiff.io/inject other than "false" and is not
// injected already.
func askedForInjection(reason string) bool {
	switch reason {
	case inject.ReasonNotAnnotated, inject.ReasonOptedOut, inject.ReasonAlreadyInjected:
		return false
	}
	return true
}

func ownerString(o *metav1.OwnerReference) string {
	if o == nil {
		return ""
	}
	return o.Kind + "/" + o.Name
}
