package feedback

import (
	"errors"
	"fmt"
)

// ErrNoParser: no parser for the report's kind is built in yet; the report
// is kept as unparsed, to be processed again once one is.
var ErrNoParser = errors.New("feedback: no parser for this kind of report")

// reportParser reads reports by kind.
type reportParser struct{}

// NewParser returns the parser of every report kind.
func NewParser() Parser { return reportParser{} }

// Parse reads raw as the kind classify gives it. A report to a bounce
// address that is no DSN but says it was sent automatically is an
// auto-reply (RFC 3834), counted and otherwise ignored.
func (reportParser) Parse(mailbox string, raw []byte) (Finding, error) {
	switch kind := classify(mailbox, raw); kind {
	case kindARF:
		f, err := parseStandardARF(raw)
		if err != nil && mailbox == "fbl" {
			// Some receivers send bounces of our own mail to the FBL address.
			if d, derr := parseStandardDSN(raw); derr == nil {
				return d, nil
			}
		}
		if err != nil {
			return Finding{}, fmt.Errorf("complaint: %w", err)
		}
		return f, nil
	case kindDSN:
		f, err := parseStandardDSN(raw)
		if err != nil {
			if autoReply(raw) {
				return Finding{Class: ClassAutoReply}, nil
			}
			return Finding{}, fmt.Errorf("bounce: %w", err)
		}
		return f, nil
	case kindDMARC:
		return parseDMARCMail(raw)
	default:
		return Finding{}, fmt.Errorf("%s report: %w", kind, ErrNoParser)
	}
}
