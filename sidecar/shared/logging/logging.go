// Package logging builds the zap-backed logr.Logger that every skiff main
// uses: JSON lines by default (what `kubectl logs` users parse), a console
// encoder with --zap-devel. Only mains build loggers with it; everything
// else takes a logr.Logger. Its [Limiter] bounds how often a repeated
// line (a refusal under a flood) is logged, and is used beyond mains.
package logging

import (
	"flag"
	"fmt"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Options are the logging flags.
type Options struct {
	Devel bool
	Level string // debug, info or error
}

// AddFlags registers --zap-devel and --log-level.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.BoolVar(&o.Devel, "zap-devel", false, "log human-readable console lines instead of JSON")
	fs.StringVar(&o.Level, "log-level", "info", "log level: debug (adds V(1) lines), info, or error (errors only)")
}

// Validate reports an unknown level.
func (o *Options) Validate() error {
	switch o.Level {
	case "info", "debug", "error":
		return nil
	}
	return fmt.Errorf("--log-level %q: want debug, info or error", o.Level)
}

// New returns the logger and a function that flushes it.
func New(o Options, name string) (logr.Logger, func(), error) {
	if err := o.Validate(); err != nil {
		return logr.Discard(), func() {}, err
	}
	var cfg zap.Config
	if o.Devel {
		cfg = zap.NewDevelopmentConfig()
	} else {
		cfg = zap.NewProductionConfig()
		cfg.Sampling = nil
		cfg.EncoderConfig.TimeKey = "ts"
		cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	}
	cfg.Level = zap.NewAtomicLevelAt(zapcore.InfoLevel)
	switch o.Level {
	case "debug":
		cfg.Level = zap.NewAtomicLevelAt(zapcore.DebugLevel)
	case "error":
		cfg.Level = zap.NewAtomicLevelAt(zapcore.ErrorLevel)
	}
	zl, err := cfg.Build()
	if err != nil {
		return logr.Discard(), func() {}, fmt.Errorf("build logger: %w", err)
	}
	return zapr.NewLogger(zl).WithName(name), func() { _ = zl.Sync() }, nil
}
