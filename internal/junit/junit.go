// Package junit writes JUnit XML reports, the format CI systems (GitLab,
// Jenkins, GitHub Actions reporters) read to show which checks of a gate
// passed or failed.
package junit

import (
	"encoding/xml"
	"fmt"
	"io"
)

// Suite is one group of checks, such as one burst.
type Suite struct {
	Name  string
	Time  float64 // seconds
	Cases []Case
}

// Case is one check. A non-empty Failure fails it; Skipped skips it.
type Case struct {
	Name      string
	Classname string
	Time      float64
	Failure   string // one-line message
	Detail    string // longer text, in the failure body or system-out
	Skipped   string
}

type xmlSuites struct {
	XMLName  xml.Name   `xml:"testsuites"`
	Tests    int        `xml:"tests,attr"`
	Failures int        `xml:"failures,attr"`
	Skipped  int        `xml:"skipped,attr"`
	Suites   []xmlSuite `xml:"testsuite"`
}

type xmlSuite struct {
	Name     string    `xml:"name,attr"`
	Tests    int       `xml:"tests,attr"`
	Failures int       `xml:"failures,attr"`
	Skipped  int       `xml:"skipped,attr"`
	Time     string    `xml:"time,attr"`
	Cases    []xmlCase `xml:"testcase"`
}

type xmlCase struct {
	Name      string      `xml:"name,attr"`
	Classname string      `xml:"classname,attr"`
	Time      string      `xml:"time,attr"`
	Failure   *xmlFailure `xml:"failure,omitempty"`
	Skipped   *xmlSkipped `xml:"skipped,omitempty"`
	SystemOut string      `xml:"system-out,omitempty"`
}

type xmlFailure struct {
	Message string `xml:"message,attr"`
	Body    string `xml:",chardata"`
}

type xmlSkipped struct {
	Message string `xml:"message,attr"`
}

// Write writes the suites as one JUnit XML document.
func Write(w io.Writer, suites []Suite) error {
	doc := xmlSuites{}
	for _, s := range suites {
		xs := xmlSuite{Name: s.Name, Time: secs(s.Time)}
		for _, c := range s.Cases {
			xc := xmlCase{Name: c.Name, Classname: c.Classname, Time: secs(c.Time)}
			switch {
			case c.Failure != "":
				xc.Failure = &xmlFailure{Message: c.Failure, Body: c.Detail}
				xs.Failures++
			case c.Skipped != "":
				xc.Skipped = &xmlSkipped{Message: c.Skipped}
				xs.Skipped++
			default:
				xc.SystemOut = c.Detail
			}
			xs.Cases = append(xs.Cases, xc)
			xs.Tests++
		}
		doc.Tests += xs.Tests
		doc.Failures += xs.Failures
		doc.Skipped += xs.Skipped
		doc.Suites = append(doc.Suites, xs)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func secs(s float64) string { return fmt.Sprintf("%.3f", s) }
