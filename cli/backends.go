package cli

import (
	"context"
	"flag"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/server"
)

// Help texts of the backend flags, one for serve and every admin command.
const (
	metaFlagHelp      = "metadata store `URL`: sqlite:PATH or postgres://USER@HOST/DB?… (default sqlite:DIR/meta.db)"
	resourcesFlagHelp = "resource store `URL`: file:PATH or s3://BUCKET/PREFIX?endpoint=URL&region=R, credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (default file:DIR/resources)"
)

// dataFlags are the flags of every admin command that opens a data
// directory: --data, --meta and --resources as serve has them, and
// --config, serve's config file, whose keys of the same names (and
// key-file, for a command that has that flag) they take unless given on
// the command line. So an operator whose domain runs on PostgreSQL and S3
// names them once, in the file, for serve and the admin commands alike.
type dataFlags struct {
	fs                         *flag.FlagSet
	dir, meta, resources, file *string
}

// addDataFlags declares the data flags on fs.
func addDataFlags(fs *flag.FlagSet) *dataFlags {
	return &dataFlags{
		fs:        fs,
		dir:       fs.String("data", "", "data `DIR`ectory"),
		meta:      fs.String("meta", "", metaFlagHelp),
		resources: fs.String("resources", "", resourcesFlagHelp),
		file:      fs.String("config", "", "take --data, --meta, --resources (and --key-file) from serve's config `FILE`; flags given override it"),
	}
}

// dataKeys are the config keys an admin command takes from serve's file.
var dataKeys = []string{"data", "meta", "resources", "key-file"}

// resolve reads --config, checked whole as serve would, into the data
// flags not given on the command line, then checks that a data directory
// and well-formed backend URLs are named. Call it once, after parsing.
func (d *dataFlags) resolve() error {
	if *d.file != "" {
		entries, err := checkServeConfig(*d.file)
		if err != nil {
			return err
		}
		given := map[string]bool{}
		d.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		for _, e := range entries {
			for _, k := range dataKeys {
				if e.Key == k && !given[k] && d.fs.Lookup(k) != nil {
					if err := d.fs.Set(k, e.Value); err != nil {
						return usagef("%s:%d: %v", *d.file, e.Line, err)
					}
				}
			}
		}
		*d.file = "" // resolved: a second call changes nothing
	}
	if *d.dir == "" {
		return usagef("--data DIR is required")
	}
	if _, err := server.ParseMetaURL(*d.dir, *d.meta); err != nil {
		return usagef("%v", err)
	}
	if _, err := server.ParseResourcesURL(*d.dir, *d.resources); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// openMeta opens the metadata store only.
func (d *dataFlags) openMeta(ctx context.Context) (meta.Store, error) {
	if err := d.resolve(); err != nil {
		return nil, err
	}
	return server.OpenMeta(ctx, *d.dir, *d.meta)
}

// open opens both stores beside a server that may be running on them
// (BackendOptions.Shared), with the at-rest key of the command's
// --key-file (the default when it has none) when the resources are
// encrypted.
func (d *dataFlags) open(ctx context.Context) (*server.Backends, error) {
	if err := d.resolve(); err != nil {
		return nil, err
	}
	var keyFile string
	if f := d.fs.Lookup("key-file"); f != nil {
		keyFile = f.Value.String()
	}
	return server.OpenBackends(ctx, *d.dir, *d.meta, *d.resources, server.BackendOptions{Shared: true, KeyFile: keyFile})
}
