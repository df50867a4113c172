// Package dmarcreport reads DMARC aggregate reports (RFC 7489 7.2 and
// Appendix C; RFC 9990): XML, gzip- or zip-compressed XML, or a mail with
// the report attached. Each record becomes a row per source IP and header
// From domain with its count, disposition, the DKIM and SPF results and
// alignment of the DMARC evaluation, and the raw authentication results,
// so analysts see whether the pools' IPs pass. Reports that break the
// schema are rejected with an error naming the element at fault.
package dmarcreport

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emersion/go-message"
)

// MaxSize bounds the report read and each decompressed document (a
// compressed report must not expand without limit).
const MaxSize = 32 << 20

// Errors.
var (
	// ErrEmpty: no input.
	ErrEmpty = errors.New("dmarcreport: empty input")
	// ErrNoReport: a mail without an XML, gzip or zip attachment.
	ErrNoReport = errors.New("dmarcreport: no report attached")
	// ErrInvalid: the XML is not a valid aggregate report; the wrapping
	// error names the element.
	ErrInvalid = errors.New("dmarcreport: invalid report")
)

// AuthResult is one DKIM or SPF result the receiver saw (RFC 7489 C).
type AuthResult struct {
	Domain   string `json:"domain" xml:"domain"`
	Selector string `json:"selector,omitempty" xml:"selector"`
	Scope    string `json:"scope,omitempty" xml:"scope"`
	Result   string `json:"result" xml:"result"`
}

// Row is one record of the report.
type Row struct {
	SourceIP    string `json:"source_ip"`
	Count       int64  `json:"count"`
	HeaderFrom  string `json:"header_from"`
	Disposition string `json:"disposition"`
	// DKIM and SPF are the DMARC-aligned results (policy_evaluated).
	DKIM         string       `json:"dkim"`
	SPF          string       `json:"spf"`
	DKIMAligned  bool         `json:"dkim_aligned"`
	SPFAligned   bool         `json:"spf_aligned"`
	Reasons      []string     `json:"reasons,omitempty"`
	EnvelopeFrom string       `json:"envelope_from,omitempty"`
	AuthDKIM     []AuthResult `json:"auth_dkim,omitempty"`
	AuthSPF      []AuthResult `json:"auth_spf,omitempty"`
}

// Report is one aggregate report.
type Report struct {
	OrgName   string `json:"org_name"`
	Email     string `json:"email"`
	ReportID  string `json:"report_id"`
	Begin     int64  `json:"begin"`
	End       int64  `json:"end"`
	Domain    string `json:"domain"`
	Policy    string `json:"policy"`
	SubPolicy string `json:"sub_policy,omitempty"`
	Pct       string `json:"pct,omitempty"`
	Rows      []Row  `json:"rows"`
}

// Parse reads a report in any of the accepted forms.
func Parse(r io.Reader) (*Report, error) {
	raw, err := io.ReadAll(io.LimitReader(r, MaxSize))
	if err != nil {
		return nil, fmt.Errorf("dmarcreport: read: %w", err)
	}
	return ParseBytes(raw)
}

// ParseBytes is Parse on a report in memory. It never panics.
func ParseBytes(raw []byte) (rep *Report, err error) {
	defer func() {
		if p := recover(); p != nil {
			rep, err = nil, fmt.Errorf("%w: %v", ErrInvalid, p)
		}
	}()
	return parse(raw, 0)
}

func parse(raw []byte, depth int) (*Report, error) {
	if depth > 4 {
		return nil, fmt.Errorf("%w: nested too deep", ErrNoReport)
	}
	raw = bytes.TrimPrefix(raw, []byte{0xef, 0xbb, 0xbf})
	trimmed := bytes.TrimSpace(raw)
	switch {
	case len(trimmed) == 0:
		return nil, ErrEmpty
	case bytes.HasPrefix(raw, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("dmarcreport: gzip: %w", err)
		}
		b, err := io.ReadAll(io.LimitReader(zr, MaxSize))
		if err != nil && len(b) == 0 {
			return nil, fmt.Errorf("dmarcreport: gzip: %w", err)
		}
		return parse(b, depth+1)
	case bytes.HasPrefix(raw, []byte("PK\x03\x04")):
		zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
		if err != nil {
			return nil, fmt.Errorf("dmarcreport: zip: %w", err)
		}
		for _, f := range zr.File {
			if f.FileInfo().IsDir() {
				continue
			}
			rc, err := f.Open()
			if err != nil {
				return nil, fmt.Errorf("dmarcreport: zip %s: %w", f.Name, err)
			}
			b, err := io.ReadAll(io.LimitReader(rc, MaxSize))
			rc.Close()
			if err != nil {
				return nil, fmt.Errorf("dmarcreport: zip %s: %w", f.Name, err)
			}
			return parse(b, depth+1)
		}
		return nil, fmt.Errorf("%w: empty zip", ErrNoReport)
	case trimmed[0] == '<':
		return parseXML(trimmed)
	}
	return fromMail(raw, depth)
}

