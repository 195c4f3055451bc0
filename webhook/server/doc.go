// Package server is the injector's admission handler: it decodes the Pod of
// an admission request, calls inject.Inject, and answers with a JSON patch,
// an allowance that names the skip reason, or a denial naming the bad
// config.skiff.io/ annotation. It counts every outcome in Prometheus
// metrics and, for pods that asked for injection but were skipped, records
// an Event on the pod's controller (pods have no UID yet at CREATE, so the
// pod itself cannot hold an Event) and warns the client.
package server
