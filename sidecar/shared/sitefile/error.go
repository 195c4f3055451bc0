package sitefile

import "fmt"

// Error is one problem in a site file.
type Error struct {
	File  string // the path as given to Load or Parse
	Line  int    // 1-based; 0 when no line applies
	Field string // e.g. "links[0].cost"; empty for the file as a whole
	Msg   string
}

// Error returns "file:line: field: msg", leaving out what is unknown.
func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Field == "" {
		return loc + ": " + e.Msg
	}
	return loc + ": " + e.Field + ": " + e.Msg
}
