package dmarcreport

import (
	"archive/zip"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `<?xml version="1.0"?><feedback><report_metadata><org_name>rep</org_name><email>a@rep.example</email>
<report_id>r1</report_id><date_range><begin>1</begin><end>2</end></date_range></report_metadata>
<policy_published><domain>example.com</domain><p>none</p></policy_published>
<record><row><source_ip>192.0.2.7</source_ip><count>3</count><policy_evaluated><disposition>none</disposition>
<dkim>pass</dkim><spf>fail</spf></policy_evaluated></row><identifiers><header_from>Example.com</header_from></identifiers>
<auth_results><dkim><domain>example.com</domain><selector>s1</selector><result>pass</result></dkim>
<spf><domain>bounces.example.com</domain><result>softfail</result></spf></auth_results></record></feedback>`

func TestParseBytes_Forms(t *testing.T) {
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.Create("r.xml")
	w.Write([]byte(sample))
	zw.Close()
	mail := "From: a@rep.example\r\nSubject: Report\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n" +
		"--b\r\nContent-Type: text/xml; name=r.xml\r\n\r\n" + sample + "\r\n--b--\r\n"
	for name, give := range map[string][]byte{"xml": []byte(sample), "zip": zbuf.Bytes(), "mail": []byte(mail)} {
		rep, err := ParseBytes(give)
		if err != nil {
			t.Fatalf("%s: ParseBytes: %v", name, err)
		}
		r := rep.Rows[0]
		if rep.Domain != "example.com" || r.SourceIP != "192.0.2.7" || r.Count != 3 || r.HeaderFrom != "example.com" ||
			!r.DKIMAligned || r.SPFAligned || r.AuthSPF[0].Result != "softfail" || r.AuthDKIM[0].Selector != "s1" {
			t.Errorf("%s: ParseBytes = %+v", name, rep)
		}
	}
	gz, err := os.ReadFile(filepath.Join("testdata", "fastmail.xml.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseBytes(gz); err != nil {
		t.Errorf("gzip: %v", err)
	}
}

func TestParseBytes_Invalid(t *testing.T) {
	tests := []struct{ give, wantField string }{
		{strings.Replace(sample, "<dkim>pass</dkim><spf>", "<dkim>Pass</dkim><spf>", 1), "policy_evaluated/dkim"},
		{strings.Replace(sample, "192.0.2.7", "not-an-ip", 1), "source_ip"},
		{strings.Replace(sample, "<count>3", "<count>x3", 1), "count"},
		{strings.Replace(sample, "<report_id>r1", "<report_id>", 1), "report_id"},
		{"<feedback><unclosed>", "XML"},
	}
	for _, tt := range tests {
		_, err := ParseBytes([]byte(tt.give))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantField) {
			t.Errorf("ParseBytes(...%s...) = %v, want ErrInvalid naming %s", tt.wantField, err, tt.wantField)
		}
	}
	raw, _ := os.ReadFile(filepath.Join("testdata", "parsedmarc__invalid__report_with_upper_cased_pass.xml"))
	if _, err := ParseBytes(raw); !errors.Is(err, ErrInvalid) {
		t.Errorf("upper-cased pass: %v, want ErrInvalid", err)
	}
}

func FuzzDMARC(f *testing.F) {
	f.Add([]byte(sample))
	files, _ := filepath.Glob(filepath.Join("testdata", "*"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		rep, err := ParseBytes(raw)
		if err == nil && (rep == nil || len(rep.Rows) == 0) {
			t.Fatal("report without rows and without error")
		}
	})
}
