package feedback

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"strings"
	"testing"
)

const sampleAggregate = `<?xml version="1.0" encoding="UTF-8"?>
<feedback>
  <report_metadata><org_name>receiver.example</org_name><email>dmarc@receiver.example</email>
    <report_id>r-42</report_id><date_range><begin>1700000000</begin><end>1700086399</end></date_range></report_metadata>
  <policy_published><domain>Acme.Example</domain><p>none</p></policy_published>
  <record><row><source_ip>127.0.0.2</source_ip><count>40</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row>
    <identifiers><header_from>acme.example</header_from></identifiers></record>
  <record><row><source_ip>2001:db8::1</source_ip><count>2</count>
      <policy_evaluated><disposition>quarantine</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated></row>
    <identifiers><header_from>acme.example</header_from></identifiers></record>
</feedback>`

// dmarcMail wraps an attachment in a report mail as receivers send it.
func dmarcMail(contentType, name string, data []byte) string {
	return "From: noreply-dmarc@receiver.example\r\nTo: dmarc@outflow.test\r\nSubject: Report domain: acme.example\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"M\"\r\n\r\n--M\r\nContent-Type: text/plain\r\n\r\nReport.\r\n" +
		"--M\r\nContent-Type: " + contentType + "\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"" + name + "\"\r\n\r\n" +
		base64.StdEncoding.EncodeToString(data) + "\r\n--M--\r\n"
}

func gzipped(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func zipped(name, s string) []byte {
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	f, _ := w.Create(name)
	f.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func TestParseDMARC(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		wantErr string
	}{
		{"xml", dmarcMail("text/xml", "r.xml", []byte(sampleAggregate)), ""},
		{"gzip", dmarcMail("application/gzip", "r.xml.gz", gzipped(sampleAggregate)), ""},
		{"zip", dmarcMail("application/zip", "r.zip", zipped("receiver.example!acme.example!1700000000!1700086399.xml", sampleAggregate)), ""},
		{"zip by name only", dmarcMail("application/octet-stream", "r.zip", zipped("r.xml", sampleAggregate)), ""},
		{"no attachment", "From: a@b.example\r\nSubject: x\r\n\r\nhello\r\n", "no report attached"},
		{"bad source ip", dmarcMail("text/xml", "r.xml", []byte(strings.Replace(sampleAggregate, "127.0.0.2", "127.0.0.999", 1))), "source_ip"},
		{"not xml", dmarcMail("text/xml", "r.xml", []byte("<feedback><unclosed>")), "XML"},
		{"zip without xml", dmarcMail("application/zip", "r.zip", zipped("readme.txt", "hi")), "no report attached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NewParser().Parse("dmarc", []byte(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse = %+v, %v; want error containing %q", f.DMARC, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			d := f.DMARC
			if f.Class != ClassDMARC || d.OrgName != "receiver.example" || d.OrgReportID != "r-42" || d.Domain != "acme.example" ||
				d.Begin.Unix() != 1700000000 || len(d.Rows) != 2 {
				t.Fatalf("report = %+v", d)
			}
			if r := d.Rows[1]; r.SourceIP != "2001:db8::1" || r.Count != 2 || r.Disposition != "quarantine" || r.DKIM != "fail" || r.HeaderFrom != "acme.example" {
				t.Errorf("row 2 = %+v", r)
			}
		})
	}
}
