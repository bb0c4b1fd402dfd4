package main

import (
	"context"
	"log/slog"
	"slices"
)

// logDuration writes a time.Duration as "1.5s": the JSON handler would write
// nanoseconds, 1500000000. It is the handlers' ReplaceAttr.
func logDuration(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// componentKey is the attribute each part's logger is scoped by, as in
// logger.With("component", "canary").
const componentKey = "component"

// componentHandler joins nested components into one attribute: a part scoped
// by "canary" that scopes its injector by "injector" logs
// "component":"canary.injector", where the handler alone would write the key
// twice in one JSON object.
type componentHandler struct {
	base      slog.Handler // before the component and attrs below
	component string       // dotted, "" for none
	attrs     []slog.Attr  // the other attributes added since base
	h         slog.Handler // base with the component, then attrs
}

func newComponentHandler(h slog.Handler) *componentHandler {
	return &componentHandler{base: h, h: h}
}

func (c *componentHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return c.h.Enabled(ctx, l)
}

func (c *componentHandler) Handle(ctx context.Context, r slog.Record) error {
	return c.h.Handle(ctx, r)
}

func (c *componentHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if !slices.ContainsFunc(as, func(a slog.Attr) bool { return a.Key == componentKey }) {
		return &componentHandler{base: c.base, component: c.component,
			attrs: append(slices.Clip(c.attrs), as...), h: c.h.WithAttrs(as)}
	}
	n := &componentHandler{base: c.base, component: c.component, attrs: slices.Clip(c.attrs)}
	for _, a := range as {
		if a.Key != componentKey {
			n.attrs = append(n.attrs, a)
			continue
		}
		if n.component == "" {
			n.component = a.Value.String()
		} else {
			n.component += "." + a.Value.String()
		}
	}
	// The component first: it says which part the line is from.
	n.h = n.base.WithAttrs(append([]slog.Attr{slog.String(componentKey, n.component)}, n.attrs...))
	return n
}

// WithGroup starts afresh: attributes after it, a component too, are inside
// the group, a different object.
func (c *componentHandler) WithGroup(name string) slog.Handler {
	return newComponentHandler(c.h.WithGroup(name))
}
