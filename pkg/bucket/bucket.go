package bucket

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/alecthomas/kingpin/v2"
	gokitlog "github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/client"
)

// Config says where the objstore YAML comes from: a file or the flag's value.
type Config struct {
	File    string
	Content string
}

// flagGroup is what kingpin applications and commands offer.
type flagGroup interface {
	Flag(name, help string) *kingpin.FlagClause
}

// RegisterFlags adds --objstore.config-file and --objstore.config (Thanos'
// names) to app.
func RegisterFlags(app flagGroup, c *Config) {
	app.Flag("objstore.config-file", "Path to the YAML file with the object storage configuration (thanos-io/objstore format: type S3, GCS, AZURE, FILESYSTEM, ...).").
		PlaceHolder("<file-path>").StringVar(&c.File)
	app.Flag("objstore.config", "Object storage configuration as YAML, instead of --objstore.config-file.").
		PlaceHolder("<content>").StringVar(&c.Content)
}

// Empty tells whether no bucket is configured, which some components (the
// sidecar) accept.
func (c Config) Empty() bool { return c.File == "" && strings.TrimSpace(c.Content) == "" }

// Load returns the YAML configuration from exactly one of the two flags.
func (c Config) Load() ([]byte, error) {
	hasContent := strings.TrimSpace(c.Content) != ""
	switch {
	case c.File != "" && hasContent:
		return nil, errors.New("give either --objstore.config-file or --objstore.config, not both")
	case c.File != "":
		b, err := os.ReadFile(c.File)
		if err != nil {
			return nil, fmt.Errorf("read --objstore.config-file: %w", err)
		}
		if len(strings.TrimSpace(string(b))) == 0 {
			return nil, fmt.Errorf("--objstore.config-file %s is empty", c.File)
		}
		return b, nil
	case hasContent:
		return []byte(c.Content), nil
	}
	return nil, errors.New("no object storage configured: set --objstore.config-file or --objstore.config")
}

// New returns the configured bucket, wrapped with objstore's metrics under
// the names Thanos registers them (thanos_objstore_bucket_operations_total
// and friends, labelled bucket=<bucket name>), so Thanos' dashboards and
// alerts keep working. component goes into the client's user agent. ctx is
// unused for now: the providers connect lazily.
func New(ctx context.Context, logger *slog.Logger, reg prometheus.Registerer, confYAML []byte, component string) (objstore.InstrumentedBucket, error) {
	bkt, err := client.NewBucket(goKitLogger(logger), confYAML, component, nil)
	if err != nil {
		// objstore's messages name the part that is wrong (YAML, type,
		// provider settings); the YAML itself may hold secrets, so it is
		// not repeated.
		return nil, fmt.Errorf("create object storage bucket: %w", err)
	}
	return objstore.WrapWithMetrics(bkt, prometheus.WrapRegistererWithPrefix("thanos_", reg), bkt.Name()), nil
}

// NewFromConfig loads c and returns the bucket.
func NewFromConfig(ctx context.Context, logger *slog.Logger, reg prometheus.Registerer, c Config, component string) (objstore.InstrumentedBucket, error) {
	conf, err := c.Load()
	if err != nil {
		return nil, err
	}
	return New(ctx, logger, reg, conf, component)
}

// goKitLogger adapts our slog logger to the go-kit logger objstore's
// providers take.
func goKitLogger(l *slog.Logger) gokitlog.Logger {
	return gokitlog.LoggerFunc(func(kv ...any) error {
		lvl := slog.LevelInfo
		msg := ""
		attrs := make([]any, 0, len(kv))
		for i := 0; i+1 < len(kv); i += 2 {
			k := fmt.Sprint(kv[i])
			switch k {
			case "level":
				switch strings.ToLower(fmt.Sprint(kv[i+1])) {
				case "debug":
					lvl = slog.LevelDebug
				case "warn":
					lvl = slog.LevelWarn
				case "error":
					lvl = slog.LevelError
				}
			case "msg":
				msg = fmt.Sprint(kv[i+1])
			default:
				attrs = append(attrs, k, kv[i+1])
			}
		}
		l.Log(context.Background(), lvl, msg, attrs...)
		return nil
	})
}