// fromMail finds the report attached to a mail (RFC 7489 7.2.1.1).
func fromMail(raw []byte, depth int) (*Report, error) {
	e, err := message.Read(bytes.NewReader(raw))
	if e == nil {
		return nil, fmt.Errorf("%w: not XML, gzip, zip or mail: %v", ErrNoReport, err)
	}
	var found []byte
	var walk func(e *message.Entity, d int)
	walk = func(e *message.Entity, d int) {
		if found != nil || d > 8 {
			return
		}
		if mr := e.MultipartReader(); mr != nil {
			for found == nil {
				p, err := mr.NextPart()
				if err != nil && (p == nil || !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err)) {
					return
				}
				walk(p, d+1)
			}
			return
		}
		mt, params, _ := e.Header.ContentType()
		_, dparams, _ := mime.ParseMediaType(e.Header.Get("Content-Disposition"))
		name := strings.ToLower(params["name"] + dparams["filename"])
		switch {
		case strings.Contains(mt, "zip"), strings.Contains(mt, "gzip"), strings.HasSuffix(mt, "/xml"),
			strings.HasSuffix(name, ".xml"), strings.HasSuffix(name, ".gz"), strings.HasSuffix(name, ".zip"),
			mt == "application/octet-stream" && name != "":
			b, _ := io.ReadAll(io.LimitReader(e.Body, MaxSize))
			if len(bytes.TrimSpace(b)) > 0 {
				found = b
			}
		}
	}
	walk(e, 0)
	if found == nil {
		return nil, ErrNoReport
	}
	return parse(found, depth+1)
}

type xmlFeedback struct {
	XMLName  xml.Name `xml:"feedback"`
	Metadata struct {
		OrgName   string `xml:"org_name"`
		Email     string `xml:"email"`
		ReportID  string `xml:"report_id"`
		DateRange struct {
			Begin string `xml:"begin"`
			End   string `xml:"end"`
		} `xml:"date_range"`
	} `xml:"report_metadata"`
	Policy struct {
		Domain string `xml:"domain"`
		P      string `xml:"p"`
		SP     string `xml:"sp"`
		Pct    string `xml:"pct"`
	} `xml:"policy_published"`
	Records []struct {
		Row struct {
			SourceIP string `xml:"source_ip"`
			Count    string `xml:"count"`
			Eval     struct {
				Disposition string `xml:"disposition"`
				DKIM        string `xml:"dkim"`
				SPF         string `xml:"spf"`
				Reasons     []struct {
					Type    string `xml:"type"`
					Comment string `xml:"comment"`
				} `xml:"reason"`
			} `xml:"policy_evaluated"`
		} `xml:"row"`
		Identifiers struct {
			HeaderFrom   string `xml:"header_from"`
			EnvelopeFrom string `xml:"envelope_from"`
		} `xml:"identifiers"`
		Auth struct {
			DKIM []AuthResult `xml:"dkim"`
			SPF  []AuthResult `xml:"spf"`
		} `xml:"auth_results"`
	} `xml:"record"`
}

