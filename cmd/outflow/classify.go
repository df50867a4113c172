package main

import (
	"context"
	"errors"
	"io"
)

// Placeholder until the classifier engine lands (being written now).
func runClassify(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return errors.New("classify: not built yet")
}

func runClassifierTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("classifier train: not built yet")
}
