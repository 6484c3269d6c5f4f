// Package logging builds the zap logger every daemon uses and routes klog
// (client-go and the other Kubernetes libraries) and logr into it, so that one
// process writes one stream in one format.
package logging

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
)

// ErrInvalidOption is wrapped by every error about a bad logging flag value.
var ErrInvalidOption = errors.New("invalid logging option")

// Options are the logging flags shared by the daemons.
type Options struct {
	// Format is "console" or "json" (upstream components call the latter "json" too).
	Format string
	// Level is a zap level name (debug, info, warn, error) or a klog-style
	// verbosity number: V(n) maps to zap level -n.
	Level string
}

// NewOptions returns the defaults: human-readable console output at info.
func NewOptions() *Options { return &Options{Format: "console", Level: "info"} }

// AddFlags registers --log-format and --log-level (the upstream components'
// --logging-format is accepted as an alias) and klog's -v.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Format, "log-format", o.Format, "Log output format: console or json.")
	fs.StringVar(&o.Format, "logging-format", o.Format, "Alias of --log-format, as the upstream components spell it (text means console).")
	fs.StringVar(&o.Level, "log-level", o.Level, "Minimum level: debug, info, warn, error, or a verbosity number as with -v.")
	fs.VarP(verbosity{o}, "v", "v", "klog-style verbosity: -v=4 is the same as --log-level=4.")
}

type verbosity struct{ o *Options }

func (v verbosity) String() string { return "" }
func (v verbosity) Type() string   { return "int" }
func (v verbosity) Set(s string) error {
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 0 {
		return fmt.Errorf("%w: -v %q is not a non-negative number", ErrInvalidOption, s)
	}
	v.o.Level = s
	return nil
}

// Validate reports the first bad option, naming it.
func (o *Options) Validate() error {
	if _, err := o.level(); err != nil {
		return err
	}
	switch strings.ToLower(o.Format) {
	case "console", "text", "json":
		return nil
	}
	return fmt.Errorf("%w: --log-format %q: want console or json", ErrInvalidOption, o.Format)
}

func (o *Options) level() (zapcore.Level, error) {
	var n int
	if _, err := fmt.Sscanf(o.Level, "%d", &n); err == nil && fmt.Sprint(n) == o.Level {
		if n < 0 || n > 127 {
			return 0, fmt.Errorf("%w: --log-level %d out of range 0-127", ErrInvalidOption, n)
		}
		return zapcore.Level(-n), nil
	}
	var l zapcore.Level
	if err := l.UnmarshalText([]byte(o.Level)); err != nil {
		return 0, fmt.Errorf("%w: --log-level %q: want debug, info, warn, error or a number", ErrInvalidOption, o.Level)
	}
	return l, nil
}

// New builds a logger writing to w (os.Stderr when nil) and, unless the
// caller opts out with route=false, makes it the sink of klog and of
// logr's global logger. It returns the logger and a flush function.
func (o *Options) New(w io.Writer, route bool) (*zap.Logger, func(), error) {
	if err := o.Validate(); err != nil {
		return nil, nil, err
	}
	lvl, _ := o.level()
	if w == nil {
		w = os.Stderr
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if strings.EqualFold(o.Format, "json") {
		enc = zapcore.NewJSONEncoder(encCfg)
	} else {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(w), zap.NewAtomicLevelAt(lvl))
	logger := zap.New(core, zap.AddCaller(), zap.ErrorOutput(zapcore.AddSync(w)))
	if route {
		RouteKlog(logger)
		// klog filters V(n) itself before calling the logger, so its
		// verbosity must follow ours.
		v := 0
		if lvl < 0 {
			v = int(-lvl)
		}
		setKlogVerbosity(v)
	}
	return logger, func() { _ = logger.Sync(); klog.Flush() }, nil
}

// RouteKlog sends klog's output (both its printf-style and structured calls)
// to logger. zapr maps logr's V(n) to zap level -n, so klog -v levels and
// --log-level numbers agree.
func RouteKlog(logger *zap.Logger) {
	lr := Logr(logger.WithOptions(zap.AddCallerSkip(0)).Named("klog"))
	klog.SetLoggerWithOptions(lr, klog.ContextualLogger(true))
	klog.EnableContextualLogging(true)
}

func setKlogVerbosity(v int) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("v", fmt.Sprint(v))
}

// Logr wraps a zap logger as a logr.Logger for libraries that take one.
func Logr(logger *zap.Logger) logr.Logger {
	return zapr.NewLoggerWithOptions(logger, zapr.LogInfoLevel("v"))
}
