package feedback

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"strings"
	"time"

	"github.com/emersion/go-message"

	"github.com/outflowmail/outflow/pkg/events"
)

// This file reads DMARC aggregate reports (RFC 7489 7.2, schema in its
// appendix C) as mail attachments: XML, gzip or zip. It is the worker's
// reader until pkg/dmarcreport (issue 5's parser work) is built in.

// maxXML bounds a decompressed report: real ones are kilobytes to a few
// megabytes; the bound stops a decompression bomb.
const maxXML = 32 << 20

// aggregate is the part of the appendix C schema the worker stores.
type aggregate struct {
	XMLName  xml.Name `xml:"feedback"`
	Metadata struct {
		OrgName  string `xml:"org_name"`
		ReportID string `xml:"report_id"`
		Begin    int64  `xml:"date_range>begin"`
		End      int64  `xml:"date_range>end"`
	} `xml:"report_metadata"`
	Policy struct {
		Domain string `xml:"domain"`
	} `xml:"policy_published"`
	Records []struct {
		SourceIP    string `xml:"row>source_ip"`
		Count       int64  `xml:"row>count"`
		Disposition string `xml:"row>policy_evaluated>disposition"`
		DKIM        string `xml:"row>policy_evaluated>dkim"`
		SPF         string `xml:"row>policy_evaluated>spf"`
		HeaderFrom  string `xml:"identifiers>header_from"`
	} `xml:"record"`
}

// parseDMARCMail finds the aggregate report attached to a mail and reads it.
func parseDMARCMail(raw []byte) (Finding, error) {
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) {
		return Finding{}, fmt.Errorf("read dmarc mail: %w", err)
	}
	var found *events.DMARC
	var firstErr error
	walkErr := e.Walk(func(_ []int, part *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) {
			return err
		}
		if found != nil {
			return nil
		}
		if mr := part.MultipartReader(); mr != nil {
			return nil
		}
		mt, _, _ := part.Header.ContentType()
		_, disp, _ := part.Header.ContentDisposition()
		name := disp["filename"]
		if name == "" {
			_, ctParams, _ := part.Header.ContentType()
			name = ctParams["name"]
		}
		data, err := io.ReadAll(io.LimitReader(part.Body, maxXML))
		if err != nil {
			return fmt.Errorf("read attachment %q: %w", name, err)
		}
		xmlData, ok, err := reportXML(strings.ToLower(mt), strings.ToLower(name), data)
		if !ok {
			return nil
		}
		if err == nil {
			found, err = parseAggregate(xmlData)
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("attachment %q: %w", name, err)
		}
		return nil
	})
	if walkErr != nil {
		return Finding{}, fmt.Errorf("dmarc mail: %w", walkErr)
	}
	if found == nil {
		if firstErr != nil {
			return Finding{}, firstErr
		}
		return Finding{}, errors.New("dmarc mail has no XML, gzip or zip report attached")
	}
	return Finding{Class: ClassDMARC, DMARC: found}, nil
}

// reportXML returns the XML of an attachment that is a report by its type
// or file name, decompressing gzip and zip; ok is false for other parts.
func reportXML(mediaType, name string, data []byte) (xmlData []byte, ok bool, err error) {
	switch {
	case mediaType == "application/zip" || mediaType == "application/x-zip-compressed" || path.Ext(name) == ".zip":
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return nil, true, fmt.Errorf("zip: %w", err)
		}
		for _, f := range zr.File {
			if path.Ext(strings.ToLower(f.Name)) != ".xml" {
				continue
			}
			rc, err := f.Open()
			if err != nil {
				return nil, true, fmt.Errorf("zip %s: %w", f.Name, err)
			}
			defer rc.Close()
			x, err := io.ReadAll(io.LimitReader(rc, maxXML))
			return x, true, err
		}
		return nil, true, errors.New("zip holds no .xml file")
	case mediaType == "application/gzip" || mediaType == "application/x-gzip" || path.Ext(name) == ".gz":
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, true, fmt.Errorf("gzip: %w", err)
		}
		x, err := io.ReadAll(io.LimitReader(zr, maxXML))
		if errors.Is(err, io.ErrUnexpectedEOF) && len(x) > 0 {
			// Some reporters (Mimecast) cut the gzip trailer; the XML
			// parser still tells a whole report from a truncated one.
			err = nil
		}
		return x, true, err
	case mediaType == "text/xml" || mediaType == "application/xml" || path.Ext(name) == ".xml":
		return data, true, nil
	}
	return nil, false, nil
}

// parseAggregate reads and checks an aggregate report. The fields the
// tables need are required; a report without them is rejected, naming the
// element.
func parseAggregate(data []byte) (*events.DMARC, error) {
	var a aggregate
	if err := xml.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("dmarc xml: %w", err)
	}
	switch {
	case a.Metadata.OrgName == "":
		return nil, errors.New("dmarc report: report_metadata/org_name missing")
	case a.Metadata.ReportID == "":
		return nil, errors.New("dmarc report: report_metadata/report_id missing")
	case a.Policy.Domain == "":
		return nil, errors.New("dmarc report: policy_published/domain missing")
	case a.Metadata.Begin <= 0 || a.Metadata.End < a.Metadata.Begin:
		return nil, fmt.Errorf("dmarc report: date_range %d..%d is not a period", a.Metadata.Begin, a.Metadata.End)
	case len(a.Records) == 0:
		return nil, errors.New("dmarc report: no record")
	}
	d := &events.DMARC{
		OrgReportID: a.Metadata.ReportID, OrgName: a.Metadata.OrgName, Domain: strings.ToLower(a.Policy.Domain),
		Begin: time.Unix(a.Metadata.Begin, 0).UTC(), End: time.Unix(a.Metadata.End, 0).UTC(),
	}
	for i, r := range a.Records {
		ip, err := netip.ParseAddr(strings.TrimSpace(r.SourceIP))
		if err != nil {
			return nil, fmt.Errorf("dmarc report: record %d: source_ip %q: %w", i+1, r.SourceIP, err)
		}
		if r.Count < 0 {
			return nil, fmt.Errorf("dmarc report: record %d: count %d", i+1, r.Count)
		}
		d.Rows = append(d.Rows, events.DMARCRow{
			SourceIP: ip.String(), Count: r.Count, HeaderFrom: strings.ToLower(r.HeaderFrom),
			Disposition: r.Disposition, DKIM: r.DKIM, SPF: r.SPF,
		})
	}
	return d, nil
}
