package probes

// Unexported decoders, exported to the fuzz tests of package probes_test
// (which may import package canary; this package may not).
var (
	ExtractJSON   = extractJSON
	ExtractAvro   = extractAvro
	ExtractHeader = extractHeader
)
