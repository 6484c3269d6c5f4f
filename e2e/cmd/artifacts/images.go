package main

import (
	"context"
	"flag"
	"fmt"

	"go.uber.org/zap"

	"github.com/nodesuite/nodesuite/e2e/harness/artifacts"
	"github.com/nodesuite/nodesuite/e2e/harness/images"
)

// runImages builds the programs images need and writes every image archive.
func runImages(ctx context.Context, log *zap.Logger, args []string) error {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	a, err := artifacts.Ensure(ctx, log, images.Needs...)
	if err != nil {
		return err
	}
	files, err := images.Ensure(ctx, log, a)
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Println(f)
	}
	return nil
}

// runRegistry serves every image on 127.0.0.1 in the foreground.
func runRegistry(ctx context.Context, log *zap.Logger, args []string) error {
	fs := flag.NewFlagSet("registry", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:5000", "loopback host:port to serve on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	a, err := artifacts.Ensure(ctx, log, images.Needs...)
	if err != nil {
		return err
	}
	r, err := images.StartRegistryAt(ctx, log, a, *addr)
	if err != nil {
		return err
	}
	fmt.Println(r.Endpoint())
	<-ctx.Done()
	return r.Stop(context.Background())
}
