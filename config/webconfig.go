package config

import "github.com/prometheus/exporter-toolkit/web"

// validateWebConfig checks the web config file as the server will read it
// (exporter-toolkit's own parser, bcrypt hashes and certificate files
// included), so a bad file is a config error at start or reload rather than
// a refused listener later.
func (h HTTP) validateWebConfig(p *problems) {
	if h.WebConfigFile == "" {
		return
	}
	if err := web.Validate(h.WebConfigFile); err != nil {
		p.add("http.web_config_file", "%s: %v", h.WebConfigFile, err)
	}
}
