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
	s, err := js.CreateStream(ctx, cfg)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil, fmt.Errorf("create stream %s: %w", cfg.Name, err)
	}
	s, err = js.UpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("update stream %s: %w", cfg.Name, err)
	}
	return s, nil
}

// KeyValue creates the bucket, or updates it when it exists with another
// configuration.
func KeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, cfg)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketExists) {
		return nil, fmt.Errorf("create kv %s: %w", cfg.Bucket, err)
	}
	kv, err = js.UpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("update kv %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// ObjectStore creates the store, or updates it when it exists with another
// configuration.
func ObjectStore(ctx context.Context, js jetstream.JetStream, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	os, err := js.CreateObjectStore(ctx, cfg)
	if err == nil {
		return os, nil
	}
	if !errors.Is(err, jetstream.ErrBucketExists) {
		return nil, fmt.Errorf("create object store %s: %w", cfg.Bucket, err)
	}
	os, err = js.UpdateObjectStore(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("update object store %s: %w", cfg.Bucket, err)
	}
	return os, nil
}
