package gateway

import (
	"io"
	"log/slog"
)

func discardLogger() *slog.Logger { return slog.New(NewJSONLogHandler(io.Discard, nil)) }

func slogTo(w io.Writer) *slog.Logger { return slog.New(NewJSONLogHandler(w, nil)) }
