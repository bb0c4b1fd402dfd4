package testbed

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Handler is the pipeline's control API:
//
//	GET  /faults       the fault profile (durations as strings, "2s")
//	PUT  /faults       change it; fields left out keep their value
//	POST /stall        stall the pipeline
//	POST /resume       end the stall
//	GET  /stats        counters (Stats)
//	GET  /truth/{id}   ground truth of one event id; 404 if unknown
//
// Every answer is JSON. Faults answers carry the profile after the change. A
// field the profile does not have is a 400 naming it.
func (p *Pipeline) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, p.Faults())
	})
	mux.HandleFunc("PUT /faults", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("read body: %w", err))
			return
		}
		// Decoding onto the current profile keeps fields the client left out.
		f := p.Faults()
		if err := json.Unmarshal(body, &f); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if err := p.SetFaults(f); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, http.StatusOK, p.Faults())
	})
	mux.HandleFunc("POST /stall", func(w http.ResponseWriter, _ *http.Request) {
		p.Stall()
		writeJSON(w, http.StatusOK, p.Faults())
	})
	mux.HandleFunc("POST /resume", func(w http.ResponseWriter, _ *http.Request) {
		p.Resume()
		writeJSON(w, http.StatusOK, p.Faults())
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, p.Stats())
	})
	mux.HandleFunc("GET /truth/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := uuid.Parse(r.PathValue("id"))
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("event id: %w", err))
			return
		}
		t, ok := p.Truth(id)
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Errorf("event %s: not consumed, or evicted from the ground truth", id))
			return
		}
		writeJSON(w, http.StatusOK, t)
	})
	return mux
}

// truthJSON is Truth on the wire: times never reached are left out.
type truthJSON struct {
	Consumed      *time.Time `json:"consumed,omitempty"`
	DBVisible     *time.Time `json:"db_visible,omitempty"`
	Forwarded     *time.Time `json:"forwarded,omitempty"`
	ForwardCopies int        `json:"forward_copies"`
	DBCopies      int        `json:"db_copies"`
	Dropped       bool       `json:"dropped"`
	Duplicated    bool       `json:"duplicated"`
	Partition     int32      `json:"partition"`
	Offset        int64      `json:"offset"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// MarshalJSON leaves out the times an event never reached.
func (t Truth) MarshalJSON() ([]byte, error) {
	return json.Marshal(truthJSON{
		Consumed: optTime(t.Consumed), DBVisible: optTime(t.DBVisible), Forwarded: optTime(t.Forwarded),
		ForwardCopies: t.ForwardCopies, DBCopies: t.DBCopies, Dropped: t.Dropped, Duplicated: t.Duplicated,
		Partition: t.Partition, Offset: t.Offset,
	})
}

// UnmarshalJSON reads what MarshalJSON writes, for clients of the control API.
func (t *Truth) UnmarshalJSON(b []byte) error {
	var j truthJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*t = Truth{
		ForwardCopies: j.ForwardCopies, DBCopies: j.DBCopies, Dropped: j.Dropped, Duplicated: j.Duplicated,
		Partition: j.Partition, Offset: j.Offset,
	}
	for _, c := range []struct {
		src *time.Time
		dst *time.Time
	}{{j.Consumed, &t.Consumed}, {j.DBVisible, &t.DBVisible}, {j.Forwarded, &t.Forwarded}} {
		if c.src != nil {
			*c.dst = *c.src
		}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// decodeStrict decodes the JSON value b into v, a pointer to a struct,
// refusing fields v does not have: a typo such as "dleay" would otherwise
// change nothing and be answered 200.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		// encoding/json has no error type for it.
		if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return fmt.Errorf("unknown field %s (fields: %s)", field, strings.Join(jsonFields(reflect.TypeOf(v).Elem()), ", "))
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("invalid JSON: data after the value")
	}
	return nil
}

// jsonFields are the JSON names of struct type t's fields.
func jsonFields(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported():
		case name == "":
			out = append(out, f.Name)
		default:
			out = append(out, name)
		}
	}
	return out
}
