package server

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/webhook/inject"
)

func testConfig() inject.Config {
	return inject.Config{
		SidecarImage:   "skiff-router:test",
		ControllerAddr: "skiff-controller.site-a.svc:15010",
		Site:           "site-a",
		Namespace:      "site-a",
		NativeSidecar:  true,
	}
}

func request(t *testing.T, pod *corev1.Pod, mods ...func(*admission.Request)) admission.Request {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "42",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: "site-a",
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}}
	for _, m := range mods {
		m(&req)
	}
	return req
}

func pod(annotations map[string]string, owned bool) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
	}
	if owned {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9", UID: "rs-uid", Controller: &yes}}
	}
	return p
}

func counter(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestHandle(t *testing.T) {
	yes := map[string]string{contract.InjectAnnotation: "true"}
	type want struct {
		Allowed  bool
		Code     int32
		Message  string
		Patched  bool
		Warnings []string
		Events   []string
	}
	for _, tc := range []struct {
		name string
		req  func(t *testing.T) admission.Request
		want want
	}{
		{"injected", func(t *testing.T) admission.Request { return request(t, pod(yes, false)) },
			want{Allowed: true, Patched: true}},
		{"not annotated", func(t *testing.T) admission.Request { return request(t, pod(nil, true)) },
			want{Allowed: true, Code: http.StatusOK, Message: inject.ReasonNotAnnotated}},
		{"host network, owned: warning and event", func(t *testing.T) admission.Request {
			p := pod(yes, true)
			p.Spec.HostNetwork = true
			return request(t, p)
		}, want{Allowed: true, Code: http.StatusOK, Message: inject.ReasonHostNetwork,
			Warnings: []string{"skiff: pod not injected: host network"},
			Events:   []string{"Warning InjectionSkipped skiff: pod not injected: host network"}}},
		{"invalid inject value, bare pod: warning, no event", func(t *testing.T) admission.Request {
			return request(t, pod(map[string]string{contract.InjectAnnotation: "yes"}, false))
		}, want{Allowed: true, Code: http.StatusOK, Message: inject.ReasonInvalidInject,
			Warnings: []string{`skiff: pod not injected: annotation skiff.io/inject is "yes", want "true" or "false"`}}},
		{"dry run: no event", func(t *testing.T) admission.Request {
			p := pod(yes, true)
			p.Namespace = "kube-system"
			dry := true
			return request(t, p, func(r *admission.Request) { r.Namespace = "kube-system"; r.DryRun = &dry })
		}, want{Allowed: true, Code: http.StatusOK, Message: inject.ReasonSystemNamespace,
			Warnings: []string{"skiff: pod not injected: system namespace"}}},
		{"bad annotation: denied", func(t *testing.T) admission.Request {
			return request(t, pod(map[string]string{contract.InjectAnnotation: "true", contract.ConfigProxyMemoryAnnotation: "lots"}, true))
		}, want{Code: http.StatusForbidden,
			Message: `annotation config.skiff.io/proxy-memory: "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`}},
		{"update: allowed untouched", func(t *testing.T) admission.Request {
			return request(t, pod(yes, false), func(r *admission.Request) { r.Operation = admissionv1.Update })
		}, want{Allowed: true, Code: http.StatusOK, Message: "not a pod creation"}},
		{"garbage: bad request", func(t *testing.T) admission.Request {
			r := request(t, pod(yes, false))
			r.Object.Raw = []byte("{")
			return r
		}, want{Code: http.StatusBadRequest, Message: "decode pod: couldn't get version/kind; json parse error: unexpected end of JSON input"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := events.NewFakeRecorder(10)
			h := NewHandler(testConfig(), clientgoscheme.Scheme, rec)
			injected, denied := counter(t, injectedTotal), counter(t, deniedTotal)

			resp := h.Handle(t.Context(), tc.req(t))

			got := want{Allowed: resp.Allowed, Patched: len(resp.Patches) > 0, Warnings: resp.Warnings}
			if resp.Result != nil {
				got.Code, got.Message = resp.Result.Code, resp.Result.Message
			}
			close(rec.Events)
			for e := range rec.Events {
				got.Events = append(got.Events, e)
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("response (-got +want):\n%s", diff)
			}
			if got.Patched {
				if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
					t.Errorf("patch type %v", resp.PatchType)
				}
				for _, p := range resp.Patches {
					if p.Path == "/metadata/namespace" {
						t.Errorf("patch adds the namespace: %+v", p)
					}
				}
			}
			wantInjected, wantDenied := injected, denied
			if tc.want.Patched {
				wantInjected++
			}
			if tc.want.Code == http.StatusForbidden {
				wantDenied++
			}
			if c := counter(t, injectedTotal); c != wantInjected {
				t.Errorf("injected_total %v, want %v", c, wantInjected)
			}
			if c := counter(t, deniedTotal); c != wantDenied {
				t.Errorf("denied_total %v, want %v", c, wantDenied)
			}
		})
	}
}
