// Package shapingrules carries the shipped traffic-shaping rules of the
// sender: the destination sites of the large mailbox providers (matched on
// their MX host names) and the backoff rules for their documented
// throttling and blocking replies. The file rules.yaml is embedded so that
// the binary has these defaults without the source tree; pkg/shaping parses
// it, and an operator may replace it (sender.shaping.rules_file) or add
// rules in front of it.
package shapingrules

import _ "embed"

// YAML is the text of rules.yaml.
//
//go:embed rules.yaml
var YAML []byte