func parseXML(b []byte) (*Report, error) {
	// Reports with stray invalid UTF-8 in free text are still reports.
	b = bytes.ToValidUTF8(b, []byte("\uFFFD"))
	d := xml.NewDecoder(bytes.NewReader(b))
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	var f xmlFeedback
	if err := d.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: XML: %v", ErrInvalid, err)
	}
	bad := func(field, format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, a...))
	}
	m := f.Metadata
	if strings.TrimSpace(m.OrgName) == "" {
		// Some reporters leave it empty; their address still names them.
		_, dom, ok := strings.Cut(m.Email, "@")
		if !ok || strings.TrimSpace(dom) == "" {
			return nil, bad("report_metadata/org_name", "missing (and no email to name the reporter)")
		}
		m.OrgName = dom
	}
	if strings.TrimSpace(m.ReportID) == "" {
		return nil, bad("report_metadata/report_id", "missing")
	}
	begin, err1 := strconv.ParseInt(strings.TrimSpace(m.DateRange.Begin), 10, 64)
	end, err2 := strconv.ParseInt(strings.TrimSpace(m.DateRange.End), 10, 64)
	if err1 != nil || err2 != nil {
		return nil, bad("report_metadata/date_range", "begin %q, end %q are not Unix times", m.DateRange.Begin, m.DateRange.End)
	}
	if strings.TrimSpace(f.Policy.Domain) == "" {
		return nil, bad("policy_published/domain", "missing")
	}
	if len(f.Records) == 0 {
		return nil, bad("record", "no records")
	}
	rep := &Report{
		OrgName: strings.TrimSpace(m.OrgName), Email: strings.TrimSpace(m.Email), ReportID: strings.TrimSpace(m.ReportID),
		Begin: begin, End: end, Domain: strings.ToLower(strings.TrimSpace(f.Policy.Domain)),
		Policy: strings.TrimSpace(f.Policy.P), SubPolicy: strings.TrimSpace(f.Policy.SP), Pct: strings.TrimSpace(f.Policy.Pct),
	}
	for i, rec := range f.Records {
		at := fmt.Sprintf("record[%d]/row", i+1)
		ip, err := netip.ParseAddr(strings.TrimSpace(rec.Row.SourceIP))
		if err != nil {
			return nil, bad(at+"/source_ip", "%q is not an IP address", rec.Row.SourceIP)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(rec.Row.Count), 10, 64)
		if err != nil || n < 0 {
			return nil, bad(at+"/count", "%q is not a count", rec.Row.Count)
		}
		ev := rec.Row.Eval
		// RFC 7489 Appendix C: DispositionType and DMARCResultType are
		// lower-case enumerations (RFC 9990 adds disposition "pass").
		disp := strings.TrimSpace(ev.Disposition)
		if !oneOf(disp, "none", "quarantine", "reject", "pass") {
			return nil, bad(at+"/policy_evaluated/disposition", "%q is not one of none, quarantine, reject, pass", disp)
		}
		dkim, spf := strings.TrimSpace(ev.DKIM), strings.TrimSpace(ev.SPF)
		if !oneOf(dkim, "pass", "fail") {
			return nil, bad(at+"/policy_evaluated/dkim", "%q is not one of pass, fail", dkim)
		}
		if !oneOf(spf, "pass", "fail") {
			return nil, bad(at+"/policy_evaluated/spf", "%q is not one of pass, fail", spf)
		}
		row := Row{
			SourceIP: ip.String(), Count: n, HeaderFrom: strings.ToLower(strings.TrimSpace(rec.Identifiers.HeaderFrom)),
			Disposition: disp, DKIM: dkim, SPF: spf, DKIMAligned: dkim == "pass", SPFAligned: spf == "pass",
			EnvelopeFrom: strings.TrimSpace(rec.Identifiers.EnvelopeFrom),
		}
		if row.HeaderFrom == "" {
			return nil, bad(fmt.Sprintf("record[%d]/identifiers/header_from", i+1), "missing")
		}
		for _, r := range ev.Reasons {
			if t := strings.TrimSpace(r.Type); t != "" {
				row.Reasons = append(row.Reasons, t)
			}
		}
		for _, a := range rec.Auth.DKIM {
			row.AuthDKIM = append(row.AuthDKIM, trimAuth(a))
		}
		for _, a := range rec.Auth.SPF {
			row.AuthSPF = append(row.AuthSPF, trimAuth(a))
		}
		rep.Rows = append(rep.Rows, row)
	}
	return rep, nil
}

func trimAuth(a AuthResult) AuthResult {
	return AuthResult{Domain: strings.ToLower(strings.TrimSpace(a.Domain)), Selector: strings.TrimSpace(a.Selector),
		Scope: strings.TrimSpace(a.Scope), Result: strings.ToLower(strings.TrimSpace(a.Result))}
}

func oneOf(s string, vals ...string) bool {
	for _, v := range vals {
		if s == v {
			return true
		}
	}
	return false
}
