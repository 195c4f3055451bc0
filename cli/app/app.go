// Package app is the skiff CLI: its commands, their flags, and what each
// reads and writes in a site's namespace through the Kubernetes API
// (kubeconfig, context and namespace as kubectl finds them). It holds no
// state of its own: tokens, links and exposure are the Secrets and
// annotations the controller acts on, and the network it shows is the one
// the controller writes into the status ConfigMap. A Linux site
// (--site-file) is its site file, its data dir and its gateway's view
// (--admin) instead: token create issues into the data dir, link create
// and link delete edit the site file, which the gateway reloads.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// command is one of the CLI's commands: its words (token create), a line
// of help, what it takes after its words, and how it runs.
type command struct {
	words []string
	args  string // positional arguments, for the usage line
	help  string
	flags func(fs *flag.FlagSet, e *env) // its own flags, beside the global ones
	run   func(ctx context.Context, e *env, args []string) error
	nargs int // how many positional arguments it needs
}

// env is what a command runs with: the global options, its output, and
// how it reaches the site.
type env struct {
	name string // the program's name in messages: skiff or kubectl-skiff
	out  io.Writer
	opts options
	strs map[string]*string // the command's own flags, by name
	ints map[string]*int
	durs map[string]*time.Duration
	kube func() (*site, error)
}

// options are the flags every command takes.
type options struct {
	kubeconfig, context, namespace string
	output                         string
	// siteFile and admin reach a Linux site instead: its site file and
	// its gateway's admin address (/view).
	siteFile, admin string
}

func (e *env) str(name string) string { return *e.strs[name] }
func (e *env) num(name string) int    { return *e.ints[name] }

func (e *env) stringFlag(fs *flag.FlagSet, name, def, help string) {
	e.strs[name] = fs.String(name, def, help)
}

func (e *env) dur(name string) time.Duration { return *e.durs[name] }

func (e *env) durationFlag(fs *flag.FlagSet, name string, def time.Duration, help string) {
	e.durs[name] = fs.Duration(name, def, help)
}

func (e *env) intFlag(fs *flag.FlagSet, name string, def int, help string) {
	e.ints[name] = fs.Int(name, def, help)
}

// usageError is a mistake in the command line: usage follows it.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

// Main runs the command in args and returns the exit status: 0, or 1 with
// what went wrong on stderr.
func Main(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	if name == "" || strings.HasPrefix(name, "app.test") {
		name = "skiff"
	}
	err := run(ctx, name, args, stdout)
	var u usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &u):
		fmt.Fprintf(stderr, "%s: %s\n\n", name, u.msg)
		usage(stderr, name)
		return 1
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return 1
}

func run(ctx context.Context, name string, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout, name)
		return nil
	}
	cmd, rest := find(args)
	if cmd == nil {
		return usageError{fmt.Sprintf("unknown command %q", strings.Join(leadingWords(args), " "))}
	}
	e := &env{name: name, out: stdout, strs: map[string]*string{}, ints: map[string]*int{}, durs: map[string]*time.Duration{}}
	fs := flag.NewFlagSet(name+" "+strings.Join(cmd.words, " "), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&e.opts.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	fs.StringVar(&e.opts.context, "context", "", "the kubeconfig context to use (default: the current one)")
	fs.StringVar(&e.opts.namespace, "namespace", "", "the site's namespace (default: the context's)")
	fs.StringVar(&e.opts.namespace, "n", "", "short for --namespace")
	fs.StringVar(&e.opts.siteFile, "site-file", "", "a Linux site's site file, instead of a Kubernetes namespace")
	fs.StringVar(&e.opts.admin, "admin", "127.0.0.1:15090", "with --site-file: the admin address of the site's gateway (its --metrics-bind-address), which serves its view of the network")
	fs.StringVar(&e.opts.output, "output", "table", "output format: table, json or yaml")
	fs.StringVar(&e.opts.output, "o", "table", "short for --output")
	if cmd.flags != nil {
		cmd.flags(fs, e)
	}
	pos, err := parseInterspersed(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		commandUsage(stdout, name, cmd, fs)
		return err
	}
	if err != nil {
		return usageError{err.Error()}
	}
	if len(pos) != cmd.nargs {
		return usageError{fmt.Sprintf("%s takes %s, got %q", strings.Join(cmd.words, " "), argsWord(cmd), pos)}
	}
	e.kube = func() (*site, error) { return connect(ctx, e.name, e.opts) }
	return cmd.run(ctx, e, pos)
}

func argsWord(c *command) string {
	if c.nargs == 0 {
		return "no arguments"
	}
	return c.args
}

// find returns the command whose words begin args, and the rest.
func find(args []string) (*command, []string) {
	var best *command
	for i := range commands {
		c := &commands[i]
		if len(args) < len(c.words) {
			continue
		}
		ok := true
		for j, w := range c.words {
			if args[j] != w {
				ok = false
				break
			}
		}
		if ok && (best == nil || len(c.words) > len(best.words)) {
			best = c
		}
	}
	if best == nil {
		return nil, nil
	}
	return best, args[len(best.words):]
}

func leadingWords(args []string) []string {
	var w []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			break
		}
		w = append(w, a)
	}
	return w
}

// parseInterspersed parses fs's flags wherever they stand among the
// positional arguments, as kubectl does (skiff link create FILE --cost 2);
// "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func usage(w io.Writer, name string) {
	fmt.Fprintf(w, "%s: link sites, expose Services and see the network (docs/cli.md)\n\nCommands:\n", name)
	list := make([]string, 0, len(commands))
	for _, c := range commands {
		list = append(list, fmt.Sprintf("  %-40s %s", strings.TrimSpace(strings.Join(c.words, " ")+" "+c.args), c.help))
	}
	sort.Strings(list)
	fmt.Fprintln(w, strings.Join(list, "\n"))
	fmt.Fprintf(w, "\nEvery command takes --kubeconfig, --context, -n/--namespace and -o/--output (table, json, yaml);\nstatus, network status, token create and the link commands take --site-file FILE [--admin ADDR] for a Linux site.\n%s COMMAND --help lists a command's own flags.\n", name)
}

func commandUsage(w io.Writer, name string, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "%s %s %s\n  %s\n\nFlags:\n", name, strings.Join(c.words, " "), c.args, c.help)
	fs.SetOutput(w)
	fs.PrintDefaults()
}
