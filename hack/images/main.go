// Command mkimage builds a single-layer container image from static
// binaries on an empty base and writes it as an image tarball (the format
// of "docker save", which "ctr images import" and "docker load" accept).
// It lives in its own module so that skiff's go.mod does not gain
// go-containerregistry; run it with "go run" from this directory:
//
//	go run . -o bin/images/skiff-echo-0.1.0.tar -name skiff.local/skiff-echo:0.1.0 \
//	    -binary bin/skiff-echo -user 65532 -title skiff-echo -version 0.1.0
//
// The binary lands at /<basename> and is the entrypoint; -file SRC:DST adds
// more files. Nothing else is in the image (no shell, no libc), plus an empty
// /tmp (mode 1777) for programs that need a temporary directory.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	var (
		out     = flag.String("o", "", "output tarball (required)")
		ref     = flag.String("name", "", "image reference, e.g. skiff.local/skiff-echo:0.1.0 (required)")
		binary  = flag.String("binary", "", "static binary: copied to /<basename> and used as the entrypoint (required)")
		user    = flag.String("user", "65532", "user (uid or uid:gid) the image runs as")
		title   = flag.String("title", "", "org.opencontainers.image.title (default: the binary's name)")
		source  = flag.String("source", "https://github.com/skiff-io/skiff", "org.opencontainers.image.source")
		version = flag.String("version", "", "org.opencontainers.image.version (default: the reference's tag)")
		extra   files
	)
	flag.Var(&extra, "file", "extra file SRC:DST to add (repeatable)")
	flag.Parse()
	if *out == "" || *ref == "" || *binary == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*out, *ref, *binary, *user, *title, *source, *version, extra); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(out, ref, binary, user, title, source, version string, extra []string) error {
	tag, err := name.NewTag(ref, name.WeakValidation)
	if err != nil {
		return fmt.Errorf("image name %q: %w", ref, err)
	}
	entry := "/" + filepath.Base(binary)
	if title == "" {
		title = filepath.Base(binary)
	}
	if version == "" {
		version = tag.TagStr()
	}
	layer, err := buildLayer(append([]string{binary + ":" + entry}, extra...))
	if err != nil {
		return err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer})
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = []string{entry}
	cf.Config.Cmd = nil
	cf.Config.User = user
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/"}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   title,
		"org.opencontainers.image.source":  source,
		"org.opencontainers.image.version": version,
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, out)
}

// buildLayer returns an uncompressed tar layer holding /tmp and every
// SRC:DST file (owned by root, mode kept from SRC), with parent directories.
func buildLayer(specs []string) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	addDir := func(d string, mode int64) error {
		if d == "." || d == "/" || d == "" || dirs[d] {
			return nil
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode, Format: tar.FormatPAX})
	}
	if err := addDir("tmp", 0o1777); err != nil {
		return nil, err
	}
	for _, s := range specs {
		src, dst, ok := strings.Cut(s, ":")
		if !ok || src == "" || dst == "" {
			return nil, fmt.Errorf("file %q: want SRC:DST", s)
		}
		dst = strings.TrimPrefix(path.Clean("/"+dst), "/")
		var parents []string
		for d := path.Dir(dst); d != "."; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if err := addDir(d, 0o755); err != nil {
				return nil, err
			}
		}
		f, err := os.Open(src)
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: dst, Mode: int64(st.Mode().Perm()), Size: st.Size(), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			f.Close()
			return nil, err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}
