package junit

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	var buf bytes.Buffer
	err := Write(&buf, []Suite{{Name: "burst nightly", Time: 360.5, Cases: []Case{
		{Name: "lag_p95", Classname: "burst.nightly", Detail: "lag_p95 1.2s <= 60s"},
		{Name: "loss", Classname: "burst.nightly", Failure: `loss 0.5% > 0% <"quoted">`, Detail: "3 of 600 markers lost"},
		{Name: "queries", Classname: "queries", Skipped: "not available"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("not XML: %v\n%s", err, out)
	}
	if doc.Tests != 3 || doc.Failures != 1 || doc.Suites[0].Cases[1].Failure == nil ||
		doc.Suites[0].Cases[1].Failure.Message != `loss 0.5% > 0% <"quoted">` {
		t.Errorf("parsed %+v from\n%s", doc, out)
	}
	if !strings.HasPrefix(out, "<?xml") || !strings.Contains(out, `<skipped message="not available">`) {
		t.Errorf("output:\n%s", out)
	}
}
