package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/outflowmail/outflow/pkg/arf"
	"github.com/outflowmail/outflow/pkg/dmarcreport"
	"github.com/outflowmail/outflow/pkg/dsn"
	"github.com/outflowmail/outflow/pkg/feedbackid"
)

// bounceJSON is one line of `outflow bounce parse`.
type bounceJSON struct {
	File       string          `json:"file"`
	Bounce     bool            `json:"bounce"`
	Recipients []dsn.Recipient `json:"recipients"`
	AutoReply  bool            `json:"auto_reply"`
	Original   dsn.Original    `json:"original"`
	Error      string          `json:"error,omitempty"`
}

// runBounce is `outflow bounce parse [FILE...]`: one JSON object per file
// (stdin when none).
func runBounce(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "parse" {
		fmt.Fprintln(stderr, "usage: outflow bounce parse [FILE...]")
		return errors.New("bounce: unknown subcommand")
	}
	enc := json.NewEncoder(stdout)
	var failed error
	each(args[1:], stdin, func(name string, raw []byte, err error) {
		out := bounceJSON{File: name, Recipients: []dsn.Recipient{}}
		if err == nil {
			var rep *dsn.Report
			if rep, err = dsn.ParseBytes(raw); err == nil {
				out.Bounce, out.AutoReply, out.Original = rep.IsBounce, rep.AutoReply, rep.Original
				if rep.Recipients != nil {
					out.Recipients = rep.Recipients
				}
			}
		}
		if err != nil {
			out.Error = err.Error()
			failed = fmt.Errorf("%s: %w", name, err)
		}
		_ = enc.Encode(out)
	})
	return failed
}

// each calls fn with every named file's content, or stdin's ("-").
func each(files []string, stdin io.Reader, fn func(name string, raw []byte, err error)) {
	if len(files) == 0 {
		raw, err := io.ReadAll(io.LimitReader(stdin, dmarcreport.MaxSize))
		fn("-", raw, err)
		return
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		fn(f, bytes.TrimPrefix(raw, []byte{0xef, 0xbb, 0xbf}), err)
	}
}

// complaintJSON is one line of `outflow complaint parse`.
type complaintJSON struct {
	File         string   `json:"file"`
	FeedbackType string   `json:"feedback_type"`
	Source       string   `json:"source"`
	MessageID    string   `json:"message_id"`
	Recipient    string   `json:"recipient"`
	ReturnPath   string   `json:"return_path"`
	FeedbackID   string   `json:"feedback_id"`
	Tenant       string   `json:"tenant"`
	SourceIP     string   `json:"source_ip,omitempty"`
	UserAgent    string   `json:"user_agent,omitempty"`
	Types        []string `json:"feedback_types,omitempty"`
	Error        string   `json:"error,omitempty"`
}

// runComplaint is `outflow complaint parse [FILE...]`.
func runComplaint(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "parse" {
		fmt.Fprintln(stderr, "usage: outflow complaint parse [FILE...]")
		return errors.New("complaint: unknown subcommand")
	}
	enc := json.NewEncoder(stdout)
	var failed error
	each(args[1:], stdin, func(name string, raw []byte, err error) {
		out := complaintJSON{File: name}
		if err == nil {
			var rep *arf.Report
			if rep, err = arf.ParseBytes(raw); err == nil {
				out.FeedbackType, out.Types = rep.FeedbackType, rep.Types
				out.Source = rep.ReportingMTA
				if out.Source == "" {
					out.Source = rep.UserAgent
				}
				out.SourceIP, out.UserAgent = rep.SourceIP, rep.UserAgent
				out.MessageID = rep.Original.MessageID
				if len(rep.OriginalRcptTo) > 0 {
					out.Recipient = rep.OriginalRcptTo[0]
				}
				out.ReturnPath = rep.OriginalMailFrom
				out.FeedbackID = rep.Original.FeedbackID
				out.Tenant = feedbackid.Tenant(out.FeedbackID)
			}
		}
		if err != nil {
			out.Error = err.Error()
			failed = fmt.Errorf("%s: %w", name, err)
		}
		_ = enc.Encode(out)
	})
	return failed
}

// dmarcJSON is one line of `outflow dmarc parse`.
type dmarcJSON struct {
	File   string              `json:"file"`
	Report *dmarcreport.Report `json:"report,omitempty"`
	Error  string              `json:"error,omitempty"`
}

// runDMARC is `outflow dmarc parse [FILE...]`: one JSON object per
// file; an invalid report has "error" naming the element at fault.
func runDMARC(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "parse" {
		fmt.Fprintln(stderr, "usage: outflow dmarc parse [FILE...]")
		return errors.New("dmarc: unknown subcommand")
	}
	enc := json.NewEncoder(stdout)
	var failed error
	each(args[1:], stdin, func(name string, raw []byte, err error) {
		out := dmarcJSON{File: name}
		if err == nil {
			out.Report, err = dmarcreport.ParseBytes(raw)
		}
		if err != nil {
			out.Error = err.Error()
			failed = fmt.Errorf("%s: %w", name, err)
		}
		_ = enc.Encode(out)
	})
	return failed
}
