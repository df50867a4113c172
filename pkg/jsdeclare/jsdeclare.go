// Package jsdeclare declares JetStream streams, key-value buckets and object
// stores the way every Outflow process does at start: create them, and
// update them only when their configuration changed.
//
// nats.go's CreateOrUpdate* functions send an update first, and the server
// rewrites the stream's configuration even when nothing changed. With every
// role declaring the same resources at start, those needless updates ran
// while other roles created consumers on the same streams, and nats-server
// 2.15.2 reads the file store's configuration without its lock while
// creating a consumer (filestore.go ConsumerStore against UpdateConfig: a
// data race the race detector reported in the abuse drill). A create with
// an identical configuration is answered by the server with the existing
// stream and writes nothing, so creating first makes the usual start
// (nothing changed) free of updates; a real change still updates.
package jsdeclare

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream creates the stream, or updates it when it exists with another
// configuration.
func Stream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return declare("stream "+cfg.Name, jetstream.ErrStreamNameAlreadyInUse,
		func() (jetstream.Stream, error) { return js.CreateStream(ctx, cfg) },
		func() (jetstream.Stream, error) { return js.UpdateStream(ctx, cfg) })
}

// KeyValue creates the bucket, or updates it when it exists with another
// configuration.
func KeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return declare("kv "+cfg.Bucket, jetstream.ErrBucketExists,
		func() (jetstream.KeyValue, error) { return js.CreateKeyValue(ctx, cfg) },
		func() (jetstream.KeyValue, error) { return js.UpdateKeyValue(ctx, cfg) })
}

// ObjectStore creates the store, or updates it when it exists with another
// configuration.
func ObjectStore(ctx context.Context, js jetstream.JetStream, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	return declare("object store "+cfg.Bucket, jetstream.ErrBucketExists,
		func() (jetstream.ObjectStore, error) { return js.CreateObjectStore(ctx, cfg) },
		func() (jetstream.ObjectStore, error) { return js.UpdateObjectStore(ctx, cfg) })
}

// declare runs create, and update only when create failed with exists (the
// name is taken by a resource with another configuration).
func declare[T any](what string, exists error, create, update func() (T, error)) (T, error) {
	r, err := create()
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, exists) {
		return r, fmt.Errorf("create %s: %w", what, err)
	}
	if r, err = update(); err != nil {
		return r, fmt.Errorf("update %s: %w", what, err)
	}
	return r, nil
}
