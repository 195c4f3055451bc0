package server

import (
	"fmt"

	"github.com/go-logr/logr"
)

// gcpLogger bridges go-control-plane's printf-style logger to logr: the
// message is constant ("goControlPlane") and the formatted text goes to
// the "detail" key. Debug and info are V(1) and formatted only when V(1)
// is enabled; warnings are V(0); errors are errors.
type gcpLogger struct{ log logr.Logger }

const gcpMessage = "goControlPlane"

func (l gcpLogger) Debugf(format string, args ...any) { l.v1(format, args) }
func (l gcpLogger) Infof(format string, args ...any)  { l.v1(format, args) }

func (l gcpLogger) Warnf(format string, args ...any) {
	l.log.Info(gcpMessage, "level", "warning", "detail", fmt.Sprintf(format, args...))
}

func (l gcpLogger) Errorf(format string, args ...any) {
	l.log.Error(nil, gcpMessage, "detail", fmt.Sprintf(format, args...))
}

func (l gcpLogger) v1(format string, args []any) {
	if v := l.log.V(1); v.Enabled() {
		v.Info(gcpMessage, "detail", fmt.Sprintf(format, args...))
	}
}
