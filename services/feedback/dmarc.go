package feedback

import (
	"time"

	"github.com/outflowmail/outflow/pkg/dmarcreport"
	"github.com/outflowmail/outflow/pkg/events"
)

// parseDMARC reads a DMARC aggregate report with pkg/dmarcreport (RFC 7489
// appendix C; XML, gzip, zip, or attached to a mail); an invalid report is
// rejected with an error naming what is wrong.
func parseDMARC(raw []byte) (Finding, error) {
	r, err := dmarcreport.ParseBytes(raw)
	if err != nil {
		return Finding{}, err
	}
	d := &events.DMARC{
		OrgReportID: r.ReportID, OrgName: r.OrgName, Domain: r.Domain,
		Begin: time.Unix(r.Begin, 0).UTC(), End: time.Unix(r.End, 0).UTC(),
	}
	for _, row := range r.Rows {
		d.Rows = append(d.Rows, events.DMARCRow{
			SourceIP: row.SourceIP, Count: row.Count, HeaderFrom: row.HeaderFrom,
			Disposition: row.Disposition, DKIM: row.DKIM, SPF: row.SPF,
		})
	}
	return Finding{Class: ClassDMARC, DMARC: d}, nil
}
