package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/sidecar/router"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
)

// caPoll is how often a running gateway reads its CA dir for a rotation
// (a Linux site's `skiff-router ca rotate`, or the Kubernetes Secret
// skiff-site-ca that the kubelet updates in the pod).
var caPoll = 2 * time.Second

// watchCA gives the router the site CA whenever the files of the CA dir
// change: a rotation started or finished. Files that do not load (half
// written, or a hand edit gone wrong) are reported and the running CA
// kept; they are read again at the next change.
func watchCA(ctx context.Context, dir, siteName string, r *router.Router, log logr.Logger) {
	last := caFiles(dir)
	t := time.NewTicker(caPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := caFiles(dir)
		if bytes.Equal(cur, last) {
			continue
		}
		ca, err := pki.LoadCA(dir)
		if err != nil {
			log.Error(err, "site CA files changed but do not load; keeping the running CA", "dir", dir)
			last = cur // reported once; read again when they change
			continue
		}
		if err := r.SetCA(ca); err != nil {
			log.Error(err, "site CA not replaced", "dir", dir)
			continue
		}
		last = cur
	}
}

// caFiles returns the contents of the CA dir's certificates, to notice a
// change (nil parts for missing files).
func caFiles(dir string) []byte {
	var b bytes.Buffer
	for _, f := range []string{pki.CACertFile, pki.CAPrevCertFile} {
		data, _ := os.ReadFile(filepath.Join(dir, f))
		b.Write(data)
		b.WriteByte(0)
	}
	return b.Bytes()
}

// RotateCA starts a rotation of the CA of the Linux site in siteFile:
// the CA becomes the previous one and a new CA the current. Running
// gateways of the site take it within seconds; the previous CA stays
// trusted until FinishCARotation.
func RotateCA(siteFile string) (*pki.CA, error) {
	site, err := sitefile.Load(siteFile)
	if err != nil {
		return nil, err
	}
	if err := pki.RotateCA(site.CADir, site.Name); err != nil {
		return nil, err
	}
	return pki.LoadCA(site.CADir)
}

// FinishCARotation ends the rotation of the CA of the Linux site in
// siteFile: the previous CA is removed and no longer trusted.
func FinishCARotation(siteFile string) error {
	site, err := sitefile.Load(siteFile)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(site.CADir, pki.CAPrevCertFile)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("site %s: no CA rotation under way in %s", site.Name, site.CADir)
	}
	return pki.FinishCARotation(site.CADir)
}
